"""Generating one chunk of rows: the per-step loop shared by threads and worker processes."""

from __future__ import annotations

import math

import torch

from sppo_runner.rollout.base import SamplingParams
from sppo_runner.rollout.decoders import FusedDecoder, FusedWeights
from sppo_runner.rollout.hf_decoder import HFDecoder
from sppo_runner.rollout.sampling import Sampler, StopChecker


def make_decoder(model: torch.nn.Module, weights: FusedWeights | None):
    """A fresh decoder: fused on ``weights`` (built once per call), else the model's own forward."""
    return FusedDecoder(weights) if weights is not None else HFDecoder(model)


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
