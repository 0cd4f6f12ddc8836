"""Old log-probs from the learner: the PPO ratio's denominator when the engine's numerics differ.

An engine with its own kernels (vLLM; bf16 anywhere) returns log-probs of the sampled tokens that
differ from what the learner's forward gives for the same weights. Used as the ratio's old
log-probs, that difference acts as a spurious off-policy correction (verl and OpenRLHF recompute
for this reason). :func:`recompute` replaces them with the learner's and measures the gap.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from sppo_runner.batch import RolloutBatch, index_rollout


@torch.no_grad()
def recompute(rollout: RolloutBatch, logprobs_of: Callable[[RolloutBatch], torch.Tensor],
              micro_batch_size: int = 0) -> tuple[RolloutBatch, dict[str, float]]:
    """The rollout with the learner's log-probs, and the engine/learner mismatch.

    Args:
        rollout: The engine's batch (``logprobs [B, T]`` from the engine).
        logprobs_of: The learner's log-probs ``[b, T]`` of a sub-batch (its forward, dtype and
            autocast, in eval mode).
        micro_batch_size: Rows per forward; 0 = all.

    Returns:
        The batch with ``logprobs`` replaced, and ``rollout/logprob_abs_diff_mean`` /
        ``rollout/logprob_abs_diff_max`` over the response tokens.
    """
    rows = torch.arange(rollout.size)
    size = micro_batch_size if micro_batch_size > 0 else rollout.size
    # Samples of one prompt stay in one chunk, so the learner can share their prompt pass.
    parts = [logprobs_of(index_rollout(rollout, rows[i : i + size])) for i in range(0, rollout.size, size)]
    learner = torch.cat(parts).float().to(rollout.logprobs.device)
    mask = rollout.response_mask.bool()
    learner = torch.where(mask, learner, torch.zeros_like(learner))
    diff = (learner - rollout.logprobs.float()).abs()[mask]
    metrics = {
        "rollout/logprob_abs_diff_mean": diff.mean().item() if diff.numel() else 0.0,
        "rollout/logprob_abs_diff_max": diff.max().item() if diff.numel() else 0.0,
    }
    return dataclasses.replace(rollout, logprobs=learner), metrics
