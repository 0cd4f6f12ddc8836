"""The :class:`Verifier` object: extraction, fast path, cache and worker pool."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from .approx import rounded_gold, rounds_to
from .extract import DEFAULT_EXTRACTORS, extract, validate_extractors
from .normalize import (
    choice_letter,
    has_degree_mark,
    is_text_answer,
    normalize,
    number_candidates,
    split_percent,
    text_key,
)
from .pool import WorkerPool


RULES = ("equivalence", "reference")


class Status:
    """The possible :attr:`Verdict.status` values."""

    CORRECT = "correct"
    WRONG = "wrong"
    NO_ANSWER = "no_answer"
    UNPARSABLE = "unparsable"
    TIMEOUT = "timeout"
    ERROR = "error"
    ALL = (CORRECT, WRONG, NO_ANSWER, UNPARSABLE, TIMEOUT, ERROR)


@dataclass(frozen=True)
class Verdict:
    """The grade of one response.

    Attributes:
        reward: 1.0 when correct, else 0.0.
        status: one of :attr:`Status.ALL`.
        extracted: the extracted answer text, ``None`` when nothing was found.
    """

    reward: float
    status: str
    extracted: str | None


@dataclass(frozen=True)
class _Gold:
    """A gold answer prepared once and cached."""

    norm: str
    key: str
    numbers: tuple[Fraction, ...] | None
    letter: str | None
    is_text: bool  # a word answer such as \text{Evelyn}: compared as text only
    rounded: tuple[tuple[Fraction, Fraction], ...]  # (value, half ulp) if shown rounded
    with_degrees: str | None  # the form keeping degree signs, when it has any


@dataclass
class _Prepared:
    """One response/gold pair after the cheap in-process stage."""

    verdict: Verdict | None  # decided without symbolic work
    answer: str = ""
    gold: str = ""
    extracted: str | None = None


def _numbers_match(a: tuple[Fraction, ...], g: _Gold) -> bool:
    if any(x == y for x in a for y in g.numbers):
        return True
    return any(rounds_to(x, value, half) for x in a for value, half in g.rounded)


def _rounded(norm: str) -> tuple[tuple[Fraction, Fraction], ...]:
    """``(value, half_ulp)`` of a gold decimal read as rounded (and of x/100 for x%)."""
    body, is_percent = split_percent(norm)
    spec = rounded_gold(body)
    if spec is None:
        return ()
    return (spec, rounded_gold(body, Fraction(1, 100))) if is_percent else (spec,)


class Verifier:
    """Grades responses against gold answers; owns its worker processes.

    Plain numeric answers are decided in the calling process with exact
    rational arithmetic. Everything else goes to a pool of worker processes
    (started lazily) with a hard per-item timeout and a memory cap.

    Args:
        extractors: extractor names tried in order (see ``EXTRACTORS``).
        timeout_s: hard wall-clock limit per symbolic comparison.
        workers: worker processes for symbolic comparisons; ``None`` picks
            ``min(4, cpu_count)``, ``0`` compares in-process without a timeout
            (debugging only).
        max_response_chars: longer responses are cut to their last this many
            characters (the final answer sits at the end).
        max_answer_chars: longer extracted answers are ``unparsable`` (their
            ``extracted`` text is cut to 200 characters).
        memory_mb: address-space cap of each worker process.
        gold_cache_size: how many prepared gold answers to keep.
        rule: ``"equivalence"`` (this project's rule) or ``"reference"`` (the
            paper code's rule, :mod:`reference_rule`; it extracts as the reference
            does, so ``extractors`` is not used).
    """

    def __init__(
        self,
        extractors: Sequence[str] = DEFAULT_EXTRACTORS,
        timeout_s: float = 2.0,
        workers: int | None = None,
        max_response_chars: int = 200_000,
        max_answer_chars: int = 1_000,
        memory_mb: int = 1024,
        gold_cache_size: int = 65_536,
        rule: str = "equivalence",
    ) -> None:
        self.extractors = validate_extractors(extractors)
        self.rule = str(getattr(rule, "value", rule))
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self.timeout_s = float(timeout_s)
        self.max_response_chars = int(max_response_chars)
        self.max_answer_chars = int(max_answer_chars)
        self._gold_cache: OrderedDict[str, _Gold] = OrderedDict()
        self._gold_cache_size = int(gold_cache_size)
        self._cache_lock = threading.Lock()
        self._pool = WorkerPool(workers, timeout_s=self.timeout_s, memory_mb=memory_mb)

    # -- public API ---------------------------------------------------------
    def grade(self, response: str, gold: str) -> Verdict:
        """Grades one response; never raises."""
        return self.grade_batch([response], [gold])[0]

    def grade_batch(self, responses: Sequence[str], golds: Sequence[str]) -> list[Verdict]:
        """Grades responses pairwise against golds; never raises.

        Raises:
            ValueError: the two sequences differ in length (a caller bug, not
                a verification failure).
        """
        if len(responses) != len(golds):
            raise ValueError(f"{len(responses)} responses but {len(golds)} golds")
        if self.rule == "reference":
            from .reference_rule import grade_batch

            return grade_batch(responses, golds, self._pool, max_response_chars=self.max_response_chars,
                               max_answer_chars=self.max_answer_chars)
        prepared = [self._prepare_safe(r, g) for r, g in zip(responses, golds)]
        todo = [i for i, p in enumerate(prepared) if p.verdict is None]
        results: list[Verdict | None] = [p.verdict for p in prepared]
        if todo:
            pairs = [(prepared[i].answer, prepared[i].gold) for i in todo]
            try:
                statuses = self._pool.compare(pairs)
            except Exception:  # noqa: BLE001 - e.g. no process could be started
                statuses = [Status.ERROR] * len(pairs)
            for i, status in zip(todo, statuses):
                reward = 1.0 if status == Status.CORRECT else 0.0
                results[i] = Verdict(reward, status, prepared[i].extracted)
        return [v if v is not None else Verdict(0.0, Status.ERROR, None) for v in results]

    def close(self) -> None:
        """Stops the worker processes. The verifier restarts them if used again."""
        self._pool.close()

    def __enter__(self) -> Verifier:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- cheap in-process stage ----------------------------------------------
    def _gold(self, gold: str) -> _Gold:
        with self._cache_lock:
            hit = self._gold_cache.get(gold)
            if hit is not None:
                self._gold_cache.move_to_end(gold)
                return hit
        norm = normalize(gold)
        letter = choice_letter(norm, gold=True)
        numbers = number_candidates(norm)
        prepared = _Gold(norm, text_key(norm), numbers, letter,
                         letter is None and is_text_answer(norm),
                         _rounded(norm) if numbers is not None else (),
                         normalize(gold, keep_degrees=True) if has_degree_mark(gold) else None)
        with self._cache_lock:
            self._gold_cache[gold] = prepared
            while len(self._gold_cache) > self._gold_cache_size:
                self._gold_cache.popitem(last=False)
        return prepared

    def _prepare_safe(self, response: object, gold: object) -> _Prepared:
        try:
            return self._prepare(response, gold)
        except Exception:  # noqa: BLE001 - a verifier bug must never reach the training loop
            return _Prepared(Verdict(0.0, Status.ERROR, None))

    def _prepare(self, response: object, gold: object) -> _Prepared:
        if not isinstance(response, str) or not isinstance(gold, str):
            return _Prepared(Verdict(0.0, Status.ERROR, None))
        if len(response) > self.max_response_chars:
            response = response[-self.max_response_chars:]
        extracted = extract(response.replace("\x00", ""), self.extractors)
        if extracted is None:
            return _Prepared(Verdict(0.0, Status.NO_ANSWER, None))
        if len(extracted) > self.max_answer_chars:
            return _Prepared(Verdict(0.0, Status.UNPARSABLE, extracted[:200]))
        if len(gold) > self.max_response_chars:
            return _Prepared(Verdict(0.0, Status.ERROR, extracted))  # a data bug
        g = self._gold(gold)
        answer = normalize(extracted)
        decided = _fast_decide(answer, g)
        if decided is not None:
            return _Prepared(Verdict(1.0 if decided else 0.0,
                                     Status.CORRECT if decided else Status.WRONG, extracted))
        if not answer:
            return _Prepared(Verdict(0.0, Status.NO_ANSWER, extracted))
        if g.with_degrees is not None or has_degree_mark(extracted):
            # 30° may meet pi/6: the worker needs the degree signs
            return _Prepared(None, normalize(extracted, keep_degrees=True),
                             g.with_degrees or g.norm, extracted)
        return _Prepared(None, answer, g.norm, extracted)


def _fast_decide(answer: str, gold: _Gold) -> bool | None:
    """Decides easy cases without sympy; ``None`` means "ask a worker"."""
    if answer == gold.norm or (answer and text_key(answer) == gold.key):
        return True
    if gold.letter is not None:
        return choice_letter(answer, gold=False) == gold.letter
    if gold.is_text:
        return False  # the keys differ; spelling "east" as e*a*s*t proves nothing
    if gold.numbers is not None:
        numbers = number_candidates(answer)
        if numbers is not None:
            return _numbers_match(numbers, gold)
    return None
