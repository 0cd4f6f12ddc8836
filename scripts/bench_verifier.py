#!/usr/bin/env python
"""Throughput of the verifier on DAPO-17k and MATH-500 ground truths.

Each ground truth is graded against the response ``"... \\boxed{<gt>}"``
(the headline figures) and, as a harder mixed case, against the boxed ground
truth of the next problem ("mismatched": mostly wrong answers, which cannot
be settled by string identity).
If the optional ``math-verify`` package is installed (``pip install
math-verify``, the ``bench`` extra), the same pairs are timed with its
``parse``/``verify`` side by side. The last line printed is one JSON object.

Usage:
    python scripts/bench_verifier.py [--data DIR] [--workers N] [--mv-sample N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sppo_runner.verifier import Verifier

DATASETS = {"dapo": "dapo-math-17k_dedup.parquet", "math500": "math__math_500.parquet"}


def load_golds(data_dir: Path, file_name: str) -> list[str]:
    """Reads ``reward_model.ground_truth`` from a verl-style parquet file."""
    import pyarrow.parquet as pq

    table = pq.read_table(data_dir / file_name, columns=["reward_model"])
    return [str(row["ground_truth"]) for row in table.column("reward_model").to_pylist()]


def as_response(gold: str) -> str:
    return "Let me work it out.\n\nThe answer is $\\boxed{" + gold + "}$."


def shifted(golds: list[str]) -> list[str]:
    """Each problem's response carries the next problem's ground truth."""
    return golds[1:] + golds[:1]


def bench_ours(golds: list[str], workers: int | None, answers: list[str]) -> dict:
    """Times one pass of ``grade_batch`` on a fresh verifier (pool pre-started)."""
    responses = [as_response(a) for a in answers]
    with Verifier(workers=workers) as verifier:
        verifier._pool.warm_up()  # process start-up is a one-off, not throughput
        start = time.perf_counter()
        verdicts = verifier.grade_batch(responses, golds)
        elapsed = time.perf_counter() - start
    correct = sum(v.status == "correct" for v in verdicts)
    return {"n": len(golds), "seconds": elapsed, "answers_per_s": len(golds) / elapsed,
            "correct_rate": correct / len(golds)}


def bench_math_verify(golds: list[str], answers: list[str], sample: int) -> dict | None:
    """Times math-verify's parse+verify on (a deterministic sample of) the pairs."""
    try:
        from math_verify import parse, verify
    except ImportError:
        return None
    pairs = list(zip(golds, answers))
    if 0 < sample < len(pairs):
        pairs = random.Random(0).sample(pairs, sample)
    golds = [g for g, _ in pairs]
    responses = [as_response(a) for _, a in pairs]
    parse("$1$"), verify(parse("$1$"), parse("$1$"))  # import-time warm-up
    correct = 0
    start = time.perf_counter()
    for response, gold in zip(responses, golds):
        try:
            correct += bool(verify(parse("$" + gold + "$"), parse(response)))
        except Exception:  # noqa: BLE001, S110 - counts as not correct; keep timing
            pass
    elapsed = time.perf_counter() - start
    return {"n": len(golds), "seconds": elapsed, "answers_per_s": len(golds) / elapsed,
            "correct_rate": correct / len(golds)}


def _bench_pair(result: dict, key: str, golds: list[str], answers: list[str],
                args: argparse.Namespace) -> None:
    ours = bench_ours(golds, args.workers, answers)
    print(f"ours        {key:20s} n={ours['n']:6d} {ours['answers_per_s']:10.0f} answers/s "
          f"(correct {ours['correct_rate']:.4f})")
    result[f"{key}_answers_per_s"] = round(ours["answers_per_s"], 1)
    result[f"{key}_correct_rate"] = round(ours["correct_rate"], 4)
    mv = bench_math_verify(golds, answers, args.mv_sample if key.startswith("dapo") else 0)
    if mv is None:
        return
    print(f"math-verify {key:20s} n={mv['n']:6d} {mv['answers_per_s']:10.0f} answers/s "
          f"(correct {mv['correct_rate']:.4f})")
    result[f"math_verify_{key}_answers_per_s"] = round(mv["answers_per_s"], 1)
    result[f"math_verify_{key}_n"] = mv["n"]
    result[f"math_verify_{key}_correct_rate"] = round(mv["correct_rate"], 4)
    result[f"{key}_speedup_vs_math_verify"] = round(
        ours["answers_per_s"] / mv["answers_per_s"], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = os.environ.get("SPPO_SHARED_DATA", str(REPO.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=Path(default_data))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--mv-sample", type=int, default=2000,
                        help="pairs timed for math-verify on DAPO (0 = all; it is slow)")
    args = parser.parse_args()

    result: dict = {}
    for key, file_name in DATASETS.items():
        golds = load_golds(args.data, file_name)
        for mode, answers in (("", golds), ("_mismatched", shifted(golds))):
            _bench_pair(result, key + mode, golds, answers, args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
