"""Verifier breadth (issue 16): equivalent forms accepted, near misses rejected.

The pair tables are in tests/verifier_breadth_cases.py (shared with
scripts/bench_verifier_breadth.py, which also runs math-verify on them).
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from verifier_breadth_cases import CASES

from sppo_runner.verifier import Status, Verifier
from sppo_runner.verifier.approx import MIN_SIG_DIGITS, decimal_spec, rounded_gold, rounds_to
from sppo_runner.verifier.normalize import normalize

PAIRS = [
    pytest.param(a, g, want, id=f"{cat}-{i}-{'eq' if want else 'ne'}")
    for cat, rows in CASES.items() for i, (a, g, want) in enumerate(rows)
]


@pytest.fixture(scope="module")
def verifier():
    with Verifier(workers=2, timeout_s=5.0) as v:
        yield v


def boxed(answer: str) -> str:
    return f"So the final answer is $\\boxed{{{answer}}}$."


@pytest.mark.parametrize("answer,gold,want", PAIRS)
def test_breadth_pairs(verifier, answer, gold, want):
    verdict = verifier.grade(boxed(answer), gold)
    assert (verdict.status == Status.CORRECT) is want, verdict


@pytest.mark.parametrize("category", sorted(CASES))
def test_each_category_has_both_directions(category):
    rows = CASES[category]
    assert sum(w for *_, w in rows) >= 10
    assert sum(not w for *_, w in rows) >= 10
    assert len({(a, g) for a, g, _ in rows}) == len(rows), "duplicate pair"


@pytest.mark.parametrize("category", sorted(CASES))
def test_batch_grading_matches_single_grading(verifier, category):
    rows = CASES[category]
    out = verifier.grade_batch([boxed(a) for a, _, _ in rows], [g for _, g, _ in rows])
    assert [v.status == Status.CORRECT for v in out] == [w for *_, w in rows]


# -- the rounding rule, hand-computed -------------------------------------------
@pytest.mark.parametrize("text,value,half_ulp,sig,rounded", [
    ("30.52", Fraction(3052, 100), Fraction(1, 200), 4, True),
    ("1.36", Fraction(136, 100), Fraction(1, 200), 3, True),
    ("0.022", Fraction(22, 1000), Fraction(1, 2000), 2, False),   # too few digits
    ("0.5", Fraction(1, 2), Fraction(1, 20), 1, False),
    ("27.0", Fraction(27), Fraction(1, 20), 3, False),            # an integer
    ("1.50", Fraction(3, 2), Fraction(1, 200), 3, True),          # shown zeros count
    (".0000672", Fraction(672, 10**7), Fraction(1, 2 * 10**7), 3, True),
    ("3.83e35", Fraction(383 * 10**33), Fraction(5 * 10**32), 3, True),
    ("2.7778e-6", Fraction(27778, 10**10), Fraction(1, 2 * 10**10), 5, True),
    ("-1.414", Fraction(-1414, 1000), Fraction(1, 2000), 4, True),
    ("4.5\\times10^{33}", Fraction(45 * 10**32), Fraction(5 * 10**31), 2, False),
])
def test_decimal_spec(text, value, half_ulp, sig, rounded):
    spec = decimal_spec(text)
    assert (spec.value, spec.half_ulp, spec.sig_digits, spec.rounded) == (
        value, half_ulp, sig, rounded)


@pytest.mark.parametrize("text", ["30", "1/2", "\\frac{1}{2}", "1e5", "abc", ""])
def test_decimal_spec_needs_a_point(text):
    assert decimal_spec(text) is None


def test_rounds_to_bounds():
    value, half = rounded_gold("30.52")
    assert rounds_to(Fraction(1587, 52), value, half)        # 30.5192...
    assert rounds_to(Fraction(30524, 1000) + Fraction(1, 3000), value, half)  # 30.52433..
    assert not rounds_to(Fraction(30525, 1000) + Fraction(1, 3000), value, half)  # 30.52533..
    assert not rounds_to(Fraction(30515, 1000) - Fraction(1, 3000), value, half)  # 30.51466..
    assert not rounds_to(Fraction(30519, 1000), value, half)  # a finite decimal must equal
    assert not rounds_to(Fraction(30515, 1000), value, half)
    assert not rounds_to(Fraction(31), value, half)
    third = rounded_gold("0.333")
    assert rounds_to(Fraction(1, 3), *third)
    assert rounds_to(Fraction(3335, 10**4) - Fraction(1, 3 * 10**4), *third)  # 0.33346..
    assert not rounds_to(Fraction(3335, 10**4) + Fraction(1, 3 * 10**4), *third)
    assert not rounds_to(Fraction(2, 3), *third)
    # an integer never matches a non-integer, whatever the width
    assert not rounds_to(Fraction(383 * 10**33), Fraction(38312, 100), Fraction(10**40))
    assert MIN_SIG_DIGITS == 3
    assert rounded_gold("0.49") is None and rounded_gold("36.0") is None


# -- normalization pieces ------------------------------------------------------------
@pytest.mark.parametrize("raw,want", [
    ("12^{\\mathrm{th}}", "12"), ("21^{\\text{st}}", "21"), ("2nd", "2"), ("3rd", "3"),
    ("11th", "11"), ("112th", "112"), ("15th Day", "15"),
    ("2th", "2th"), ("12nd", "12nd"), ("4thx", "4thx"),  # suffix must fit the number
    ("\\text{only } x=0", "x=0"), ("x=0 \\text{ only}", "x=0"),
    ("\\text{The answer is } 5", "5"), ("\\text{x is not } 5", "{x is not } 5"),
    ("\\approx 30.52", "30.52"), ("\\text{all real numbers}", "\\mathbb{R}"),
    ("x = k\\pi \\text{ where } k \\text{ is an integer}", "x = k\\pi, k \\in \\mathbb{Z}"),
    ("x = k\\pi \\text{ for any integer } k", "x = k\\pi, k \\in \\mathbb{Z}"),
    ("x=k\\pi\\;(k\\in\\mathbb{Z})", "x=k\\pi, k \\in \\mathbb{Z}"),
    ("n \\in \\mathbb{N}", "n \\in \\mathbb{N}"),
    ("\\text{Total} = 32,348", "{Total} = 32348"),
    ("x = 1 \\text{ or } x = 2", "x = 1 or x = 2"),
])
def test_normalize_prose(raw, want):
    assert normalize(raw) == want


@pytest.mark.parametrize("raw,plain,kept", [
    ("30^\\circ", "30", "30°"), ("90^{\\circ}", "90", "90°"),
    ("\\frac{270}7\\text{ degrees}", "\\frac{270}7", "\\frac{270}7°"),
    ("45 degrees", "45", "45°"), ("\\frac{\\pi}{6}", "\\frac{\\pi}{6}", "\\frac{\\pi}{6}"),
])
def test_degree_signs_kept_only_on_request(raw, plain, kept):
    assert normalize(raw) == plain
    assert normalize(raw, keep_degrees=True) == kept


def test_degree_gold_keeps_fast_path_for_plain_numbers(verifier):
    # "90" vs "90^\circ" is settled without a worker, as before
    assert verifier._prepare(boxed("90"), "90^\\circ").verdict.status == Status.CORRECT
    assert verifier._prepare(boxed("\\frac{1587}{52}"), "30.52").verdict.status == \
        Status.CORRECT
    assert verifier._prepare(boxed("30.5"), "30.52").verdict.status == Status.WRONG
