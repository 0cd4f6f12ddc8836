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



CRITICS: dict[str, Optional[Any]] = {"none": None, "prompt": PromptCritic(), "token": TokenCritic()}
