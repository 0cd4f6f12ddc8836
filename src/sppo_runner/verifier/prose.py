"""Words around an answer: filler, ordinals and integer-parameter phrases.

Pure string passes used by :func:`normalize.normalize`. Each one first checks
a cheap condition, so that plain numeric answers (the bulk of a batch) pay
almost nothing for them. Nothing here evaluates anything.
"""

from __future__ import annotations

import re

# "\text{only } x=0", "\text{The answer is } 5": words that add nothing.
_FILLER = (r"(?:only|just|exactly|thus|so|hence|therefore|the\s+answer\s+is|answer\s+is|"
           r"answer|final\s+answer(?:\s+is)?|the\s+final\s+answer\s+is)")
_LEAD_FILLER_RE = re.compile(
    r"^\s*(?:\\(?:text|textbf|textit|mbox|mathrm|textrm)\s*\{\s*(?:" + _FILLER
    + r"|[a-z][a-z ]{0,40}\s(?:is|are|equals))\s*:?\s*\}|" + _FILLER
    + r"\s*:|(?:only|just)\s(?=\s*[^\s=])|\\approx|\\sim)\s*:?\s*",
    re.IGNORECASE,
)
# "\text{x is not } 5" must not lose its "not"
_NEGATION_RE = re.compile(r"\b(?:not|no|never|except|none)\b", re.IGNORECASE)
_ALL_REALS_RE = re.compile(
    r"^(?:\\text\s*\{\s*)?(?:the\s+set\s+of\s+)?all\s+real\s+numbers\s*\}?$",
    re.IGNORECASE)
_TRAIL_FILLER_RE = re.compile(
    r"\s*\\(?:text|mbox|mathrm|textrm)\s*\{\s*only\s*\}\s*$", re.IGNORECASE)
_ORDINAL_RE = re.compile(r"(\d{1,12})\s*(?:\^\s*)?(\{*)\s*(st|nd|rd|th)\s*(\}*)(?![A-Za-z])")
_ORDINAL_HINTS = ("st", "nd", "rd", "th")
# "k \in \mathbb{Z}" at the end, after "where", "for (all|any|some)", "(".
_INTRO = r"[,;]?\s*\(?\s*\{?\s*(?:where|for|with)?\s*(?:all|any|some|every|each)?\s*"
_PARAM_IN_RE = re.compile(
    _INTRO + r"\}?\s*([a-zA-Z])\s*\\in\s*\\mathbb\s*\{?\s*([ZN])\s*\}?"
    r"(?:\^\s*\{?\s*\+\s*\}?)?\s*\)?\s*$")
_PARAM_IS_RE = re.compile(
    _INTRO + r"\}?\s*([a-zA-Z])\s*\{?\s*(?:is|are)\s+(?:an?\s+|any\s+)?"
    r"(integer|natural\s+number|whole\s+number)s?\s*\}?\s*\)?\s*$", re.IGNORECASE)
_PARAM_FOR_RE = re.compile(
    _INTRO + r"(integer|natural\s+number|whole\s+number)s?\s*\}?\s*([a-zA-Z])\s*\)?\s*$",
    re.IGNORECASE)


def drop_filler(s: str) -> str:
    """Removes a leading "only"/"the answer is" and a trailing "only"."""
    if "\\" not in s and not s[:1].isalpha():
        return s
    if _ALL_REALS_RE.match(s):
        return "\\mathbb{R}"
    out = s
    m = _LEAD_FILLER_RE.match(s)
    if m is not None and not _NEGATION_RE.search(m.group(0)):
        out = s[m.end():]
    if "only" in out:
        out = _TRAIL_FILLER_RE.sub("", out)
    return out if out.strip() else s


def _ordinal_suffix(n: int) -> str:
    if 11 <= n % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _drop_ordinal(m: re.Match[str]) -> str:
    digits, opened, suffix, closed = m.group(1), m.group(2), m.group(3), m.group(4)
    if len(opened) != len(closed) or suffix.lower() != _ordinal_suffix(int(digits)):
        return m.group(0)
    return digits


def strip_ordinals(s: str) -> str:
    """``12^{th}``, ``15th``, ``1^{\\text{st}}`` -> the number (suffix must fit it)."""
    if not any(h in s for h in _ORDINAL_HINTS):
        return s
    return _ORDINAL_RE.sub(_drop_ordinal, s)


def canonical_params(s: str) -> str:
    """Rewrites a trailing integer-parameter phrase as ``, k \\in \\mathbb{Z}``.

    ``x = k\\pi \\text{ where } k \\text{ is an integer}``,
    ``\\text{for any integer } k`` and ``(k \\in \\mathbb{Z})`` all become the
    one form the parser reads as a declaration.
    """
    if "mathbb" not in s and "nteger" not in s and "number" not in s:
        return s
    for pattern, var_group, set_group in ((_PARAM_IN_RE, 1, 2), (_PARAM_IS_RE, 1, 2),
                                          (_PARAM_FOR_RE, 2, 1)):
        m = pattern.search(s)
        if m is None or not s[:m.start()].strip():
            continue
        kind = m.group(set_group).lower()
        letter = "Z" if kind in ("z", "integer") else "N"
        return f"{s[:m.start()].rstrip()}, {m.group(var_group)} \\in \\mathbb{{{letter}}}"
    return s
