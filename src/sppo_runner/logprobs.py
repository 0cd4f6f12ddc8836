"""Token log-probabilities, computed one way for the sampler and the learner."""

from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probability of ``tokens`` under ``softmax(logits / temperature)``.

    Args:
        logits: ``[..., V]`` raw logits (any float dtype; computed in float32).
        tokens: ``[...]`` token ids.
        temperature: Sampling temperature; values <= 0 (greedy) are treated as 1.

    Returns:
        ``[...]`` float32 log-probabilities.
    """
    logits = logits.float()
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    # logsumexp + gather avoids materializing a full log_softmax copy of [.., V].
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of ``softmax(logits / temperature)``; ``[..., V] -> [...]``."""
    logits = logits.float()
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def sequence_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    n_response: int,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of the last ``n_response`` tokens of each row given everything before.

    Args:
        model: A transformers causal LM.
        input_ids: ``[B, P+T]`` prompt (left-padded) followed by response (right-padded).
        attention_mask: ``[B, P+T]``.
        position_ids: ``[B, P+T]``.
        n_response: ``T``.
        temperature: The sampling temperature.
        with_entropy: Also return the per-token entropy.

    Returns:
        ``logprobs [B, T]`` and ``entropy [B, T]`` (or None).
    """
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    # Logits at position j predict token j+1: keep the T positions before each response token.
    logits = out.logits[:, -n_response - 1 : -1]
    targets = input_ids[:, -n_response:]
    lp = token_logprobs(logits, targets, temperature)
    ent = entropy_from_logits(logits, temperature) if with_entropy else None
    return lp, ent
