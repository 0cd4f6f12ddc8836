"""The default rollout backend: a batched KV-cache sampler with row compaction."""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from sppo_runner.batch import RolloutBatch
from sppo_runner.rollout.base import SamplingParams
from sppo_runner.rollout.common import assemble, draw_seed, eos_id_list, left_pad
from sppo_runner.rollout.decoders import FusedWeights, fused_unsupported
from sppo_runner.rollout.chunk import forward_only, generate_chunk, make_decoder
from sppo_runner.rollout.sampling import StopChecker
from sppo_runner.rollout.workers import ProcessPool, as_tensors

log = logging.getLogger(__name__)

# Below this many rows per chunk, splitting a batch across CPU workers stops paying.
_MIN_WORKER_ROWS = 8
PARALLEL_MODES = ("processes", "threads")
_MAX_POOL_FAILURES = 3  # consecutive failed calls before the engine stays on threads


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
            on an H200 (bfloat16, embedded policy) it gave no gain at batch 64
            and was 22% slower at batch 256 (``bench_rollout.py --compile``).
    """

    exact_logprobs = True  # log-probs computed as the learner computes them (to 1e-4 in float32)

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
        self._pool_failures = 0

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
            outs = None
            if self._use_processes(device, chunks):
                jobs = [self._job(c, ids, mask, params, eos_ids, fused, model) for c in chunks]
                outs = self._run_in_workers(model, jobs)
            if outs is None:
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

    def _run_in_workers(self, model: torch.nn.Module, jobs: list[dict]) -> list | None:
        """Results of ``jobs`` from the worker processes; None when the pool failed.

        A failed pool (a worker killed, e.g. by the OOM killer, shared memory
        exhausted, an error in a job) must not lose the step: the caller reruns
        the chunks in this process, where a genuine error raises again with its
        own traceback. The pool restarts on the next call.
        """
        try:
            out = [as_tensors(r) for r in self._pool.run(model, self.tokenizer, jobs)]
        except RuntimeError as err:
            self._pool_failures += 1
            if self._pool_failures >= _MAX_POOL_FAILURES:
                self.parallel = "threads"
                log.warning("%s; %d failures in a row: threads from now on", err, self._pool_failures)
            else:
                log.warning("%s; this call runs its chunks in threads instead", err)
            return None
        self._pool_failures = 0
        return out

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
                decoder = make_decoder(model, weights)
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
