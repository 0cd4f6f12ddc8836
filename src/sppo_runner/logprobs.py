"""Token log-probabilities, computed one way for the sampler and the learner."""

from __future__ import annotations

import inspect
from typing import Any

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


def cache_kwarg(model: torch.nn.Module) -> str:
    """Name of the forward's KV-cache argument: ``cache`` in transformers 5, ``past_key_values`` in 4.x."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def returned_cache(out: Any) -> Any:
    """The KV cache a forward returned (transformers 5 calls it ``cache``, 4.x ``past_key_values``)."""
    cache = out.get("cache", None)
    return cache if cache is not None else out.get("past_key_values", None)


def grouped_sequence_logprobs(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    group: torch.Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`sequence_logprobs` that runs each distinct prompt through the model once.

    The N samples of a prompt (GRPO, RLOO) share its forward pass: the prompt's KV cache
    is computed once per group, gathered to every sample of the group, and the responses
    run on top of it. Gradients flow through the shared prompt pass, so losses and
    gradients equal the per-row computation up to float rounding, for about
    ``(P + N*T) / (N*(P+T))`` of its token work.

    Args:
        model: A transformers causal LM whose forward accepts a KV cache.
        prompt_ids: ``[B, P]`` left-padded prompts (identical rows within a group).
        prompt_mask: ``[B, P]``.
        response_ids: ``[B, T]`` right-padded responses.
        response_mask: ``[B, T]``.
        group: ``[B]`` prompt index of each row.
        temperature: The sampling temperature.
        with_entropy: Also return the per-token entropy.

    Returns:
        ``logprobs [B, T]`` and ``entropy [B, T]`` (or None).
    """
    _, inverse = torch.unique(group, return_inverse=True)
    first = torch.zeros(int(inverse.max()) + 1, dtype=torch.long, device=group.device)
    first.scatter_(0, inverse, torch.arange(len(group), device=group.device))
    p_ids, p_mask = prompt_ids[first], prompt_mask[first]
    out = model(input_ids=p_ids, attention_mask=p_mask, position_ids=(p_mask.cumsum(1) - 1).clamp(min=0),
                use_cache=True, logits_to_keep=1)
    cache = returned_cache(out)
    cache.batch_select_indices(inverse)
    T = response_ids.shape[1]
    # Response positions continue after each row's real prompt tokens, as in sequence_logprobs.
    pos = prompt_mask.sum(1, keepdim=True) + torch.arange(T, device=response_ids.device)
    mask = torch.cat([prompt_mask, response_mask], dim=1)
    out2 = model(input_ids=response_ids, attention_mask=mask, position_ids=pos, use_cache=True,
                 **{cache_kwarg(model): cache})
    # The first response token is predicted by the prompt's last position.
    logits = torch.cat([out.logits[:, -1:][inverse], out2.logits[:, :-1]], dim=1)
    lp = token_logprobs(logits, response_ids, temperature)
    ent = entropy_from_logits(logits, temperature) if with_entropy else None
    return lp, ent
