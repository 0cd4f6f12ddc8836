"""Helpers shared by the rollout backends: padding, masks, stop strings, batch assembly."""

from __future__ import annotations

import torch

from sppo_runner.batch import RolloutBatch


def left_pad(
    prompts: list[list[int]], n: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pads prompts and repeats each one ``n`` times (copies adjacent).

    Args:
        prompts: Unpadded token ids; every prompt must be non-empty.
        n: Samples per prompt.
        pad_id: Pad token id.

    Returns:
        ``ids [B, P]`` (int64) and ``mask [B, P]`` (int64) with ``B = len(prompts) * n``.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty token lists")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p) :] = 1
    return ids.repeat_interleave(n, dim=0), mask.repeat_interleave(n, dim=0)


def eos_lengths(tokens: torch.Tensor, eos_ids: list[int]) -> torch.Tensor:
    """Response length of each row: up to and including the first EOS, else the full width.

    Args:
        tokens: ``[B, T]`` generated tokens.
        eos_ids: Token ids that end a response (may be empty).

    Returns:
        ``[B]`` int64 lengths in ``1..T`` (0 only when ``T == 0``).
    """
    width = tokens.shape[1]
    if not eos_ids or width == 0:
        return torch.full((tokens.shape[0],), width, dtype=torch.long)
    is_eos = torch.isin(tokens, torch.tensor(eos_ids, device=tokens.device))
    first = torch.where(
        is_eos.any(1),
        is_eos.int().argmax(1) + 1,
        torch.full_like(is_eos[:, 0], width, dtype=torch.long),
    )
    return first.long()


def stop_length(tokenizer, tokens: list[int], stops: tuple[str, ...]) -> int | None:
    """Shortest prefix of ``tokens`` whose decoded text contains a stop string.

    Args:
        tokenizer: The tokenizer (``decode`` with ``skip_special_tokens``).
        tokens: Generated token ids of one row.
        stops: Stop strings.

    Returns:
        The number of tokens to keep, or None when no stop string occurs.
    """
    stops = tuple(s for s in stops if s)
    if not stops or not tokens:
        return None

    def hit(k: int) -> bool:
        text = tokenizer.decode(tokens[:k], skip_special_tokens=True)
        return any(s in text for s in stops)

    if not hit(len(tokens)):
        return None
    # Containment grows with the prefix, so bisect for the first prefix that has it.
    lo, hi = 1, len(tokens)
    while lo < hi:
        mid = (lo + hi) // 2
        if hit(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def assemble(
    tokenizer,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    tokens: torch.Tensor,
    logprobs: torch.Tensor,
    lengths: torch.Tensor,
    n: int,
    pad_id: int,
) -> RolloutBatch:
    """Masks, pads and trims generated rows into a RolloutBatch.

    Args:
        tokenizer: For decoding the texts.
        prompt_ids: ``[B, P]`` left-padded prompts.
        prompt_mask: ``[B, P]``.
        tokens: ``[B, T]`` generated tokens (anything after ``lengths`` is ignored).
        logprobs: ``[B, T]`` log-probs of ``tokens``.
        lengths: ``[B]`` number of valid tokens in each row.
        n: Samples per prompt.
        pad_id: Pad id written after each response.

    Returns:
        The batch, on CPU, with ``T`` trimmed to the longest response.
    """
    lengths = lengths.cpu()
    width = max(int(lengths.max().item()), 1) if lengths.numel() else 1
    tokens, logprobs = tokens[:, :width].cpu(), logprobs[:, :width].float().cpu()
    mask = (torch.arange(tokens.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)).long()
    tokens = torch.where(mask.bool(), tokens, torch.full_like(tokens, pad_id))
    logprobs = torch.where(mask.bool(), logprobs, torch.zeros_like(logprobs))
    rows = [t[: int(k)].tolist() for t, k in zip(tokens, lengths)]
    texts = tokenizer.batch_decode(rows, skip_special_tokens=True)
    group = torch.arange(prompt_ids.shape[0]) // n
    return RolloutBatch(
        prompt_ids=prompt_ids.cpu(),
        prompt_mask=prompt_mask.cpu(),
        response_ids=tokens,
        response_mask=mask,
        logprobs=logprobs,
        texts=texts,
        group=group,
    )


def eos_id_list(tokenizer, model: torch.nn.Module | None = None) -> list[int]:
    """EOS ids from the tokenizer, plus any in the model's generation config."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None) if model is not None else None
    extra = getattr(gen, "eos_token_id", None)
    for e in [extra] if isinstance(extra, int) else (extra or []):
        if int(e) not in ids:
            ids.append(int(e))
    return ids


def draw_seed(generator: torch.Generator) -> int:
    """A 62-bit seed drawn from ``generator`` (advances it)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())
