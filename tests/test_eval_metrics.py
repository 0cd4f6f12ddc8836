"""pass@k against brute-force enumeration, maj@k, and the benchmark table."""

from __future__ import annotations

import json
from itertools import combinations
from math import comb

import pytest

from sppo_runner.benchmarks import markdown_table, table_rows, write_report
from sppo_runner.evaluation import maj_at_k, pass_at_k


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of n samples (c of them correct) that hold a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_closed_form_and_edges():
    assert pass_at_k(16, 4, 1) == pytest.approx(4 / 16)  # pass@1 is mean accuracy
    assert pass_at_k(16, 4, 4) == pytest.approx(1 - comb(12, 4) / comb(16, 4))
    assert pass_at_k(16, 0, 16) == 0.0 and pass_at_k(16, 1, 16) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_maj_at_k():
    assert maj_at_k(["3", "3", "5"], [True, True, False]) == 1.0
    assert maj_at_k(["3", "5", "5"], [True, False, False]) == 0.0
    assert maj_at_k([None, None, "5"], [False, False, True]) == 1.0  # no-answers do not vote
    assert maj_at_k([None, None], [False, False]) == 0.0
    assert maj_at_k(["5", "3", "3", "5"], [True, False, False, True]) == 1.0  # tie: first seen wins
    assert maj_at_k(["3", "5", "5", "3"], [False, True, True, False]) == 0.0


def test_table_rows_markdown_and_json(tmp_path):
    m = {"eval/a/n_problems": 2.0, "eval/a/mean@k": 0.5, "eval/a/pass@k": 1.0, "eval/a/maj@k": 0.5,
         "eval/a/response_len": 10.0, "eval/a/status/correct": 2.0, "eval/a/status/wrong": 2.0,
         "eval/b/n_problems": 3.0, "eval/b/mean@k": 0.25, "eval/b/pass@k": 0.5, "eval/b/maj@k": 0.0,
         "eval/b/response_len": 20.0, "eval/b/status/no_answer": 6.0}
    rows = table_rows(m, {"a": "eval/a", "b": "eval/b"})
    assert [r["benchmark"] for r in rows] == ["a", "b", "mean"]
    assert rows[2]["mean@k"] == pytest.approx(0.375) and rows[2]["n"] == 5  # unweighted over benchmarks
    assert rows[0]["greedy_acc"] is None and rows[0]["status"] == {"correct": 2, "wrong": 2}
    text = markdown_table(rows, 2)
    assert "| a | 2 | 50.00 | 100.00 | 50.00 | - | 10.0 | correct=2 wrong=2 |" in text
    text2, _ = write_report(tmp_path, "r", m, {"a": "eval/a", "b": "eval/b"}, 2, {"model": "m"})
    assert text2 == text and (tmp_path / "r.md").read_text() == text
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["k"] == 2 and payload["model"] == "m" and payload["rows"][1]["benchmark"] == "b"
