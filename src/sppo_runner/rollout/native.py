"""The default rollout backend: a batched KV-cache sampler with row compaction."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from sppo_runner.batch import RolloutBatch
from sppo_runner.rollout.base import SamplingParams
from sppo_runner.rollout.common import assemble, draw_seed, eos_id_list, left_pad
from sppo_runner.rollout.decoders import FusedDecoder, FusedWeights, fused_unsupported
from sppo_runner.rollout.hf_decoder import HFDecoder
from sppo_runner.rollout.sampling import Sampler, StopChecker
from sppo_runner.rollout.workers import ProcessPool, as_tensors

# Below this many rows per chunk, splitting a batch across CPU workers stops paying.
_MIN_WORKER_ROWS = 8
PARALLEL_MODES = ("processes", "threads")


@dataclass
class _Chunk:
    """One independently generated slice of the batch."""

    rows: slice  # rows of the prompt tensors (unique prompts when repeat > 1)
    repeat: int  # samples per prompt row, generated adjacent
    seed: int


class NativeEngine:
    """Samples with an incremental forward pass and a preallocated KV cache.

    Finished rows stop costing compute: once a ``compact_ratio`` share of the
    running rows has finished, their cache rows are dropped (copying the cache
    costs about as much as a few decode steps, so it is amortized). The samples
    of one prompt share a single prefill.

    On CPU the batch is split into ``workers`` chunks decoded concurrently, each
    with one intra-op thread: small per-step ops parallelize badly across
    OpenMP threads (and stall when another process holds a core), while
    independent chunks keep every core busy. ``parallel="processes"`` (default)
    runs the chunks in persistent worker processes that read the policy's
    weights from shared memory; ``"threads"`` runs them in threads of this
    process (no start-up cost, but the threads contend for the GIL).

    Args:
        tokenizer: The policy's tokenizer (pad / EOS ids, decoding, stop strings).
        micro_batch_size: Most rows generated at once per chunk (None or 0: all);
            bounds memory.
        token_budget: Most cached tokens (rows x (prompt + max_new_tokens)) per
            chunk; None for no bound. Combined with ``micro_batch_size``.
        compact_ratio: Share of finished rows that triggers compaction (0..1].
        fused: Use the fused Llama-family decoder when the model allows it
            (``"auto"``), always the model's own forward (``False``), or
            require the fused one (``True``).
        workers: Chunks decoded concurrently; None: torch's thread count on
            CPU, 1 on accelerators.
        parallel: ``"processes"`` or ``"threads"`` for CPU chunks.
        compile: ``torch.compile`` the decode step (CUDA only). Off by default:
            it costs ~20 s of compilation per new shape and is unmeasured.
    """

    def __init__(
        self,
        tokenizer,
        micro_batch_size: int | None = None,
        token_budget: int | None = None,
        compact_ratio: float = 0.25,
        fused: bool | str = "auto",
        workers: int | None = None,
        parallel: str = "processes",
        compile: bool = False,
    ) -> None:
        if parallel not in PARALLEL_MODES:
            raise ValueError(f"parallel={parallel!r}; allowed values: {PARALLEL_MODES}")
        self.tokenizer = tokenizer
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else tokenizer.eos_token_id)
        self.micro_batch_size = micro_batch_size
        self.token_budget = token_budget
        self.compact_ratio = compact_ratio
        self.fused = fused
        self.workers = workers
        self.parallel = parallel
        self.compile = compile
        self._stop_cache: dict = {}
        self._pool: ProcessPool | None = None

    def close(self) -> None:
        """Stops the worker processes, if any (a later call starts them again)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def generate(
        self,
        model: torch.nn.Module,
        prompts: list[list[int]],
        params: SamplingParams,
        generator: torch.Generator,
    ) -> RolloutBatch:
        """See :meth:`RolloutEngine.generate`."""
        device = next(model.parameters()).device
        n, max_new = params.n, params.max_new_tokens
        unique_ids, unique_mask = left_pad(prompts, 1, self.pad_id)
        total_len = unique_ids.shape[1] + max_new
        chunks = self._plan(len(prompts), n, total_len, device, generator)
        ids, mask = unique_ids, unique_mask
        if chunks[0].repeat == 1:
            ids, mask = ids.repeat_interleave(n, dim=0), mask.repeat_interleave(n, dim=0)
        fused = self._use_fused(model, total_len)
        eos_ids = eos_id_list(self.tokenizer, model)
        was_training = model.training
        model.eval()
        try:
            if self._use_processes(device, chunks):
                jobs = [self._job(c, ids, mask, params, eos_ids, fused, model) for c in chunks]
                outs = [as_tensors(r) for r in self._pool.run(model, self.tokenizer, jobs)]
            else:
                outs = self._run_here(model, chunks, ids, mask, params, eos_ids, fused, device)
        finally:
            model.train(was_training)
        tokens, logprobs, lengths = (torch.cat([o[i] for o in outs]) for i in range(3))
        prompt_ids, prompt_mask = (
            unique_ids.repeat_interleave(n, dim=0),
            unique_mask.repeat_interleave(n, dim=0),
        )
        return assemble(
            self.tokenizer, prompt_ids, prompt_mask, tokens, logprobs, lengths, n, self.pad_id
        )

    def bare_forward(self, model: torch.nn.Module, prompts: list[list[int]], max_new_tokens: int) -> None:
        """The forward passes of :meth:`generate` without sampling: the engine's floor.

        Runs the prefill and ``max_new_tokens - 1`` decode steps (feeding a
        fixed token, no row finishes) on the same chunks, workers and decoder
        as ``generate`` with ``n=1``; benchmarks time it to show the sampler's
        own overhead.
        """
        params = SamplingParams(max_new_tokens=max_new_tokens, ignore_eos=True)
        device = next(model.parameters()).device
        ids, mask = left_pad(prompts, 1, self.pad_id)
        chunks = self._plan(len(prompts), 1, ids.shape[1] + max_new_tokens, device, torch.Generator())
        fused = self._use_fused(model, ids.shape[1] + max_new_tokens)
        if self._use_processes(device, chunks):
            jobs = [{**self._job(c, ids, mask, params, [], fused, model), "bare": True} for c in chunks]
            self._pool.run(model, self.tokenizer, jobs)
        else:
            self._run_here(model, chunks, ids, mask, params, [], fused, device, bare=True)

    def _use_processes(self, device: torch.device, chunks: list[_Chunk]) -> bool:
        if self.parallel != "processes" or device.type != "cpu" or len(chunks) < 2:
            return False
        workers = min(self._n_workers(device), len(chunks))
        if workers < 2:
            return False
        if self._pool is None or self._pool.workers != workers:
            self.close()
            self._pool = ProcessPool(workers)
        return True

    def _job(self, chunk: _Chunk, ids, mask, params, eos_ids, fused, model) -> dict:
        """One chunk as plain data for a worker process."""
        return {
            "ids": ids[chunk.rows].numpy(),
            "mask": mask[chunk.rows].numpy(),
            "repeat": chunk.repeat,
            "params": params,
            "seed": chunk.seed,
            "eos_ids": eos_ids,
            "fused": fused,
            "pad_id": self.pad_id,
            "compact_ratio": self.compact_ratio,
            "vocab": model.get_output_embeddings().weight.shape[0],
        }

    def _run_here(self, model, chunks, ids, mask, params, eos_ids, fused, device, bare=False) -> list:
        """Generates the chunks in this process (serially, or in threads on CPU)."""
        stops = self._stop_checker(params.stop, model, device) if params.stop else None
        with torch.inference_mode():
            weights = FusedWeights(model) if fused else None

        def work(chunk: _Chunk):
            # inference_mode is thread-local: enter it in the worker.
            with torch.inference_mode():
                decoder = FusedDecoder(weights) if fused else HFDecoder(model)
                rows = (ids[chunk.rows].to(device), mask[chunk.rows].to(device))
                if bare:
                    return forward_only(decoder, *rows, params.max_new_tokens)
                gen = torch.Generator(device=device).manual_seed(chunk.seed)
                return generate_chunk(
                    decoder, *rows, chunk.repeat, params, gen, eos_ids, stops, self.pad_id,
                    self.compact_ratio, self.compile,
                )

        workers = min(self._n_workers(device), len(chunks))
        if workers <= 1 or device.type != "cpu":
            return [work(c) for c in chunks]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                return list(pool.map(work, chunks))
        finally:
            torch.set_num_threads(threads)

    def _n_workers(self, device: torch.device) -> int:
        if self.workers is not None:
            return max(1, self.workers)
        return torch.get_num_threads() if device.type == "cpu" else 1

    def _plan(
        self, n_prompts: int, n: int, total_len: int, device, generator
    ) -> list[_Chunk]:
        """Splits the batch into chunks and draws one seed per chunk, in order."""
        n_rows = n_prompts * n
        rows = n_rows
        if self.micro_batch_size:
            rows = min(rows, self.micro_batch_size)
        if self.token_budget:
            rows = min(rows, max(1, self.token_budget // total_len))
        workers = self._n_workers(device)
        if workers > 1 and n_rows >= 2 * _MIN_WORKER_ROWS:
            rows = min(rows, max(_MIN_WORKER_ROWS, math.ceil(n_rows / workers)))
        # Whole prompt groups per chunk let the n samples of a prompt share one prefill.
        repeat = n if rows >= n else 1
        step = max(1, rows // repeat)
        n_units = n_prompts if repeat > 1 else n_rows
        # Seeds are drawn up front, so results never depend on thread timing.
        return [
            _Chunk(slice(s, s + step), repeat, draw_seed(generator))
            for s in range(0, n_units, step)
        ]

    def _use_fused(self, model: torch.nn.Module, total_len: int) -> bool:
        """Whether the fused decoder runs ``model`` (raises when it must but cannot)."""
        if self.fused is False:
            return False
        reason = fused_unsupported(model, total_len)
        if reason is not None and self.fused is True:
            raise ValueError(f"fused decoder unavailable: {reason}")
        return reason is None

    def _stop_checker(
        self, stops: tuple[str, ...], model: torch.nn.Module, device: torch.device
    ) -> StopChecker:
        vocab = model.get_output_embeddings().weight.shape[0]
        key = (tuple(stops), vocab, str(device))
        if key not in self._stop_cache:
            self._stop_cache[key] = StopChecker(
                self.tokenizer, tuple(stops), vocab, device
            )
        return self._stop_cache[key]


def make_decoder(model: torch.nn.Module, fused: bool):
    """A fresh decoder for ``model`` (call inside inference mode)."""
    return FusedDecoder(FusedWeights(model)) if fused else HFDecoder(model)


def forward_only(decoder, ids: torch.Tensor, mask: torch.Tensor, max_new: int) -> None:
    """Prefill and ``max_new - 1`` decode steps feeding token 0: the floor of :func:`generate_chunk`."""
    decoder.prefill(ids, mask, max_new)
    token = torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
    for _ in range(max_new - 1):
        decoder.step(token)


def generate_chunk(
    decoder,
    ids: torch.Tensor,
    mask: torch.Tensor,
    repeat: int,
    params: SamplingParams,
    gen: torch.Generator,
    eos_ids: list[int],
    stops: StopChecker | None,
    pad_id: int,
    compact_ratio: float,
    compile: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Samples one chunk of rows.

    Args:
        decoder: A fresh :class:`FusedDecoder` or :class:`HFDecoder`.
        ids: ``[p, P]`` left-padded prompt ids on the model's device.
        mask: ``[p, P]`` prompt mask.
        repeat: Rows per prompt (``b = p * repeat``), adjacent.
        params: Sampling parameters.
        gen: Generator on the model's device.
        eos_ids: Token ids that end a response.
        stops: Stop-string detector, or None.
        pad_id: Fill of unused token slots.
        compact_ratio: Share of finished rows that triggers compaction.
        compile: ``torch.compile`` the decode step (CUDA only).

    Returns:
        ``tokens [b, max_new]``, ``logprobs [b, max_new]`` (valid up to the
        length) and ``lengths [b]`` (CPU, EOS or stop-string token included).
    """
    b, max_new = ids.shape[0] * repeat, params.max_new_tokens
    step = decoder.step
    if compile and ids.device.type == "cuda":
        step = torch.compile(step, dynamic=True)
    logits = decoder.prefill(ids, mask, max_new, repeat)
    device, vocab = logits.device, logits.shape[-1]
    eos_ids = [e for e in eos_ids if e < vocab]
    sampler = Sampler(params, gen, eos_ids if params.ignore_eos else [])
    state = _RowState(
        b, max_new, pad_id, device, [] if params.ignore_eos else eos_ids, vocab
    )
    for t in range(max_new):
        tok, lp = sampler(logits)
        keep = state.record(t, tok, lp, stops, compact_ratio)
        if state.n_alive == 0:
            break
        if keep is not None:
            decoder.keep(keep)
            tok = tok[keep]
        if t + 1 < max_new:
            logits = step(tok)
    return state.tokens.t(), state.logprobs.t(), state.lengths


class _RowState:
    """Outputs and finished-row bookkeeping of one chunk (rows in original order).

    Args:
        b: Rows.
        max_new: Step budget.
        pad_id: Fill of unused token slots.
        device: Where the outputs live.
        eos_ids: Tokens that end a row (empty with ``ignore_eos``).
        vocab: Logit width.
    """

    def __init__(
        self, b: int, max_new: int, pad_id: int, device, eos_ids: list[int], vocab: int
    ) -> None:
        # Time-major: each step writes one contiguous row.
        self.tokens = torch.full((max_new, b), pad_id, dtype=torch.long, device=device)
        self.logprobs = torch.zeros((max_new, b), dtype=torch.float32, device=device)
        self.lengths = torch.full((b,), max_new, dtype=torch.long)
        self.row_ids = torch.arange(
            b, device=device
        )  # original row of each running row
        self.alive = torch.ones(b, dtype=torch.bool, device=device)
        self.n_alive = b
        self.ends = torch.zeros(vocab, dtype=torch.bool, device=device)
        self.ends[eos_ids] = True
        self.can_end = bool(eos_ids)

    def record(
        self, t: int, tok, lp, stops: StopChecker | None, compact_ratio: float
    ) -> torch.Tensor | None:
        """Stores step ``t`` and retires finished rows.

        Returns:
            Indices of the running rows to keep when the cache should be
            compacted now, else None.
        """
        self.tokens[t].index_copy_(0, self.row_ids, tok)
        self.logprobs[t].index_copy_(0, self.row_ids, lp)
        if not self.can_end and stops is None:
            return None
        newly = self.ends[tok] & self.alive
        if stops is not None:
            newly = self._stop_hits(stops, tok, newly, t)
        if not bool(newly.any()):
            return None
        self.lengths[self.row_ids[newly].cpu()] = t + 1
        self.alive &= ~newly
        self.n_alive = int(self.alive.sum())
        finished = self.alive.numel() - self.n_alive
        if self.n_alive == 0 or finished < math.ceil(
            compact_ratio * self.alive.numel()
        ):
            return None
        keep = self.alive.nonzero().squeeze(1)
        self.row_ids, self.alive = self.row_ids[keep], self.alive[keep]
        return keep

    def _stop_hits(self, stops: StopChecker, tok, newly, t: int) -> torch.Tensor:
        """Adds to ``newly`` the running rows whose response now contains a stop string."""
        cand = (stops.candidates[tok] & self.alive & ~newly).nonzero().squeeze(1)
        if cand.numel() == 0:
            return newly
        hit_rows = stops.hits(self.tokens, self.row_ids[cand].tolist(), t)
        if hit_rows:
            newly = newly | torch.isin(
                self.row_ids, torch.tensor(hit_rows, device=self.row_ids.device)
            )
        return newly
