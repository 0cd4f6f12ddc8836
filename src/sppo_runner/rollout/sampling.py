"""Per-step token sampling and stop-string detection for the native engine."""

from __future__ import annotations

import torch

from sppo_runner.logprobs import token_logprobs
from sppo_runner.rollout.base import SamplingParams


def filter_logits(scaled: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Masks tokens outside the top-k / nucleus with ``-inf``.

    Args:
        scaled: ``[b, V]`` temperature-scaled float32 logits (not modified).
        top_k: Keep the k largest; 0 disables.
        top_p: Keep the smallest prefix (by descending probability) with mass
            >= top_p; >= 1 disables.

    Returns:
        ``[b, V]`` filtered logits (``scaled`` itself when nothing is filtered).
    """
    out = scaled
    vocab = scaled.shape[-1]
    if 0 < top_k < vocab:
        kth = torch.topk(out, top_k, dim=-1).values[:, -1:]
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p < 1.0:
        # Sorting only the top-k survivors would be cheaper, but ties at the k-th
        # value can keep more than k tokens, so sort the whole (masked) row.
        sorted_logits, order = out.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token once the mass strictly before it reaches top_p (the most
        # likely token is always kept); the same boundary as transformers' warper.
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        out = out.masked_fill(drop, float("-inf"))
    return out


def sample_inverse_cdf(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row from ``probs`` by inverting its CDF with one uniform.

    An order of magnitude cheaper on CPU than ``torch.multinomial`` (which draws
    one exponential per vocabulary entry). ``right=True`` never lands on a
    zero-probability token: its CDF step is empty.

    Args:
        probs: ``[b, V]`` non-negative weights (need not sum to 1).
        generator: Source of the uniforms.

    Returns:
        ``[b]`` int64 token ids.
    """
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(
        probs.shape[0], 1, generator=generator, device=probs.device, dtype=cdf.dtype
    )
    idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(1)
    return idx.clamp_(max=probs.shape[-1] - 1)


class Sampler:
    """Draws the next token of every row and its log-prob under the policy.

    Args:
        params: Sampling parameters.
        generator: Generator on the logits' device; all randomness comes from it.
        blocked: Token ids never sampled (EOS when ``ignore_eos``); their log-prob
            still counts in the normalizer, as in the learner.
    """

    def __init__(
        self, params: SamplingParams, generator: torch.Generator, blocked: list[int]
    ) -> None:
        self.params = params
        self.generator = generator
        self.blocked = blocked

    def __call__(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples one token per row.

        Args:
            logits: ``[b, V]`` raw float32 logits of the last position.

        Returns:
            ``tokens [b]`` (int64) and ``logprobs [b]`` (float32) of those tokens
            under ``softmax(logits / T)``, untruncated, as the learner computes them.
        """
        p = self.params
        scaled = logits if p.greedy or p.temperature == 1.0 else logits / p.temperature
        if self.blocked:
            scaled = scaled.clone() if scaled is logits else scaled
            scaled[:, self.blocked] = float("-inf")
        if p.greedy:
            tokens = scaled.argmax(dim=-1)
        else:
            probs = filter_logits(scaled, p.top_k, p.top_p).softmax(dim=-1)
            tokens = sample_inverse_cdf(probs, self.generator)
        return tokens, token_logprobs(logits, tokens, p.temperature)


class StopChecker:
    """Finds rows whose text now contains a stop string.

    Decoding every row at every step would dominate a fast sampler, so only rows
    whose newest token could complete a stop string (its text contains the last
    character of some stop string, or it decodes to an incomplete character) are
    decoded, and only the tail of their response.

    Args:
        tokenizer: The policy's tokenizer.
        stops: Stop strings.
        vocab_size: Logit width of the model (may exceed the tokenizer's size).
        device: Where the candidate table lives.
    """

    def __init__(
        self, tokenizer, stops: tuple[str, ...], vocab_size: int, device: torch.device
    ) -> None:
        self.tokenizer = tokenizer
        self.stops = tuple(s for s in stops if s)
        longest = max((len(s) for s in self.stops), default=0)
        # A token is at least one character except for byte pieces and specials: margin for both.
        self.tail = 2 * longest + 8
        self.candidates = self._candidate_table(vocab_size).to(device)

    def _candidate_table(self, vocab_size: int) -> torch.Tensor:
        table = torch.zeros(vocab_size, dtype=torch.bool)
        if not self.stops:
            return table
        last = {s[-1] for s in self.stops}
        if any(c.isspace() for c in last):
            # Tokenizers drop or merge whitespace when a token is decoded alone.
            return table.fill_(True)
        n = min(vocab_size, len(self.tokenizer))
        pieces = self.tokenizer.batch_decode(
            [[i] for i in range(n)], skip_special_tokens=False
        )
        for i, piece in enumerate(pieces):
            if not piece or "\ufffd" in piece or any(c in piece for c in last):
                table[i] = True
        return table

    @property
    def active(self) -> bool:
        return bool(self.stops)

    def hits(self, tokens: torch.Tensor, rows: list[int], step: int) -> list[int]:
        """Which of ``rows`` have a stop string in their response.

        Args:
            tokens: ``[T, B]`` generated tokens so far (time-major, all rows).
            rows: Row indices (into B) whose newest token is a candidate.
            step: Index of the newest token.

        Returns:
            The rows whose decoded response tail contains a stop string.
        """
        start = max(0, step + 1 - self.tail)
        tails = tokens[start : step + 1, rows].t().tolist()
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        return [r for r, text in zip(rows, texts) if any(s in text for s in self.stops)]
