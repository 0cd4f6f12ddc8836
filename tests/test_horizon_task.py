"""The horizon knob of the synthetic task (data.horizon): chains of H labelled steps."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from sppo_runner.data.chain import LABELS, MAX_HORIZON
from sppo_runner.data.synthetic import SyntheticTask, canonical_form, is_heldout, main

# sha256 of the default task's rows (horizon off) as they were before the knob existed:
# [prompt, answer, source, uid, solution, kind, split] of train(2000) + heldout(256).
DEFAULT_TASK_DIGESTS = {
    (1, 0): "119e8ff334cc8afa3f1609088386bbb04260649596d7f71bc8ecd9dc62be6eb3",
    (2, 0): "84f98f019603da8c425c16545760048648d473ae7b869fc58a52eadfcac1c1a6",
    (2, 7): "e3b3e448db0b3b9be494ec4abed295f48909c37239095ff58892eb7d4897719f",
    (3, 0): "ef16c49a927b9e2b2eaad32d824a7752a2a56a641bf92b8add0d5d3ad30b076b",
    (5, 7): "77ed93ea28617a967acb919964f15fb42def3df184fe6f334bc056191c34fc41",
}
_STEP = re.compile(r"([a-zA-Z]):(\d+)([-+*/])(\d+)=(\d+)\.")


def _fields(p):
    return [p.prompt, p.answer, p.source, p.uid, p.extra["solution"], p.extra["kind"], p.extra["split"]]


@pytest.mark.parametrize("difficulty,seed", sorted(DEFAULT_TASK_DIGESTS))
def test_default_task_rows_unchanged(difficulty, seed):
    for task in (SyntheticTask(seed, difficulty), SyntheticTask(seed, difficulty, horizon=0)):
        rows = [_fields(p) for p in task.train(2000) + task.heldout(256)]
        digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
        assert digest == DEFAULT_TASK_DIGESTS[(difficulty, seed)]


def test_deterministic_and_seeded():
    a, b = SyntheticTask(3, horizon=8), SyntheticTask(3, horizon=8)
    assert [_fields(p) for p in a.train(300)] == [_fields(p) for p in b.train(300)]
    assert [_fields(p) for p in a.heldout(40)] == [_fields(p) for p in b.heldout(40)]
    assert [_fields(p) for p in a.train(400)][:300] == [_fields(p) for p in a.train(300)]
    assert {p.prompt for p in SyntheticTask(4, horizon=8).train(300)}.isdisjoint({p.prompt for p in a.train(300)})


@pytest.mark.parametrize("horizon", [2, 4, 32])
def test_splits_disjoint(horizon):
    task = SyntheticTask(0, horizon=horizon)
    train, held = task.train(3000), task.heldout(256)
    train_canon = {canonical_form(p.extra["solution"]) for p in train}
    held_canon = {canonical_form(p.extra["solution"]) for p in held}
    assert train_canon.isdisjoint(held_canon)
    assert not {p.prompt for p in train} & {p.prompt for p in held}
    assert all(is_heldout(c) for c in held_canon) and not any(is_heldout(c) for c in train_canon)
    assert len({p.prompt for p in held}) == 256
    other = SyntheticTask(9, horizon=horizon).train(1000)
    assert held_canon.isdisjoint({canonical_form(p.extra["solution"]) for p in other})


def test_lengths_grow_linearly_with_the_horizon():
    means = {}
    for h in (2, 4, 8, 16, 32):
        probs = SyntheticTask(0, horizon=h).train(400)
        sol = [len(p.extra["solution"]) for p in probs]
        means[h] = sum(sol) / len(sol)
        assert all(p.extra["solution"].count("=") == h for p in probs)
        assert {p.source for p in probs} == {f"synthetic/chain-h{h}-d2"}
        assert all(p.uid.startswith(f"chain-h{h}-d2-s0-train-") for p in probs)
    assert 20 <= means[2] <= 50 and 250 <= means[32] <= 450  # tens .. several hundred tokens (char-level)
    per_step = [(means[b] - means[a]) / (b - a) for a, b in ((2, 4), (4, 8), (8, 16), (16, 32))]
    assert max(per_step) / min(per_step) < 1.2, per_step  # about linear: the same cost per step
    assert all(8 <= s <= 14 for s in per_step)


@pytest.mark.parametrize("horizon", [2, 5, 32])
def test_every_step_easy_right_and_needed(horizon):
    from sppo_runner.verifier import grade

    for p in SyntheticTask(1, horizon=horizon).train(200) + SyntheticTask(1, horizon=horizon).heldout(30):
        sol = p.extra["solution"]
        steps = _STEP.findall(sol)
        assert [s[0] for s in steps] == list(LABELS[:horizon])
        assert grade(sol, p.answer).reward == 1.0
        # The prompt lists the start value and each labelled operation in order.
        ops = p.prompt.removesuffix(" =?\n").split(" ")
        assert ops[0] == steps[0][1] and ops[1:] == [f"{lab}{op}{b}" for lab, _, op, b, _ in steps]
        x = int(steps[0][1])
        for lab, a, op, b, v in steps:
            a, b, v = int(a), int(b), int(v)
            assert a == x, "each step starts from the previous result"
            # Today's steps at difficulty 2: addends <= 20, times-table products and quotients or
            # doubling and halving, values < 100.
            table = 2 <= b <= 9 and (2 <= a <= 9 if op == "*" else a % b == 0 and 2 <= a // b <= 9)
            assert {"+": b <= 20, "-": b <= 20, "*": table or b == 2, "/": table or (b == 2 and a % 2 == 0)}[op]
            assert v == {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op] and 0 <= v <= 99
            x = v
        assert str(x) == p.answer
        # Every operation is injective, so changing any intermediate result changes the answer.
        assert all(int(b) > 0 and (op in "+-" or int(b) > 1) for _, _, op, b, _ in steps)


def test_difficulty_sets_step_size_not_length():
    d1 = SyntheticTask(0, difficulty=1, horizon=6).train(300)
    d4 = SyntheticTask(0, difficulty=4, horizon=6).train(300)
    assert all(p.extra["solution"].count("=") == 6 for p in d1 + d4)
    assert max(int(v) for p in d1 for v in re.findall(r"=(\d+)", p.extra["solution"])) <= 50
    assert max(int(v) for p in d4 for v in re.findall(r"=(\d+)", p.extra["solution"])) > 99


def test_bad_horizon_rejected():
    for bad in (1, MAX_HORIZON + 1, -2):
        with pytest.raises(ValueError, match="horizon"):
            SyntheticTask(0, horizon=bad)


def test_config_key_validated_and_used():
    from conftest import make_config
    from sppo_runner.config import ConfigError
    from sppo_runner.data import load_datasets

    cfg = make_config("sppo", ["data.horizon=4", "data.train_size=5"])
    train, held = load_datasets(cfg.data, 3)
    assert [p.prompt for p in train] == [p.prompt for p in SyntheticTask(0, horizon=4).train(5)]
    assert held[0].source == "synthetic/chain-h4-d2"
    assert make_config("sppo").data.horizon == 0
    with pytest.raises(ConfigError, match="data.horizon"):
        make_config("sppo", ["data.horizon=33"])


def test_cli_writes_chain_rows(tmp_path):
    out = tmp_path / "h.jsonl"
    assert main(["--out", str(out), "--split", "heldout", "--n", "5", "--horizon", "16"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [p.to_row() for p in SyntheticTask(0, horizon=16).heldout(5)]
