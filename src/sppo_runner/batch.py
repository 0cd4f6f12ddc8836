"""Batches passed between rollout, verifier, advantage estimation and the learner.

Shapes: ``B`` samples (prompts x samples per prompt), ``P`` padded prompt length,
``T`` padded response length. Prompts are left-padded, responses right-padded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

import torch


@dataclass
class RolloutBatch:
    """What the rollout engine returns for one call.

    Attributes:
        prompt_ids: ``[B, P]`` left-padded prompt token ids.
        prompt_mask: ``[B, P]`` 1 for real prompt tokens.
        response_ids: ``[B, T]`` sampled tokens, right-padded with the pad id.
        response_mask: ``[B, T]`` 1 for generated tokens (the EOS token included).
        logprobs: ``[B, T]`` log-probability of each sampled token under the
            temperature-scaled (untruncated) policy distribution; 0 where masked.
        texts: ``B`` decoded responses (special tokens removed).
        group: ``[B]`` index of the prompt each sample belongs to (0..n_prompts-1).
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    logprobs: torch.Tensor
    texts: list[str]
    group: torch.Tensor

    @property
    def size(self) -> int:
        return self.response_ids.shape[0]

    @property
    def n_tokens(self) -> int:
        """Number of generated tokens (EOS included)."""
        return int(self.response_mask.sum().item())

    def to(self, device: torch.device | str) -> "RolloutBatch":
        """Moves every tensor field to ``device`` (a no-op when already there)."""
        return RolloutBatch(**{f.name: (v.to(device) if isinstance(v, torch.Tensor) else v)
                               for f in fields(self) for v in [getattr(self, f.name)]})

    def full(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Concatenates prompt and response for a learner forward pass.

        Returns:
            ``input_ids [B, P+T]``, ``attention_mask [B, P+T]`` and
            ``position_ids [B, P+T]`` (counting from the first real prompt token).
        """
        ids = torch.cat([self.prompt_ids, self.response_ids], dim=1)
        mask = torch.cat([self.prompt_mask, self.response_mask], dim=1)
        pos = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return ids, mask, pos


@dataclass
class ScoredBatch:
    """A rollout with rewards and everything the learner needs.

    Attributes:
        rollout: The sampled batch.
        rewards: ``[B]`` scalar reward of each sequence (0/1 from the verifier).
        advantages: ``[B, T]`` per-token advantages (zero where masked).
        returns: ``[B]`` or ``[B, T]`` critic targets, or None without a critic.
        values: ``[B]`` or ``[B, T]`` pre-update critic outputs, or None. For a
            prompt-level critic these are logits (V = sigmoid(logit)).
        ref_logprobs: ``[B, T]`` reference-policy log-probs when KL is used.
    """

    rollout: RolloutBatch
    rewards: torch.Tensor
    advantages: Optional[torch.Tensor] = None
    returns: Optional[torch.Tensor] = None
    values: Optional[torch.Tensor] = None
    ref_logprobs: Optional[torch.Tensor] = None
    extra: dict = field(default_factory=dict)


def index_rollout(batch: RolloutBatch, idx: torch.Tensor) -> RolloutBatch:
    """Selects rows ``idx`` of every per-sample field (for mini-batching)."""
    out = {}
    for f in fields(batch):
        v = getattr(batch, f.name)
        out[f.name] = [v[i] for i in idx.tolist()] if isinstance(v, list) else v[idx.to(v.device)]
    return RolloutBatch(**out)
