"""``verifier.rule=reference``: the reward rule of the paper's code, re-implemented.

sustech-nlp/SPPO @ 55e8a72 scores every ``math*`` data source with
``naive_dapo.compute_score`` (``verl/utils/reward_score/__init__.py:49-61``, through
the ``naive`` reward manager). Its decision, as read from that code:

1. Extraction (``match_answer``): the text after the last ``</think>``; the
   contents of its last ``\\boxed`` (else ``\\fbox``), braces matched; when there
   is none, or it is empty, the whole text is the answer.
2. ``grade_answer``: equal after the MATH-dataset normalisation, or after the
   PRM800K-style one (:mod:`reference_normalize`); else item by item (bracketed
   tuples with the same brackets): two plain fractions must match as strings, an
   integer on one side needs one on the other, and the rest must pass sympy
   (``simplify(truth - answer) == 0``, :mod:`reference_sympy`) behind a filter
   (at most two distinct letters, no ``^{``, ``^(`` or long exponents).
3. If that fails and neither text holds ``\\pi``, ``math_equal`` of ``prime_math``
   on the raw texts (:mod:`reference_fallback`). With ``\\pi`` the reference's call
   passes a misspelt keyword (``tiemout=``), raises, and scores 0.

The string stages run in the calling process; only the sympy step goes to the
sandboxed workers, with the verifier's timeout and memory cap. Since the
answer is correct when either test accepts, step 3 runs before any worker is
asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .core import Status, Verdict
from .reference_fallback import Raised, fallback_equal
from .reference_normalize import (
    allows_symbolic,
    is_fraction,
    mathd_normalize,
    prm_normalize,
    split_items,
    str_is_int,
)

KIND = "reference"  # the worker request kind of the symbolic step
_THINK_END = "</think>"


def extract(response: str) -> tuple[str, bool]:
    """The reference's answer text, and whether it came from a box."""
    text = response.split(_THINK_END)[-1]
    boxed = _last_box(text)
    return (boxed, True) if boxed else (text, False)


def _last_box(text: str) -> str | None:
    start = text.rfind("\\boxed")
    if start < 0:
        start = text.rfind("\\fbox")
        if start < 0:
            return None
    depth, opened = 0, None
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
            opened = i if opened is None else opened
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[opened + 1:i].strip()
    return None


def first_test(answer: str, truth: str) -> bool | list[tuple[str, str]]:
    """``grade_answer`` up to its sympy step.

    Returns:
        The verdict, or the ``(answer item, truth item)`` pairs that all need
        the symbolic step (any of them failing fails the answer).
    """
    if mathd_normalize(answer) == mathd_normalize(truth):
        return True
    t_norm, a_norm = prm_normalize(truth), prm_normalize(answer)
    if t_norm == a_norm:
        return True
    if not a_norm:
        return False
    t_items, a_items = split_items(t_norm), split_items(a_norm)
    if len(t_items) > 1 and (t_norm[0] != a_norm[0] or t_norm[-1] != a_norm[-1]):
        return False
    if len(t_items) != len(a_items):
        return False
    symbolic = []
    for t, a in zip(t_items, a_items):
        if is_fraction(t) and is_fraction(a):
            if t != a:  # unreduced fractions must not pass
                return False
        elif str_is_int(t) != str_is_int(a) or not allows_symbolic(f"({t})-({a})"):
            return False
        else:
            symbolic.append((a, t))
    return symbolic or True


def second_test(answer: str, truth: str) -> bool:
    """The reference's ``math_equal`` call, with its ``\\pi`` and exception cases."""
    if "\\pi" in answer or "\\pi" in truth:
        return False
    try:
        return fallback_equal(answer, truth)
    except Raised:
        return False
    except RecursionError:
        return False


@dataclass
class _Plan:
    verdict: Verdict | None
    pairs: list[tuple[str, str]]
    extracted: str | None
    boxed: bool


def _plan(response: object, truth: object, max_response_chars: int, max_answer_chars: int) -> _Plan:
    if not isinstance(response, str) or not isinstance(truth, str):
        return _Plan(Verdict(0.0, Status.ERROR, None), [], None, False)
    response = response[-max_response_chars:].replace("\x00", "")
    answer, boxed = extract(response)
    if len(answer) > max_answer_chars:  # see docs/reproducing.md: never a match in practice
        status = Status.UNPARSABLE if boxed else Status.NO_ANSWER
        return _Plan(Verdict(0.0, status, answer[:200] if boxed else None), [], None, boxed)
    if len(truth) > max_response_chars:
        return _Plan(Verdict(0.0, Status.ERROR, answer), [], None, boxed)
    first = first_test(answer, truth)
    if first is True or second_test(answer, truth):
        return _Plan(Verdict(1.0, Status.CORRECT, answer), [], answer, boxed)
    if first is False:
        return _Plan(_wrong(answer, boxed, Status.WRONG), [], answer, boxed)
    return _Plan(None, first, answer, boxed)


def _wrong(answer: str, boxed: bool, status: str) -> Verdict:
    return Verdict(0.0, status if boxed else Status.NO_ANSWER, answer if boxed else None)


def _combine(statuses: list[str]) -> str:
    if all(s == Status.CORRECT for s in statuses):
        return Status.CORRECT
    if Status.WRONG in statuses:
        return Status.WRONG  # decided whatever the others would give
    return next(s for s in statuses if s != Status.CORRECT)


def grade_batch(responses: Sequence[str], truths: Sequence[str], pool, *,
                max_response_chars: int, max_answer_chars: int) -> list[Verdict]:
    """Grades pairwise with the reference's rule; never raises.

    Args:
        responses: model responses.
        truths: ground truths, same length.
        pool: the :class:`pool.WorkerPool` that runs the symbolic step.
        max_response_chars: longer responses keep their last this many characters.
        max_answer_chars: a longer answer text scores 0 without being compared.

    Returns:
        One :class:`Verdict` per response.
    """
    plans = []
    for r, t in zip(responses, truths):
        try:
            plans.append(_plan(r, t, max_response_chars, max_answer_chars))
        except Exception:  # noqa: BLE001 - a verifier bug must never reach the training loop
            plans.append(_Plan(Verdict(0.0, Status.ERROR, None), [], None, False))
    jobs = [(k, a, t) for k, p in enumerate(plans) if p.verdict is None for a, t in p.pairs]
    if jobs:
        try:
            statuses = pool.compare([(a, t, KIND) for _, a, t in jobs])
        except Exception:  # noqa: BLE001 - e.g. no process could be started
            statuses = [Status.ERROR] * len(jobs)
        by_plan: dict[int, list[str]] = {}
        for (k, _, _), status in zip(jobs, statuses):
            by_plan.setdefault(k, []).append(status)
        for k, found in by_plan.items():
            p = plans[k]
            status = _combine(found)
            p.verdict = Verdict(1.0, status, p.extracted) if status == Status.CORRECT \
                else _wrong(p.extracted, p.boxed, status)
    return [p.verdict if p.verdict is not None else Verdict(0.0, Status.ERROR, None) for p in plans]
