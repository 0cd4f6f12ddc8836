"""Answer extraction: find the final answer span in a model response.

Every extractor takes the response text and returns the raw answer string or
``None``. All of them are linear-time scans or anchored regexes without nested
quantifiers, so a hostile 1 MB response cannot make extraction itself slow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Extractor = Callable[[str], "str | None"]

_THINK_END = "</think>"
_BOX_COMMANDS = ("\\boxed", "\\fbox")
# Only the last few box commands are examined: a response full of unclosed
# `\boxed{` must not turn the backwards search into a quadratic scan.
_MAX_BOX_ATTEMPTS = 4

_GSM8K_RE = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS_RE = re.compile(r"answer\s+is\s*[:：]?\s*([^\n]+)", re.IGNORECASE)
_ANSWER_COLON_RE = re.compile(r"answer\s*[:：]\s*([^\n]+)", re.IGNORECASE)
_TRAILING_PUNCT = " \t.。;,!"
# ". " ends a sentence; a decimal point ("3.5") has no space after it.
_SENTENCE_END_RE = re.compile(r"[.?](?:\s|$)|\s(?:because|since|so|which|as)\s")


def final_section(response: str) -> str:
    """Returns the text after the last ``</think>``, or the whole response.

    Reasoning models may box intermediate results while thinking; only the
    part after the reasoning block is the committed answer.
    """
    idx = response.rfind(_THINK_END)
    if idx < 0:
        return response
    return response[idx + len(_THINK_END):]


def _match_braces(text: str, open_idx: int) -> int:
    """Returns the index of the brace closing ``text[open_idx]`` or -1.

    Escaped braces (``\\{``) are literal characters in LaTeX and do not count.
    """
    depth = 0
    i = open_idx
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _box_argument(text: str, start: int) -> str | None:
    """Reads the argument of a box command whose name ends at ``start``."""
    i = start
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i >= n:
        return None
    if text[i] == "{":
        end = _match_braces(text, i)
        return None if end < 0 else text[i + 1:end]
    if i == start and text[i].isalpha():
        return None  # e.g. `\boxedsomething`: a different command name
    # `\boxed 5`: the argument runs to the end of the math segment.
    j = i
    while j < n and text[j] not in "$\n" and not text.startswith("\\]", j) \
            and not text.startswith("\\)", j):
        j += 1
    arg = text[i:j].strip().rstrip(_TRAILING_PUNCT)
    return arg or None


def extract_boxed(response: str) -> str | None:
    """Returns the argument of the last ``\\boxed{}``/``\\fbox{}`` in the text.

    Handles nested braces and the brace-less form ``\\boxed 5``.
    """
    text = final_section(response)
    positions: list[tuple[int, int]] = []
    for cmd in _BOX_COMMANDS:
        end = len(text)
        for _ in range(_MAX_BOX_ATTEMPTS):
            idx = text.rfind(cmd, 0, end)
            if idx < 0:
                break
            positions.append((idx, idx + len(cmd)))
            end = idx
    for _, arg_start in sorted(positions, reverse=True)[:_MAX_BOX_ATTEMPTS]:
        arg = _box_argument(text, arg_start)
        if arg is not None and arg.strip():
            return arg.strip()
    return None


def _first_segment(text: str) -> str:
    """Cuts a free-text answer down to its math segment or first sentence."""
    text = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(left):
            end = text.find(right, len(left))
            return text[len(left):end] if end > 0 else text[len(left):]
    end = _SENTENCE_END_RE.search(text)
    return text[:end.start()] if end else text


def _last_match(pattern: re.Pattern[str], response: str) -> str | None:
    text = final_section(response)
    last = None
    for m in pattern.finditer(text):
        last = m
    if last is None:
        return None
    ans = last.group(1).strip()
    # A boxed answer inside the matched line is the most specific span.
    boxed = extract_boxed(ans) if "\\boxed" in ans or "\\fbox" in ans else None
    if boxed:
        return boxed
    ans = _first_segment(ans).rstrip(_TRAILING_PUNCT).strip("$ ").strip()
    return ans or None


def extract_gsm8k(response: str) -> str | None:
    """Returns the answer after the last ``####`` marker (GSM8K format)."""
    return _last_match(_GSM8K_RE, response)


def extract_answer_is(response: str) -> str | None:
    """Returns the text after the last "the answer is"."""
    return _last_match(_ANSWER_IS_RE, response)


def extract_answer_colon(response: str) -> str | None:
    """Returns the text after the last "Answer:"."""
    return _last_match(_ANSWER_COLON_RE, response)


EXTRACTORS: Mapping[str, Extractor] = {
    "boxed": extract_boxed,
    "gsm8k": extract_gsm8k,
    "answer_is": extract_answer_is,
    "answer_colon": extract_answer_colon,
}
DEFAULT_EXTRACTORS: tuple[str, ...] = ("boxed",)


def validate_extractors(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Checks extractor names against the registry.

    Args:
        names: extractor names, tried in order.

    Returns:
        The names as a tuple.

    Raises:
        ValueError: a name is not registered, or the list is empty.
    """
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if not names:
        raise ValueError("at least one extractor is required")
    unknown = [n for n in names if n not in EXTRACTORS]
    if unknown:
        raise ValueError(
            f"unknown extractor(s) {unknown}; allowed: {sorted(EXTRACTORS)}"
        )
    return names


def extract(response: str, names: tuple[str, ...]) -> str | None:
    """Runs the named extractors in order; the first non-empty hit wins."""
    for name in names:
        ans = EXTRACTORS[name](response)
        if ans:
            return ans
    return None
