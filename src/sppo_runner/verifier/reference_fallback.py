"""The reference's second chance for an answer (``verifier.rule=reference``).

When its first test fails, ``naive_dapo.compute_score`` (sustech-nlp/SPPO @ 55e8a72,
lines 504-515) asks ``prime_math.grader.math_equal`` again, on the raw extracted
answer and ground truth. Re-implemented here from a reading of that code, it is
string and float work only:

- ``float()`` comparisons with relative tolerance 1e-4, the ground truth also
  read as a percentage (x/100 and x*100);
- bracket and brace stripping, then item-wise comparisons of tuples and lists.

Its symbolic step never accepts anything in the reference: each of its sympy
calls sits under ``with timeout_limit(...)``, and ``timeout_limit``
(``verl/utils/py_functional.py:52``) is a decorator factory, not a context
manager, so every ``with`` raises ``TypeError``, which the grader catches.
Its matrix branches test for ``"\\begin{pmatrix}"`` written with ``\\b``, a
backspace character that no ground truth of the paper's data holds. Where the
reference would raise inside this function (a ``_`` after a non-number, for
instance), ``compute_score`` catches it and scores 0: :class:`Raised` here.
"""

from __future__ import annotations

import math
import re

_DOLLAR_NUMBER_RE = re.compile(r"\$\d+(\.\d+)?")
_PERCENT_RES = (re.compile(r"^\d+(\.\d+)?%$"), re.compile(r"^\d+(\.\d+)?\\%$"))
_INTERVALS = (  # sympy's printed intervals, rewritten with brackets
    (re.compile(r"^Interval\((.*)\)$"), "[", "]"),
    (re.compile(r"^Interval\.Ropen\((.*)\)$"), "[", ")"),
    (re.compile(r"^Interval\.Lopen\((.*)\)$"), "(", "]"),
    (re.compile(r"^Interval\.open\((.*)\)$"), "(", ")"),
)
_BACKSPACE_PMATRIX = "\x08egin{pmatrix}"  # what "\begin{pmatrix}" is in a Python literal
_TOLERANCE = 1e-4
MAX_CHARS = 1000  # the reference cuts the prediction here


class Raised(Exception):
    """The reference raises at this point; ``compute_score`` scores the answer 0."""


def _prepare(x: str | int) -> str | int:
    """Currency and percent signs off plain numbers; ``digits_base`` becomes the digits."""
    if not isinstance(x, str):
        return x
    if _DOLLAR_NUMBER_RE.match(x):
        return x[1:]
    if any(p.match(x) for p in _PERCENT_RES):
        return x.replace("\\%", "").replace("%", "")
    if "_" in x:
        try:
            return int(float(x.split("_")[0]))
        except (ValueError, OverflowError) as exc:
            raise Raised("not a number before '_'") from exc
    if "\\pi" in x:  # the reference would eval() it; its caller never lets \pi get here
        raise Raised("\\pi")
    return x


def _as_float(x: str | int) -> float | None:
    text = str(x)
    text = text.replace("{,}", "") if "{,}" in text else text.replace(",", "")
    try:
        return float(text)
    except ValueError:
        return None


def _numbers_close(pred: float, ref: float) -> bool:
    for target in (ref / 100, ref, ref * 100):
        try:
            if math.isclose(target, pred, rel_tol=_TOLERANCE):
                return True
        except (OverflowError, ValueError, TypeError):
            continue
    return False


def _bracket_form(pred: str) -> str:
    for pattern, left, right in _INTERVALS:
        m = pattern.match(pred)
        if m:
            return left + m.group(1) + right
    return pred


def _same_without_brackets(pred: str, ref: str) -> bool:
    a, b = pred, ref
    if (pred.startswith("[") and pred.endswith("]") and not ref.startswith("(")) or \
            (pred.startswith("(") and pred.endswith(")") and not ref.startswith("[")):
        a, b = a.strip("[]()"), b.strip("[]()")
    for ch in "{}()":
        a, b = a.replace(ch, ""), b.replace(ch, "")
    return a == b


def _all_equal(preds: list[str], refs: list[str]) -> bool:
    # Every pair is compared before the verdict, as the reference builds a list for all():
    # a pair that raises decides the answer even after a pair that differs.
    return all([fallback_equal(p, r) for p, r in zip(preds, refs)])  # noqa: C419


def fallback_equal(prediction: str | int, reference: str | int) -> bool:
    """``math_equal(prediction, reference)`` of the reference, minus its dead branches.

    Args:
        prediction: the extracted answer (or one item of it).
        reference: the ground truth (or one item of it).

    Returns:
        Whether the reference's grader accepts the pair.

    Raises:
        Raised: where the reference raises (its caller scores 0).
    """
    pred, ref = _prepare(prediction), _prepare(reference)
    if isinstance(pred, str) and len(pred) > MAX_CHARS:
        pred = pred[:MAX_CHARS]
    if isinstance(pred, str) and isinstance(ref, str):
        if pred.strip().lower() == ref.strip().lower() or pred.replace(" ", "") == ref.replace(" ", ""):
            return True
    p_num, r_num = _as_float(pred), _as_float(ref)
    if p_num is not None and r_num is not None:
        return _numbers_close(p_num, r_num)
    if not pred and pred != 0:
        return False
    ref, pred = str(ref).strip(), _bracket_form(str(pred).strip())
    if _same_without_brackets(pred, ref):
        return True
    if pred and ref and pred[0] in "([" and pred[-1] in ")]" and pred[0] == ref[0] \
            and pred[-1] == ref[-1]:
        p_items, r_items = pred[1:-1].split(","), ref[1:-1].split(",")
        if len(p_items) == len(r_items) and _all_equal(p_items, r_items):
            return True
    if "," in pred and "," in ref:
        p_items = [x.strip() for x in pred.split(",")]
        r_items = [x.strip() for x in ref.split(",")]
        if len(p_items) == len(r_items):
            return _all_equal(p_items, r_items)
    if pred.startswith("Point"):
        if not ref:
            raise Raised("empty ground truth")
        if ref[0] == "(" and ref[-1] == ")":
            p_items = pred[pred.find("(") + 1:-1].split(",")
            r_items = ref[1:-1].split(",")
            if len(p_items) == len(r_items) and _all_equal(p_items, r_items):
                return True
    if _BACKSPACE_PMATRIX in ref and pred.startswith("[") and pred.endswith("]"):
        raise Raised("the reference would eval() the answer")  # see the module docstring
    return False
