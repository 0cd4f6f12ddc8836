"""String stages of the reference's math reward (``verifier.rule=reference``).

Re-implements, from a reading of sustech-nlp/SPPO @ 55e8a72, the two answer
normalisations that ``verl/utils/reward_score/naive_dapo.py`` applies before any
symbolic work: the MATH-dataset cleanup (``prime_math/math_normalize.py``,
``normalize_answer``) and the PRM800K-style cleanup (``naive_dapo._normalize``),
plus the tests ``grade_answer`` puts between them and sympy. Pure string work:
nothing here evaluates text. The one library call, pylatexenc's LaTeX-to-text
converter, is the one the reference uses; it renders text and runs nothing.
"""

from __future__ import annotations

import functools
import logging
import re

_TEXT_WRAPPED = re.compile(r"^\\text\{(?P<text>.+?)\}$")
# The words `_normalize` deletes, each with an optional plural and power (naive_dapo.py:290-309).
_UNIT_RES = tuple(
    re.compile(word + r"(es)?(s)? *(\^[0-9]+)?")
    for word in ("degree", "cm", "centimeter", "meter", "mile", "second", "minute", "hour",
                 "day", "week", "month", "year", "foot", "feet", "inch", "yard", "liter")
)
_CIRC_RE = re.compile(r"\^ *\\circ")
_THIN_SPACE_COMMA_RE = re.compile(r",\\! *")
_GROUPED_THOUSANDS_RE = re.compile(r"(\d)(,)(\d\d\d)($|\D)")
_MINUS_SPACE_RE = re.compile(r"- *")
_MIXED_NUMBER_RE = re.compile(r"([0-9]) +([0-9])")
_FRACTION_RE = re.compile(r"^-?[0-9]+.?/0*[1-9][0-9]*.?$")
_POWER_RUNS = (re.compile(r"\^[0-9]+\^"), re.compile(r"\^[0-9][0-9]+"))
_UNICODE_WORDS = (("√", "sqrt"), ("π", "pi"), ("∞", "inf"), ("∪", "U"), ("·", "*"), ("×", "*"))
_BRACKETS = "()[]"
_CACHE = 65_536


# -- the MATH-dataset cleanup (mathd) -----------------------------------------
@functools.lru_cache(maxsize=_CACHE)
def mathd_normalize(answer: str) -> str:
    """The reference's first normalisation; any failure inside keeps the unwrapped text."""
    answer = answer.strip()
    try:
        m = _TEXT_WRAPPED.search(answer)
        if m is not None:
            answer = m.group("text").strip()
        return _mathd_steps(answer)
    except Exception:  # noqa: BLE001 - as the reference: a failed step keeps the text
        return answer


def _mathd_steps(s: str) -> str:
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    if "\\text{ " in s:  # units on the right; more than one such block is a failure
        parts = s.split("\\text{ ")
        if len(parts) != 2:
            raise AssertionError("several unit blocks")
        s = parts[0]
    s = s.replace("\\%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = _brace_sqrt(s).replace(" ", "")
    s = _brace_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _slash_to_frac(s)


def _brace_sqrt(s: str) -> str:
    r"""``\sqrt3`` -> ``\sqrt{3}`` (one character); an empty tail is a failure."""
    if "\\sqrt" not in s:
        return s
    head, *tails = s.split("\\sqrt")
    out = [head]
    for tail in tails:
        out.append("\\sqrt" + tail if tail[0] == "{" else "\\sqrt{" + tail[0] + "}" + tail[1:])
    return "".join(out)


def _brace_fracs(s: str) -> str:
    r"""``\frac12`` -> ``\frac{1}{2}``, ``\frac1{7}`` -> ``\frac{1}{7}``; a bare tail keeps ``s``."""
    head, *tails = s.split("\\frac")
    out = [head]
    for tail in tails:
        if tail[0] == "{":
            out.append("\\frac" + tail)
            continue
        if len(tail) < 2:
            return s
        first, second, rest = tail[0], tail[1], tail[2:]
        if second == "{":
            out.append("\\frac{" + first + "}" + second + rest)
        else:
            out.append("\\frac{" + first + "}{" + second + "}" + rest)
    return "".join(out)


def _slash_to_frac(s: str) -> str:
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        num, den = int(parts[0]), int(parts[1])
    except ValueError:
        return s
    if s != f"{num}/{den}":
        return s
    return "\\frac{" + str(num) + "}{" + str(den) + "}"


# -- the PRM800K-style cleanup ---------------------------------------------------
@functools.lru_cache(maxsize=_CACHE)
def prm_normalize(expr: str) -> str:
    """The reference's second normalisation: units, LaTeX rendered as text, lower case."""
    m = _TEXT_WRAPPED.search(expr)
    if m is not None:
        expr = m.group("text")
    expr = expr.replace("\\%", "%").replace("\\$", "$").replace("$", "").replace("%", "")
    expr = expr.replace(" or ", " , ").replace(" and ", " , ")
    expr = expr.replace("million", "*10^6").replace("billion", "*10^9").replace("trillion", "*10^12")
    for unit in _UNIT_RES:
        expr = unit.sub("", expr)
    expr = _CIRC_RE.sub("", expr)
    if expr and expr[0] == "{" and expr[-1] == "}":
        expr = expr[1:-1]
    expr = _THIN_SPACE_COMMA_RE.sub("", expr)
    value = _float_or_none(expr)
    if value is not None and _near_int(value):
        expr = str(int(round(value)))
    if "\\" in expr:
        expr = _latex_as_text(expr)
    expr = _MINUS_SPACE_RE.sub("-", expr)
    expr = _MIXED_NUMBER_RE.sub(r"\1+\2", expr)
    expr = expr.lower()
    if str_is_int(expr):
        expr = str(int(float(expr.replace(",", ""))))
    return expr


def _latex_as_text(expr: str) -> str:
    """LaTeX rendered as plain text by pylatexenc; on any failure the input unchanged."""
    try:
        from pylatexenc.latex2text import LatexNodes2Text

        logging.getLogger("pylatexenc").setLevel(logging.ERROR)  # it warns on odd input
        expr = expr.replace("\\tfrac", "\\frac").replace("\\dfrac", "\\frac")
        expr = expr.replace("\\frac", " \\frac")  # keeps "3\frac12" apart as a mixed number
        text = LatexNodes2Text().latex_to_text(expr)
        for symbol, word in _UNICODE_WORDS:
            text = text.replace(symbol, word)
        return text.strip()
    except Exception:  # noqa: BLE001 - the reference keeps the input on any failure
        return expr


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _near_int(value: float) -> bool:
    try:
        return abs(value - int(round(value))) <= 1e-7
    except (OverflowError, ValueError):  # inf, nan
        return False


def strip_grouping_commas(expr: str) -> str:
    """Removes commas that group thousands (``1,000``), not those between items."""
    while True:
        out = _GROUPED_THOUSANDS_RE.sub(r"\1\3\4", expr)
        if out == expr:
            return out
        expr = out


def str_is_int(text: str) -> bool:
    """True when the text reads as a float within 1e-7 of an integer (after ``1,000`` commas)."""
    value = _float_or_none(strip_grouping_commas(text))
    return value is not None and _near_int(value)


def is_fraction(text: str) -> bool:
    """``a/b`` with integer parts (one stray character allowed after each)."""
    return _FRACTION_RE.search(text) is not None


def split_items(expr: str) -> list[str]:
    """The items of a bracketed tuple or interval without inner brackets, else ``[expr]``."""
    expr = strip_grouping_commas(expr)
    if not expr:
        return []
    inner = expr[1:-1]
    if len(expr) > 2 and expr[0] in _BRACKETS and expr[-1] in _BRACKETS \
            and not any(ch in inner for ch in _BRACKETS):
        return [item.strip() for item in inner.split(",")]
    return [expr]


def allows_symbolic(expr: str) -> bool:
    """The reference's filter before sympy: few letters, no braced or towering powers."""
    letters = {ch for ch in expr.replace("sqrt", "").replace("frac", "") if ch.isalpha()}
    if len(letters) > 2 or "^{" in expr or "^(" in expr:
        return False
    return not any(p.search(expr) for p in _POWER_RUNS)
