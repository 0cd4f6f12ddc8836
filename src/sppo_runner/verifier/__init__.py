"""Math answer verifier: extraction, normalization and equivalence checking.

Imports neither torch nor transformers. Symbolic comparisons run in worker
processes with a hard timeout; plain numbers are compared in-process exactly.

Example:
    >>> from sppo_runner.verifier import grade
    >>> grade("so the answer is \\\\boxed{\\\\frac{1}{2}}", "0.5").reward
    1.0
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from .core import RULES, Status, Verdict, Verifier
from .extract import DEFAULT_EXTRACTORS, EXTRACTORS, validate_extractors

__all__ = [
    "DEFAULT_EXTRACTORS", "EXTRACTORS", "RULES", "Status", "Verdict", "Verifier",
    "grade", "grade_batch", "validate_extractors",
]

_default_lock = threading.Lock()
_default_verifiers: dict[tuple, Verifier] = {}


def _default(extractors: Sequence[str], timeout_s: float, workers: int | None,
             rule: str = "equivalence") -> Verifier:
    """Returns a lazily created shared Verifier for these settings."""
    key = (tuple(validate_extractors(extractors)), float(timeout_s), workers, rule)
    with _default_lock:
        verifier = _default_verifiers.get(key)
        if verifier is None:
            verifier = Verifier(key[0], timeout_s=timeout_s, workers=workers, rule=rule)
            _default_verifiers[key] = verifier
        return verifier


def grade(
    response: str,
    gold: str,
    *,
    extractors: Sequence[str] = DEFAULT_EXTRACTORS,
    timeout_s: float = 2.0,
    rule: str = "equivalence",
) -> Verdict:
    """Grades one response against a gold answer; never raises.

    Args:
        response: the model's full response text.
        gold: the ground-truth answer (LaTeX or plain text).
        extractors: extractor names tried in order (see ``EXTRACTORS``).
        timeout_s: hard limit for a symbolic comparison.
        rule: ``"equivalence"`` or ``"reference"`` (see :class:`Verifier`).

    Returns:
        The :class:`Verdict`.
    """
    return _default(extractors, timeout_s, None, rule).grade(response, gold)


def grade_batch(
    responses: Sequence[str],
    golds: Sequence[str],
    *,
    extractors: Sequence[str] = DEFAULT_EXTRACTORS,
    timeout_s: float = 2.0,
    workers: int | None = None,
    rule: str = "equivalence",
) -> list[Verdict]:
    """Grades responses pairwise against golds, in parallel; never raises.

    Args:
        responses: model responses.
        golds: gold answers, same length as ``responses``.
        extractors: extractor names tried in order.
        timeout_s: hard limit per symbolic comparison.
        workers: worker processes (``None``: a default based on CPU count).
        rule: ``"equivalence"`` or ``"reference"`` (see :class:`Verifier`).

    Returns:
        One :class:`Verdict` per response.
    """
    return _default(extractors, timeout_s, workers, rule).grade_batch(responses, golds)
