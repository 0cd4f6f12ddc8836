"""Critic kinds: what the critic reads, what it outputs, and its loss.

``prompt``: reads only the left-padded prompt; one logit at the last prompt token
(SPPO). ``token``: reads prompt + response; one value per response token, taken
at the position *before* each response token (token-level PPO).
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from sppo_runner.algorithms.losses import Normalizer, bce_value_loss, mse_value_loss
from sppo_runner.batch import RolloutBatch


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


#: Response-position buckets of the token critic's explained variance (quarters of each response).
POSITION_BUCKETS = 4


def explained_variance_by_position(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                                   n_buckets: int = POSITION_BUCKETS) -> dict[str, float]:
    """``1 - Var(returns - values) / Var(returns)`` over all response tokens and per position bucket.

    Bucket ``q`` (1-based) holds the tokens of the ``q``-th ``1/n_buckets`` of each
    response (token ``t`` of a response of length ``L`` is in bucket
    ``floor(n_buckets * t / L) + 1``), so buckets mean the same thing at every
    response length: ``q1`` is the start of the chain of thought, the last one its end.
    A bucket whose returns do not vary (or that holds fewer than two tokens) is left
    out: its explained variance is undefined.

    Args:
        values: ``[B, T]`` value predictions, on the returns' scale.
        returns: ``[B, T]`` critic targets.
        mask: ``[B, T]`` 1 on response tokens.

    Returns:
        ``{"all": ev, "q1": ev, ...}`` as floats.
    """
    m = mask.bool()
    pos = mask.long().cumsum(-1) - 1
    length = mask.long().sum(-1, keepdim=True).clamp(min=1)
    bucket = torch.div(pos * n_buckets, length, rounding_mode="floor")
    v, r = values.double(), returns.double()
    out = {}
    for name, sel in [("all", m)] + [(f"q{q + 1}", m & (bucket == q)) for q in range(n_buckets)]:
        if int(sel.sum()) < 2:
            continue
        var_r = r[sel].var(unbiased=False)
        if var_r <= 0:
            continue
        out[name] = float(1.0 - (r[sel] - v[sel]).var(unbiased=False) / var_r)
    return out


class PromptCritic:
    """V(prompt) = sigmoid(logit at the last prompt token)."""

    kind = "prompt"

    def values(self, critic: torch.nn.Module, rollout: RolloutBatch) -> torch.Tensor:
        """Returns ``[B]`` logits (left padding puts every last prompt token at column -1)."""
        ids, mask = rollout.prompt_ids, rollout.prompt_mask
        out = critic(input_ids=ids, attention_mask=mask, position_ids=_positions(mask))
        return out.logits[:, -1, 0].float()

    def loss(self, critic: torch.nn.Module, rollout: RolloutBatch, returns: torch.Tensor,
             old_values: torch.Tensor, cfg: Any, norm: Normalizer) -> tuple[torch.Tensor, torch.Tensor]:
        """BCE between the logit and the 0/1 reward; returns ``(loss, logits [b])``."""
        logits = self.values(critic, rollout)
        ones = torch.ones_like(logits)
        if cfg.critic_loss == "mse":
            loss = mse_value_loss(torch.sigmoid(logits)[:, None], torch.sigmoid(old_values)[:, None],
                                  returns[:, None], ones[:, None], cfg.value_clip, norm)
        else:
            loss = bce_value_loss(logits, returns, ones, norm)
        return loss, logits

    def normalizer(self, response_mask: torch.Tensor, max_len: int, group_size: int = 0) -> Normalizer:
        """One term per sample (a ``[b, 1]`` loss): ``response_mask [b, T]`` only gives the count."""
        return Normalizer.of(torch.ones(response_mask.shape[0], 1), 1.0, group_size)

    def diagnostics(self, values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cfg: Any) -> dict[str, float]:
        """None here: ``critic/value_reward_corr`` (run.py) is the prompt critic's diagnostic."""
        return {}


class TokenCritic:
    """V(prefix) for every response position: ``[B, T]`` values."""

    kind = "token"

    def values(self, critic: torch.nn.Module, rollout: RolloutBatch) -> torch.Tensor:
        ids, mask, pos = rollout.full()
        out = critic(input_ids=ids, attention_mask=mask, position_ids=pos)
        T = rollout.response_ids.shape[1]
        # The value of the state before response token t sits at the position of token t-1.
        return out.logits[:, -T - 1 : -1, 0].float()

    def loss(self, critic: torch.nn.Module, rollout: RolloutBatch, returns: torch.Tensor,
             old_values: torch.Tensor, cfg: Any, norm: Normalizer) -> tuple[torch.Tensor, torch.Tensor]:
        vpred = self.values(critic, rollout)
        mask = rollout.response_mask
        # The value loss aggregates like the policy loss (the reference's critic.loss_agg_mode).
        if cfg.critic_loss == "bce":
            loss = bce_value_loss(vpred, returns.clamp(0, 1), mask, norm, cfg.loss_agg)
        else:
            loss = mse_value_loss(vpred, old_values, returns, mask, cfg.value_clip, norm, cfg.loss_agg)
        return loss, vpred

    def normalizer(self, response_mask: torch.Tensor, max_len: int, group_size: int = 0) -> Normalizer:
        """Counts of ``response_mask [b, T]``; ``max_len`` is the sum-norm length."""
        return Normalizer.of(response_mask, max_len, group_size)

    def diagnostics(self, values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cfg: Any) -> dict[str, float]:
        """Explained variance of the pre-update values, overall and per response quarter.

        ``critic/explained_var`` and ``critic/explained_var_q1`` .. ``_q4``: where in the
        chain of thought the critic's values carry information about the return.
        With ``critic_loss=bce`` the values are logits and V = sigmoid(logit).
        """
        v = torch.sigmoid(values) if cfg.critic_loss == "bce" else values
        ev = explained_variance_by_position(v, returns, mask)
        return {"critic/explained_var" + ("" if k == "all" else f"_{k}"): x for k, x in ev.items()}



CRITICS: dict[str, Optional[Any]] = {"none": None, "prompt": PromptCritic(), "token": TokenCritic()}
