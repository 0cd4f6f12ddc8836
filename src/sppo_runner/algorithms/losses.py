"""Policy, value, KL and entropy losses. Pure tensor code.

All losses are returned as a *sum-compatible* share: ``aggregate`` divides by a
normalizer that the caller computes over the whole mini-batch, so that summing
the losses of micro-batches gives exactly the loss of the mini-batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (0 when the mask is empty)."""
    mask = mask.float()
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


@dataclass(frozen=True)
class Normalizer:
    """Mini-batch-wide counts that fix the denominators of every aggregation mode.

    Attributes:
        n_tokens: Masked-in tokens in the mini-batch.
        n_seqs: Sequences in the mini-batch.
        norm_len: Constant length for ``seq-mean-token-sum-norm`` (Dr. GRPO).
    """

    n_tokens: float
    n_seqs: float
    norm_len: float

    @staticmethod
    def of(mask: torch.Tensor) -> "Normalizer":
        """Builds the normalizer of a whole mini-batch ``mask [B, T]``."""
        return Normalizer(float(mask.sum().clamp(min=1).item()), float(mask.shape[0]), float(mask.shape[1]))


def aggregate(loss: torch.Tensor, mask: torch.Tensor, mode: str, norm: Normalizer) -> torch.Tensor:
    """Reduces a token loss ``[b, T]`` to a scalar share of the mini-batch loss.

    Modes: ``token-mean`` (every token weighs the same), ``seq-mean-token-mean``
    (every sequence weighs the same), ``seq-mean-token-sum-norm`` (token sum over a
    constant length, then mean over sequences).
    """
    mask = mask.float()
    if mode == "token-mean":
        return (loss * mask).sum() / norm.n_tokens
    if mode == "seq-mean-token-mean":
        per_seq = (loss * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return per_seq.sum() / norm.n_seqs
    if mode == "seq-mean-token-sum-norm":
        return (loss * mask).sum() / (norm.n_seqs * norm.norm_len)
    raise ValueError(f"unknown loss aggregation {mode!r}")


def clipped_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float,
    clip_high: float,
    dual_clip: float,
    mode: str,
    norm: Normalizer,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate with separate low/high epsilon and dual-clip.

    Per token: ``l = max(-A r, -A clip(r, 1-lo, 1+hi))``; for ``A < 0`` the loss is
    further capped at ``-A c`` (dual-clip, ``c = dual_clip > 1``), which bounds the
    update when a very unlikely token got a negative advantage.

    Args:
        logp: ``[b, T]`` current log-probs (with grad).
        old_logp: ``[b, T]`` behaviour log-probs.
        adv: ``[b, T]`` advantages.
        mask: ``[b, T]`` response mask.
        clip_low, clip_high: epsilons.
        dual_clip: ``c``; values <= 1 disable dual-clip.
        mode, norm: see :func:`aggregate`.

    Returns:
        The scalar loss share and detached per-token diagnostics (means over mask).
    """
    log_ratio = (logp - old_logp) * mask
    ratio = torch.exp(log_ratio)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    clipped = torch.maximum(pg1, pg2)
    loss_tok = clipped
    dual_frac = torch.zeros(())
    if dual_clip > 1.0:
        pg3 = -adv * dual_clip
        dual = torch.minimum(pg3, clipped)
        loss_tok = torch.where(adv < 0, dual, clipped)
        dual_frac = masked_mean(((adv < 0) & (pg3 < clipped)).float(), mask)
    loss = aggregate(loss_tok, mask, mode, norm)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((pg2 > pg1).float(), mask),
            "dual_clipfrac": dual_frac,
            # k3 estimator of KL(old || new): unbiased and always >= 0 (cleanrl's approx_kl).
            "approx_kl": masked_mean((ratio - 1) - log_ratio, mask),
            "ratio_mean": masked_mean(ratio, mask),
            "ratio_max": (ratio * mask).max(),
        }
    return loss, stats


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from sampled tokens.

    ``k1 = log p - log q`` (unbiased, can be negative); ``k3 = q/p - 1 - log(q/p)``
    (unbiased, non-negative, low variance).
    """
    diff = logp - ref_logp
    if estimator == "k1":
        return diff
    if estimator == "k3":
        return torch.exp(-diff) - 1 + diff
    raise ValueError(f"unknown KL estimator {estimator!r}")


def bce_value_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, norm: Normalizer,
                   mode: str = "token-mean") -> torch.Tensor:
    """Binary cross-entropy between critic logits and 0/1 (or soft) targets.

    Args:
        logits: ``[b]`` (prompt critic) or ``[b, T]`` (token critic).
        targets: same shape as ``logits``.
        mask: same shape; 1 where the loss counts.
        norm, mode: see :func:`aggregate` (a ``[b]`` input is treated as ``[b, 1]``).
    """
    loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    if loss.dim() == 1:
        return aggregate(loss[:, None], mask[:, None], "token-mean", norm)
    return aggregate(loss, mask, mode, norm)


def mse_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                   clip: float, norm: Normalizer, mode: str = "token-mean") -> torch.Tensor:
    """PPO's (optionally clipped) squared value error ``0.5 max((v-R)^2, (v_clip-R)^2)``."""
    err = (values.float() - returns) ** 2
    if clip > 0:
        v_clip = old_values + torch.clamp(values.float() - old_values, -clip, clip)
        err = torch.maximum(err, (v_clip - returns) ** 2)
    return 0.5 * aggregate(err, mask, mode, norm)
