"""Rendering problems into model input and tokenizing them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

from sppo_runner.data.problem import Problem
from sppo_runner.errors import UserError

log = logging.getLogger(__name__)


class EmptyDataError(UserError, ValueError):
    """A training, held-out or benchmark set has no problems left; the message says why."""


def with_suffix(prompt: str, suffix: str) -> str:
    """Appends ``suffix`` unless the prompt already ends with it (verl files carry it already).

    A space is put between the two when neither side brings whitespace.
    """
    if not suffix or prompt.rstrip().endswith(suffix.strip()):
        return prompt
    sep = "" if prompt[-1:].isspace() or suffix[:1].isspace() else " "
    return prompt + sep + suffix


def render(problem: Problem, tokenizer: Any, use_chat_template: bool, suffix: str) -> str:
    """The text the policy sees: chat template (when enabled and present) around prompt + suffix."""
    text = with_suffix(problem.prompt, suffix)
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    return text


@dataclass
class EncodedProblems:
    """Problems with their prompt token ids (aligned lists).

    Attributes:
        problems: The kept problems.
        token_ids: Their prompt ids, unpadded.
        n_filtered: Problems dropped for exceeding the prompt limit.
        n_truncated: Prompts cut to the limit (keeping their end, where the question is asked).
    """

    problems: list[Problem]
    token_ids: list[list[int]]
    n_filtered: int = 0
    n_truncated: int = 0


def encode(problems: Sequence[Problem], tokenizer: Any, cfg: Any) -> EncodedProblems:
    """Renders and tokenizes ``problems`` under ``cfg`` (a DataConfig)."""
    out = EncodedProblems([], [])
    limit = cfg.max_prompt_tokens
    for p in problems:
        ids = tokenizer(render(p, tokenizer, cfg.chat_template, cfg.suffix), add_special_tokens=False)["input_ids"]
        if limit and len(ids) > limit:
            if cfg.long_prompts == "filter":
                out.n_filtered += 1
                continue
            ids = ids[-limit:]
            out.n_truncated += 1
        out.problems.append(p)
        out.token_ids.append(ids)
    if out.n_filtered or out.n_truncated:
        log.info("prompts over %d tokens: %d filtered, %d truncated", limit, out.n_filtered, out.n_truncated)
    return out


def require_prompts(sets: dict[str, EncodedProblems], cfg: Any) -> None:
    """Refuses an empty set (name -> encoded problems), saying whether the length filter emptied it.

    Raises:
        EmptyDataError: Naming the set and what to change.
    """
    for name, enc in sets.items():
        if enc.problems:
            continue
        why = ""
        if enc.n_filtered:
            why = (f": all {enc.n_filtered} prompts are longer than data.max_prompt_tokens={cfg.max_prompt_tokens} "
                   f"(raise it, or set data.long_prompts=truncate)")
        raise EmptyDataError(f"the {name} is empty{why}")


def longest_prompt(*sets: EncodedProblems) -> int:
    """The most prompt tokens of any problem in ``sets`` (0 when all are empty)."""
    return max((len(ids) for enc in sets for ids in enc.token_ids), default=0)
