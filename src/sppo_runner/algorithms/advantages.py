"""Advantage estimators. Pure tensor code: one signature for all of them.

Every estimator takes an :class:`AdvantageInputs` and the algorithm config and
returns ``(advantages [B, T], returns)`` where ``returns`` is the critic's target
(``[B]`` for a prompt-level critic, ``[B, T]`` for a token-level one) or None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from sppo_runner.algorithms.losses import masked_mean

AdvantageOut = tuple[torch.Tensor, Optional[torch.Tensor]]
AdvantageFn = Callable[["AdvantageInputs", Any], AdvantageOut]


@dataclass
class AdvantageInputs:
    """Everything an estimator may read.

    Attributes:
        token_rewards: ``[B, T]`` the sequence reward on the last response token,
            plus any per-token reward shaping (KL-in-reward), zero where masked.
        response_mask: ``[B, T]`` 1 for generated tokens.
        group: ``[B]`` prompt index of each sample (samples of a prompt share it).
        values: ``[B]`` prompt-level critic logits, ``[B, T]`` token values, or None.
            Always the critic *before* this batch's critic update.
        baseline_rewards: ``[B]`` reward of a greedy rollout of the same prompt (ReMax).
    """

    token_rewards: torch.Tensor
    response_mask: torch.Tensor
    group: torch.Tensor
    values: Optional[torch.Tensor] = None
    baseline_rewards: Optional[torch.Tensor] = None

    @property
    def rewards(self) -> torch.Tensor:
        """``[B]`` total reward of each sequence."""
        return (self.token_rewards * self.response_mask).sum(-1)


def token_rewards_from(rewards: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Places each sequence reward on its last response token.

    Args:
        rewards: ``[B]``.
        response_mask: ``[B, T]``.

    Returns:
        ``[B, T]`` zeros except at each row's last masked-in position.
    """
    out = torch.zeros_like(response_mask, dtype=torch.float32)
    last = (response_mask.sum(-1) - 1).clamp(min=0).long()
    out[torch.arange(len(rewards), device=rewards.device), last] = rewards.float()
    return out * response_mask


def _broadcast(adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return adv.float().unsqueeze(-1) * mask


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8, unbiased: bool = False) -> torch.Tensor:
    """Masked whitening ``(x - mean) / std`` over all masked-in entries.

    Args:
        x: ``[B, T]`` values.
        mask: ``[B, T]``.
        eps: Added to the variance.
        unbiased: Bessel-corrected variance (times ``n / (n - 1)`` for ``n`` masked-in entries),
            as the reference's ``masked_whiten``; the default is the population variance.
    """
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.float().sum()
        var = var * n / (n - 1).clamp(min=1)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def _group_sums(r: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group sample counts and reward sums, ``[G]`` each (G = max group index + 1)."""
    n_groups = int(group.max().item()) + 1
    count = torch.zeros(n_groups, device=r.device).index_add_(0, group, torch.ones_like(r))
    total = torch.zeros(n_groups, device=r.device).index_add_(0, group, r)
    return count, total


def prompt_bandit(inp: AdvantageInputs, cfg: Any) -> AdvantageOut:
    """SPPO: ``A = R - sigmoid(V(prompt))``, the same for every response token, not whitened.

    The critic target is the 0/1 reward itself (trained with BCE).
    """
    assert inp.values is not None and inp.values.dim() == 1, "SPPO needs prompt-level critic logits [B]"
    r = inp.rewards
    adv = r - torch.sigmoid(inp.values.float())
    return _broadcast(adv, inp.response_mask), r


def gae(inp: AdvantageInputs, cfg: Any) -> AdvantageOut:
    """Token-level GAE over the response (``gamma``, ``lam``), as in PPO.

    With a BCE-trained critic (``critic_loss=bce``) values are logits and V = sigmoid.
    Returns ``returns = advantages + values`` as the critic target, computed before
    optional whitening.
    """
    assert inp.values is not None and inp.values.dim() == 2, "GAE needs token values [B, T]"
    mask = inp.response_mask.float()
    values = inp.values.float()
    if getattr(cfg, "critic_loss", "mse") == "bce":
        values = torch.sigmoid(values)
    values = values * mask
    rewards = inp.token_rewards.float() * mask
    B, T = rewards.shape
    adv = torch.zeros_like(rewards)
    last = torch.zeros(B, device=rewards.device)
    next_v = torch.zeros_like(last)
    # Masked positions carry the running advantage and the next value through unchanged, so
    # a masked-out token inside a response (a hole) is skipped, as in the reference's GAE.
    for t in reversed(range(T)):
        delta = rewards[:, t] + cfg.gamma * next_v - values[:, t]
        new = delta + cfg.gamma * cfg.lam * last
        valid = mask[:, t] > 0
        last = torch.where(valid, new, last)
        next_v = torch.where(valid, values[:, t], next_v)
        adv[:, t] = last
    returns = (adv + values) * mask
    adv = adv * mask
    if cfg.whiten_advantages:
        adv = whiten(adv, mask, unbiased=getattr(cfg, "whiten_unbiased", False))
    return adv, returns


def group_normalized(inp: AdvantageInputs, cfg: Any) -> AdvantageOut:
    """GRPO: ``(R - group mean) / (group std + eps)``; Dr. GRPO drops the std."""
    r = inp.rewards
    count, total = _group_sums(r, inp.group)
    mean = total / count
    sq = torch.zeros_like(count).index_add_(0, inp.group, (r - mean[inp.group]) ** 2)
    # Unbiased std, like torch.std within each group.
    std = torch.sqrt(sq / (count - 1).clamp(min=1))
    adv = r - mean[inp.group]
    if cfg.norm_by_std:
        adv = adv / (std[inp.group] + cfg.adv_eps)
    return _broadcast(adv, inp.response_mask), None


def leave_one_out(inp: AdvantageInputs, cfg: Any) -> AdvantageOut:
    """RLOO: baseline is the mean reward of the other samples of the same prompt."""
    r = inp.rewards
    count, total = _group_sums(r, inp.group)
    baseline = (total[inp.group] - r) / (count[inp.group] - 1).clamp(min=1)
    return _broadcast(r - baseline, inp.response_mask), None


def greedy_baseline(inp: AdvantageInputs, cfg: Any) -> AdvantageOut:
    """ReMax: reward-to-go minus the reward of the greedy response to the same prompt.

    ``A_t = sum_{s >= t} r_s - b``: with KL-in-reward the token rewards ``r_s`` carry the KL
    penalty, so each token is charged only the penalty of itself and the tokens after it.
    Without KL every token gets ``R - b``.
    """
    assert inp.baseline_rewards is not None, "ReMax needs baseline_rewards from a greedy rollout"
    mask = inp.response_mask.float()
    to_go = (inp.token_rewards.float() * mask).flip(-1).cumsum(-1).flip(-1)
    return to_go - inp.baseline_rewards.float().unsqueeze(-1) * mask, None
