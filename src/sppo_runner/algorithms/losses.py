"""Policy, value, KL and entropy losses. Pure tensor code.

All losses are returned as a *sum-compatible* share: ``aggregate`` divides by a
:class:`Normalizer` that the caller computes once for the whole mini-batch, so that
summing the losses of (memory) micro-batches gives exactly the loss of the mini-batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch
import torch.nn.functional as F

# exp(20) ~ 4.9e8 is far outside any clip range and finite in float32 (exp(89) is not):
# an overflowing ratio would give 0 * inf = NaN losses and gradients (the reference clamps too).
LOG_RATIO_CLAMP = 20.0


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (0 when the mask is empty)."""
    mask = mask.float()
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


@dataclass(frozen=True)
class Normalizer:
    """The denominators of one mini-batch's loss, fixed before its micro-batches run.

    The scalar counts describe the whole mini-batch; a data-parallel learner sums them over
    ranks (``dataclasses.replace``) so that every rank divides by the global count. With loss
    groups (``group_size > 0`` in :meth:`of`), consecutive rows form groups of ``group_size``
    sequences, each group's loss is aggregated on its own and the groups weigh the same
    (the reference's per-micro-batch ``token-mean``). A group never spans ranks, so the
    per-row group counts are local; only ``n_groups`` is summed over ranks.

    Attributes:
        n_tokens: Masked-in tokens in the mini-batch.
        n_seqs: Sequences in the mini-batch.
        norm_len: Constant length for ``seq-mean-token-sum-norm`` (``rollout.max_new_tokens``);
            0 when the caller has none (that mode then raises).
        n_groups: Loss groups in the mini-batch (0: no groups, the mini-batch is aggregated whole).
        group_tokens: ``[b]`` masked-in tokens of the group of each row, or None.
        group_seqs: ``[b]`` sequences in the group of each row, or None.
    """

    n_tokens: float
    n_seqs: float
    norm_len: float = 0.0
    n_groups: float = 0.0
    group_tokens: Optional[torch.Tensor] = None
    group_seqs: Optional[torch.Tensor] = None

    @staticmethod
    def of(mask: torch.Tensor, norm_len: float = 0.0, group_size: int = 0) -> "Normalizer":
        """Builds the normalizer of a whole mini-batch.

        Args:
            mask: ``[B, T]`` response mask of the mini-batch, rows in the order the learner runs them.
            norm_len: The constant length of ``seq-mean-token-sum-norm``.
            group_size: Sequences per loss group (consecutive rows); 0 aggregates the mini-batch whole.
        """
        n_tokens, n_seqs = float(mask.sum().clamp(min=1).item()), float(mask.shape[0])
        if group_size <= 0:
            return Normalizer(n_tokens, n_seqs, float(norm_len))
        group = torch.arange(mask.shape[0], device=mask.device) // group_size
        tokens = torch.zeros(int(group[-1]) + 1, device=mask.device).index_add_(0, group, mask.float().sum(-1))
        seqs = torch.zeros_like(tokens).index_add_(0, group, torch.ones_like(group, dtype=tokens.dtype))
        return Normalizer(n_tokens, n_seqs, float(norm_len), float(len(tokens)), tokens[group], seqs[group])

    def select(self, pos: torch.Tensor) -> "Normalizer":
        """The normalizer of a micro-batch: rows ``pos`` (positions in the mini-batch) of the per-row fields."""
        if self.group_tokens is None:
            return self
        pos = pos.to(self.group_tokens.device)
        return replace(self, group_tokens=self.group_tokens[pos], group_seqs=self.group_seqs[pos])


def _grouped(loss: torch.Tensor, mask: torch.Tensor, mode: str, norm: Normalizer) -> torch.Tensor:
    """:func:`aggregate` with loss groups: each group aggregated on its own, groups averaged."""
    tok = (loss * mask).sum(-1)  # [b] token sums
    tokens, seqs = norm.group_tokens.to(tok.device), norm.group_seqs.to(tok.device)
    if mode == "token-mean":
        per_row = tok / tokens.clamp(min=1)
    elif mode == "seq-mean-token-mean":
        per_row = tok / mask.sum(-1).clamp(min=1) / seqs
    else:
        per_row = tok / (seqs * norm.norm_len)
    return per_row.sum() / norm.n_groups


def aggregate(loss: torch.Tensor, mask: torch.Tensor, mode: str, norm: Normalizer) -> torch.Tensor:
    """Reduces a token loss ``[b, T]`` to a scalar share of the mini-batch loss.

    Modes: ``token-mean`` (every token weighs the same), ``seq-mean-token-mean``
    (every sequence weighs the same), ``seq-mean-token-sum-norm`` (token sum over the
    constant ``norm.norm_len``, then mean over sequences; Dr. GRPO). With loss groups
    (see :class:`Normalizer`) the mode applies within each group and groups weigh the same.

    Args:
        loss: ``[b, T]`` per-token loss of a micro-batch.
        mask: ``[b, T]`` its response mask.
        mode: One of the modes above.
        norm: The mini-batch's normalizer, ``select``-ed to the micro-batch's rows.
    """
    if mode not in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        raise ValueError(f"unknown loss aggregation {mode!r}")
    if mode == "seq-mean-token-sum-norm" and norm.norm_len <= 0:
        # The batch's padded width is not a constant (the rollout trims it to the longest row).
        raise ValueError("seq-mean-token-sum-norm needs a constant norm_len (rollout.max_new_tokens)")
    mask = mask.float()
    if norm.group_tokens is not None:
        return _grouped(loss, mask, mode, norm)
    if mode == "token-mean":
        return (loss * mask).sum() / norm.n_tokens
    if mode == "seq-mean-token-mean":
        per_seq = (loss * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return per_seq.sum() / norm.n_seqs
    return (loss * mask).sum() / (norm.n_seqs * norm.norm_len)


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
    # Clamped before exp (no gradient beyond +-20): a stale or broken batch must not give NaN.
    log_ratio = torch.clamp((logp - old_logp) * mask, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
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
            # k1 estimator of the same KL, which the reference logs as actor/ppo_kl.
            "ppo_kl": masked_mean(-log_ratio, mask),
            "ratio_mean": masked_mean(ratio, mask),
            "ratio_max": (ratio * mask).max(),
        }
    return loss, stats


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from sampled tokens.

    ``k1 = log p - log q`` (unbiased, can be negative); ``k3 = q/p - 1 - log(q/p)``
    (unbiased, non-negative, low variance); ``k3_clamped`` is k3 with ``log(q/p)``
    clamped to +-20 and the result to +-10 (the reference's ``low_var_kl``), so a
    far-off token cannot give an infinite penalty.
    """
    diff = logp - ref_logp
    if estimator == "k1":
        return diff
    if estimator == "k3":
        return torch.exp(-diff) - 1 + diff
    if estimator == "k3_clamped":
        neg = torch.clamp(-diff, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        return torch.clamp(torch.exp(neg) - 1 - neg, -10.0, 10.0)
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
    """PPO's (optionally clipped) squared value error ``0.5 max((v-R)^2, (v_clip-R)^2)``.

    ``clip <= 0`` turns clipping off. (The reference always clips, and its 0 means "clip to
    the old value"; a tiny positive ``clip`` such as 1e-12 gives that behaviour here.)
    """
    err = (values.float() - returns) ** 2
    if clip > 0:
        v_clip = old_values + torch.clamp(values.float() - old_values, -clip, clip)
        err = torch.maximum(err, (v_clip - returns) ** 2)
    return 0.5 * aggregate(err, mask, mode, norm)
