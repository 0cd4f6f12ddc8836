"""The default rollout backend: a batched KV-cache sampler with row compaction."""

from __future__ import annotations

import math
import warnings

import torch

from sppo_runner.batch import RolloutBatch
from sppo_runner.rollout.base import SamplingParams
from sppo_runner.rollout.common import assemble, draw_seed, eos_id_list, left_pad
from sppo_runner.rollout.decoders import FusedDecoder, HFDecoder, fused_unsupported
from sppo_runner.rollout.sampling import Sampler, StopChecker


class NativeEngine:
    """Samples with an incremental forward pass and a preallocated KV cache.

    Finished rows stop costing compute: once a ``compact_ratio`` share of the
    running rows has finished, their cache rows are dropped (copying the cache
    costs about as much as a few decode steps, so it is amortized).

    Args:
        tokenizer: The policy's tokenizer (pad / EOS ids, decoding, stop strings).
        micro_batch_size: Most rows generated at once (None: all); bounds memory.
        token_budget: Most cached tokens (rows x (prompt + max_new_tokens)) at
            once; None for no bound. Combined with ``micro_batch_size``.
        compact_ratio: Share of finished rows that triggers compaction (0..1).
        fused: Use the fused Llama-family decoder when the model allows it
            (``"auto"``), always the model's own forward (``False``), or
            require the fused one (``True``).
        compile: ``torch.compile`` the decode step (CUDA only; off by default,
            as it is unmeasured).
    """

    def __init__(
        self,
        tokenizer,
        micro_batch_size: int | None = None,
        token_budget: int | None = None,
        compact_ratio: float = 0.25,
        fused: bool | str = "auto",
        compile: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else tokenizer.eos_token_id)
        self.micro_batch_size = micro_batch_size
        self.token_budget = token_budget
        self.compact_ratio = compact_ratio
        self.fused = fused
        self.compile = compile
        self._stop_cache: dict = {}

    def generate(
        self,
        model: torch.nn.Module,
        prompts: list[list[int]],
        params: SamplingParams,
        generator: torch.Generator,
    ) -> RolloutBatch:
        """See :meth:`RolloutEngine.generate`."""
        device = next(model.parameters()).device
        n = params.n
        unique_ids, unique_mask = left_pad(prompts, 1, self.pad_id)
        eos_ids = eos_id_list(self.tokenizer, model)
        gen = generator
        if device.type != "cpu":
            gen = torch.Generator(device=device).manual_seed(draw_seed(generator))
        rows = self._chunk_rows(len(prompts) * n, unique_ids.shape[1] + params.max_new_tokens)
        # Whole groups per chunk let the n samples of a prompt share one prefill.
        repeat = n if rows >= n else 1
        ids, mask = unique_ids, unique_mask
        if repeat == 1:
            ids, mask = ids.repeat_interleave(n, dim=0), mask.repeat_interleave(n, dim=0)
        step = rows // repeat
        outs = []
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, ids.shape[0], step):
                    chunk = (ids[start : start + step].to(device), mask[start : start + step].to(device))
                    outs.append(self._generate_chunk(model, *chunk, repeat, params, gen, eos_ids))
        finally:
            model.train(was_training)
        tokens, logprobs, lengths = (torch.cat([o[i] for o in outs]) for i in range(3))
        return assemble(
            self.tokenizer,
            unique_ids.repeat_interleave(n, dim=0),
            unique_mask.repeat_interleave(n, dim=0),
            tokens,
            logprobs,
            lengths,
            n,
            self.pad_id,
        )

    def _chunk_rows(self, n_rows: int, row_tokens: int) -> int:
        rows = n_rows
        if self.micro_batch_size:
            rows = min(rows, self.micro_batch_size)
        if self.token_budget:
            rows = min(rows, max(1, self.token_budget // row_tokens))
        return max(rows, 1)

    def _decoder(self, model: torch.nn.Module, total_len: int):
        if self.fused is False:
            return HFDecoder(model)
        reason = fused_unsupported(model, total_len)
        if reason is None:
            return FusedDecoder(model)
        if self.fused is True:
            raise ValueError(f"fused decoder unavailable: {reason}")
        return HFDecoder(model)

    def _stop_checker(self, stops: tuple[str, ...], vocab: int, device: torch.device) -> StopChecker:
        key = (stops, vocab, str(device))
        if key not in self._stop_cache:
            self._stop_cache[key] = StopChecker(self.tokenizer, stops, vocab, device)
        return self._stop_cache[key]

    def _generate_chunk(
        self,
        model: torch.nn.Module,
        ids: torch.Tensor,
        mask: torch.Tensor,
        repeat: int,
        params: SamplingParams,
        gen: torch.Generator,
        eos_ids: list[int],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Samples one chunk of rows.

        Args:
            model: The policy.
            ids: ``[p, P]`` left-padded prompt ids on the model's device.
            mask: ``[p, P]`` prompt mask.
            repeat: Rows per prompt (``b = p * repeat``), adjacent.
            params: Sampling parameters.
            gen: Generator on the model's device.
            eos_ids: Token ids that end a response.

        Returns:
            ``tokens [b, max_new]``, ``logprobs [b, max_new]`` (valid up to the
            length) and ``lengths [b]`` (CPU, EOS or stop-string token included).
        """
        b, max_new = ids.shape[0] * repeat, params.max_new_tokens
        decoder = self._decoder(model, ids.shape[1] + max_new)
        step = decoder.step
        if self.compile and ids.device.type == "cuda":
            step = torch.compile(step, dynamic=True)
        logits = decoder.prefill(ids, mask, max_new, repeat)
        device, vocab = logits.device, logits.shape[-1]
        sampler = Sampler(params, gen, [e for e in eos_ids if e < vocab] if params.ignore_eos else [])
        ends = torch.zeros(vocab, dtype=torch.bool, device=device)
        if not params.ignore_eos:
            ends[[e for e in eos_ids if e < vocab]] = True
        stops = self._stop_checker(params.stop, vocab, device) if params.stop else None
        can_end = bool(ends.any()) or stops is not None
        out_tok = torch.full((max_new, b), self.pad_id, dtype=torch.long, device=device)  # time-major: one contiguous row per step
        out_lp = torch.zeros((max_new, b), dtype=torch.float32, device=device)
        lengths = torch.full((b,), max_new, dtype=torch.long)
        row_ids = torch.arange(b, device=device)  # original row of each running row
        alive = torch.ones(b, dtype=torch.bool, device=device)
        for t in range(max_new):
            tok, lp = sampler(logits)
            out_tok[t].index_copy_(0, row_ids, tok)
            out_lp[t].index_copy_(0, row_ids, lp)
            if can_end:
                newly = ends[tok] & alive
                if stops is not None:
                    newly = self._stop_hits(stops, out_tok, tok, alive, row_ids, newly, t)
                if bool(newly.any()):
                    lengths[row_ids[newly].cpu()] = t + 1
                    alive &= ~newly
                    n_alive = int(alive.sum())
                    if n_alive == 0:
                        break
                    if alive.numel() - n_alive >= math.ceil(self.compact_ratio * alive.numel()):
                        keep = alive.nonzero().squeeze(1)
                        decoder.keep(keep)
                        row_ids, alive, tok = row_ids[keep], alive[keep], tok[keep]
            if t + 1 < max_new:
                logits = step(tok)
        return out_tok.t(), out_lp.t(), lengths

    @staticmethod
    def _stop_hits(stops, out_tok, tok, alive, row_ids, newly, t) -> torch.Tensor:
        """Adds to ``newly`` the running rows whose response now contains a stop string."""
        cand = (stops.candidates[tok] & alive & ~newly).nonzero().squeeze(1)
        if cand.numel() == 0:
            return newly
        hit_rows = stops.hits(out_tok, row_ids[cand].tolist(), t)
        if hit_rows:
            hit = torch.isin(row_ids, torch.tensor(hit_rows, device=row_ids.device))
            newly = newly | hit
        return newly
