"""The synthetic arithmetic task: determinism, disjoint splits, difficulty, grading, CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from sppo_runner.data.synthetic import SyntheticTask, canonical_form, is_heldout, main


def _rows(problems):
    return [p.to_row() for p in problems]


def test_deterministic_by_seed():
    a, b = SyntheticTask(seed=3, difficulty=2), SyntheticTask(seed=3, difficulty=2)
    assert _rows(a.train(200)) == _rows(b.train(200))
    assert _rows(a.heldout(50)) == _rows(b.heldout(50))
    # A longer request extends the same stream.
    assert _rows(a.train(300))[:200] == _rows(a.train(200))
    other = SyntheticTask(seed=4, difficulty=2)
    assert [p.prompt for p in other.train(200)] != [p.prompt for p in a.train(200)]


@pytest.mark.parametrize("difficulty", [1, 2, 3, 5])
def test_splits_disjoint_by_construction(difficulty):
    task = SyntheticTask(seed=0, difficulty=difficulty)
    train, held = task.train(3000), task.heldout(256)
    train_canon = {canonical_form(p.extra["solution"]) for p in train}
    held_canon = {canonical_form(p.extra["solution"]) for p in held}
    assert train_canon.isdisjoint(held_canon)
    assert not {p.prompt for p in train} & {p.prompt for p in held}
    assert all(is_heldout(c) for c in held_canon)
    assert not any(is_heldout(c) for c in train_canon)
    # Another seed draws different problems, but from the same two sides of the split.
    other = SyntheticTask(seed=9, difficulty=difficulty).train(1000)
    assert held_canon.isdisjoint({canonical_form(p.extra["solution"]) for p in other})


def test_heldout_prompts_unique_and_metadata():
    held = SyntheticTask(seed=0, difficulty=2).heldout(256)
    assert len({p.prompt for p in held}) == 256
    assert len({p.uid for p in held}) == 256
    assert {p.source for p in held} == {"synthetic/arith-d2"}
    assert {p.extra["kind"] for p in held} == {"expr", "story", "shop"}


def test_difficulty_changes_problems():
    prompts = {}
    for d in range(1, 6):
        probs = SyntheticTask(seed=0, difficulty=d).train(300)
        prompts[d] = {p.prompt for p in probs}
        # One "=" per step, and difficulty = number of operations.
        assert all(canonical_form(p.extra["solution"]).count("=") == d for p in probs)
        assert all(p.source == f"synthetic/arith-d{d}" for p in probs)
    for d in range(1, 5):
        assert len(prompts[d] & prompts[d + 1]) < 10
    with pytest.raises(ValueError):
        SyntheticTask(difficulty=0)
    with pytest.raises(ValueError):
        SyntheticTask(difficulty=6)


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_reference_solutions_graded_correct(difficulty):
    from sppo_runner.verifier import grade

    task = SyntheticTask(seed=1, difficulty=difficulty)
    for p in task.train(150) + task.heldout(50):
        sol = p.extra["solution"]
        assert sol.endswith(f"\\boxed{{{p.answer}}}")
        assert grade(sol, p.answer).reward == 1.0, (p.prompt, sol)
        # Every step is arithmetically right, so the chain is a faithful reference.
        for a, op, b, v in re.findall(r"(\d+)([-+*/])(\d+)=(\d+)\.", sol):
            a, b, v = int(a), int(b), int(v)
            expect = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
            assert v == expect and (op != "/" or a % b == 0), sol


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_answers_are_nonnegative_integers(difficulty):
    for p in SyntheticTask(seed=2, difficulty=difficulty).train(300):
        assert re.fullmatch(r"\d+", p.answer), p.answer
        assert str(int(p.answer)) == p.answer


def test_lengths_bounded():
    probs = SyntheticTask(seed=0, difficulty=2).train(3000)
    assert max(len(p.prompt) for p in probs) <= 80
    assert max(len(p.extra["solution"]) for p in probs) <= 60
    for p in probs:
        assert p.prompt.endswith("\n") and p.prompt.count("\n") == 1
        assert p.prompt.isascii() and p.extra["solution"].isascii()
    for d in range(1, 6):
        probs = SyntheticTask(seed=0, difficulty=d).train(500)
        assert max(len(p.prompt) for p in probs) <= 120
        assert max(len(p.extra["solution"]) for p in probs) <= 100


def test_cli_writes_jsonl_rows(tmp_path):
    out = tmp_path / "held.jsonl"
    assert main(["--out", str(out), "--split", "heldout", "--n", "20", "--seed", "5", "--difficulty", "3"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == _rows(SyntheticTask(seed=5, difficulty=3).heldout(20))
    row = rows[0]
    assert row["data_source"] == "synthetic/arith-d3"
    assert row["prompt"][0]["role"] == "user"
    assert row["reward_model"]["style"] == "rule"
    assert "solution" in row["extra_info"] and "uid" in row["extra_info"]


def test_cli_module_writes_parquet(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "train.parquet"
    subprocess.run(
        [sys.executable, "-m", "sppo_runner.data.synthetic", "--out", str(out), "--split", "train",
         "--n", "30", "--seed", "0", "--difficulty", "2"],
        check=True, capture_output=True,
    )
    rows = pq.read_table(out).to_pylist()
    expect = _rows(SyntheticTask(seed=0, difficulty=2).train(30))
    assert [r["prompt"] for r in rows] == [e["prompt"] for e in expect]
    assert [r["reward_model"] for r in rows] == [e["reward_model"] for e in expect]
