"""Self-consistency of the verifier on the real ground truths in ../shared/data.

Every ground truth must grade correct against itself in a box, and wrong
against the ground truth of another problem with a different answer and
against near misses of itself (a changed or dropped digit, a flipped interval
bracket, swapped pair entries).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from sppo_runner.verifier import Verifier

pq = pytest.importorskip("pyarrow.parquet")

pytestmark = pytest.mark.data

DATA_DIR = Path(os.environ.get(
    "SPPO_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
FILES = [
    "dapo-math-17k_dedup.parquet",
    "math__math_500.parquet",
    "math__aime2025_2025.parquet",
    "math__aime_repeated_8x_240.parquet",
    "math__amc23_2025.parquet",
    "math__minerva_math_2025_processed.parquet",
]
MIN_RATE = 0.99


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text.replace("\\{", "").replace("\\}", ""):
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return False
    return depth == 0


def load_ground_truths(name: str) -> tuple[list[str], int]:
    """Returns the usable ground truths of one file and how many were dropped.

    Minerva's processed file has ground truths cut off mid-LaTeX (unbalanced
    braces, e.g. ``\\frac{1``); no answer can match those, so they are dropped.
    """
    path = DATA_DIR / name
    if not path.exists():
        pytest.skip(f"{path} not found (set SPPO_SHARED_DATA to the shared data folder)")
    rows = pq.read_table(path, columns=["reward_model"]).column("reward_model").to_pylist()
    golds = [str(r["ground_truth"]) for r in rows]
    usable = [g for g in golds if _balanced(g)]
    return usable, len(golds) - len(usable)


def wrong_partners(golds: list[str]) -> list[int]:
    """For each row, the next row (cyclically) whose answer text differs."""
    n = len(golds)
    partners = []
    for i in range(n):
        j = (i + 1) % n
        while j != i and golds[j].strip() == golds[i].strip():
            j = (j + 1) % n
        partners.append(j)
    return partners


@pytest.fixture(scope="module")
def verifier():
    with Verifier(workers=2, timeout_s=5.0) as v:
        yield v


@pytest.mark.parametrize("name", FILES)
def test_ground_truths_self_consistent(verifier, name):
    golds, dropped = load_ground_truths(name)
    responses = ["Let me work it out.\n\nThe answer is $\\boxed{" + g + "}$." for g in golds]
    same = verifier.grade_batch(responses, golds)
    partners = wrong_partners(golds)
    other = verifier.grade_batch([responses[j] for j in partners], golds)

    n = len(golds)
    correct_rate = sum(v.status == "correct" for v in same) / n
    wrong_rate = sum(v.status == "wrong" for v in other) / n
    misses = [(g, v.status) for g, v in zip(golds, same) if v.status != "correct"][:10]
    false_pos = [(golds[j], g) for g, j, v in zip(golds, partners, other)
                 if v.status == "correct"][:10]
    print(f"\n{name}: rows={n} dropped_truncated={dropped} "
          f"self_correct={correct_rate:.4%} other_wrong={wrong_rate:.4%}")
    assert correct_rate >= MIN_RATE, misses
    assert wrong_rate >= MIN_RATE, false_pos


def near_misses(gold: str) -> list[str]:
    """Answers one small step away from a ground truth, all of them wrong.

    A number gets its last digit changed, a decimal also loses its last digit
    (unless that digit is a 0) or its fraction; an interval gets its left bracket
    flipped; a pair of different entries is swapped.
    """
    g = gold.strip()
    out = []
    if _NUMBER_RE.match(g):
        out.append(g[:-1] + str((int(g[-1]) + 1) % 10))
        if "." in g and g[-1] != "0" and not g.endswith(".0"):
            head, frac = g.split(".")
            out.append(head + "." + frac[:-1] if len(frac) > 1 else head)
    m = _PAIR_RE.match(g)
    if m and m.group(2).strip() != m.group(3).strip():
        left, a, b, right = m.groups()
        if left + right in ("()", "[]", "(]", "[)") and "infty" not in g:
            flipped = {"(": "[", "[": "("}[left]
            out.append(f"{flipped}{a},{b}{right}")
        if left + right == "()":
            out.append(f"({b},{a})")
    return out


_NUMBER_RE = re.compile(r"^-?\d+(?:\.\d+)?$")
_PAIR_RE = re.compile(r"^(\(|\[)([^,()\[\]]+),([^,()\[\]]+)(\)|\])$")


@pytest.mark.parametrize("name", FILES)
def test_near_misses_of_ground_truths_rejected(verifier, name):
    """The rounding rule and the new forms must not turn a near miss into a match."""
    golds, _ = load_ground_truths(name)
    pairs = [(miss, g) for g in golds for miss in near_misses(g)]
    if not pairs:
        pytest.skip(f"{name}: no ground truth with a near miss")
    out = verifier.grade_batch(
        ["The answer is $\\boxed{" + a + "}$." for a, _ in pairs], [g for _, g in pairs])
    accepted = [(a, g) for (a, g), v in zip(pairs, out) if v.status == "correct"]
    print(f"\n{name}: near misses={len(pairs)} accepted={len(accepted)}")
    assert not accepted, accepted[:10]
