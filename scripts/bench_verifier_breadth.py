#!/usr/bin/env python
"""Breadth of the verifier vs math-verify, per answer category, on labelled pairs.

The pairs are tests/verifier_breadth_cases.py (equivalent answers and near
misses for labels, labelled tuples, ratios, roundings, sets, angles, units and
dummy variables). Each answer is boxed in a short response and graded against
its ground truth by this verifier and, if the optional ``math-verify`` package
is installed (the ``bench`` extra), by its ``parse``/``verify``. Printed: a
Markdown table of accepted-equivalent and rejected-wrong counts per category;
the last line is one JSON object.

Usage:
    python scripts/bench_verifier_breadth.py [--workers N] [--show-misses]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sppo_runner.verifier import Verifier

CASES_FILE = REPO / "tests" / "verifier_breadth_cases.py"


def load_cases() -> dict[str, list[tuple[str, str, bool]]]:
    """Imports the case table by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("verifier_breadth_cases", CASES_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


def as_response(answer: str) -> str:
    return "Let me work it out.\n\nThe answer is $\\boxed{" + answer + "}$."


def ours(rows: list[tuple[str, str, bool]], verifier: Verifier) -> list[bool]:
    """This verifier's accept/reject per pair."""
    verdicts = verifier.grade_batch([as_response(a) for a, _, _ in rows],
                                    [g for _, g, _ in rows])
    return [v.status == "correct" for v in verdicts]


def math_verify(rows: list[tuple[str, str, bool]]) -> list[bool] | None:
    """math-verify's accept/reject per pair; ``None`` when it is not installed."""
    try:
        from math_verify import parse, verify
    except ImportError:
        return None
    out = []
    for answer, gold, _ in rows:
        try:
            out.append(bool(verify(parse("$" + gold + "$"), parse(as_response(answer)))))
        except Exception:  # noqa: BLE001 - a crash is a rejection, as in training
            out.append(False)
    return out


def score(rows: list[tuple[str, str, bool]], accepted: list[bool]) -> dict:
    """Accepted equivalent and rejected wrong pairs."""
    eq = sum(want for *_, want in rows)
    return {
        "equivalent": eq,
        "wrong": len(rows) - eq,
        "accepted_equivalent": sum(a and want for (*_, want), a in zip(rows, accepted)),
        "rejected_wrong": sum(not a and not want for (*_, want), a in zip(rows, accepted)),
    }


def _misses(name: str, rows: list, accepted: list[bool]) -> None:
    for (answer, gold, want), got in zip(rows, accepted):
        if got != want:
            kind = "rejects equivalent" if want else "accepts wrong"
            print(f"    {name} {kind}: {answer!r} vs {gold!r}")


def _cell(s: dict | None, key: str, total: str) -> str:
    return "n/a" if s is None else f"{s[key]}/{s[total]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args()

    cases = load_cases()
    result: dict = {"categories": {}}
    print("| category | pairs (equivalent / wrong) | accepted equivalent: ours | math-verify "
          "| rejected wrong: ours | math-verify |")
    print("|---|---|---|---|---|---|")
    totals = {"ours": [], "math_verify": []}
    with Verifier(workers=args.workers, timeout_s=5.0) as verifier:
        for name, rows in cases.items():
            mine, theirs = ours(rows, verifier), math_verify(rows)
            s_mine = score(rows, mine)
            s_theirs = None if theirs is None else score(rows, theirs)
            totals["ours"].append(s_mine)
            totals["math_verify"].append(s_theirs)
            print(f"| {name} | {s_mine['equivalent']} / {s_mine['wrong']} "
                  f"| {_cell(s_mine, 'accepted_equivalent', 'equivalent')} "
                  f"| {_cell(s_theirs, 'accepted_equivalent', 'equivalent')} "
                  f"| {_cell(s_mine, 'rejected_wrong', 'wrong')} "
                  f"| {_cell(s_theirs, 'rejected_wrong', 'wrong')} |")
            if args.show_misses:
                _misses("ours", rows, mine)
                if theirs is not None:
                    _misses("math-verify", rows, theirs)
            result["categories"][name] = {"ours": s_mine, "math_verify": s_theirs}
    for who, scores in totals.items():
        if any(s is None for s in scores):
            result[who] = None
            continue
        result[who] = {k: sum(s[k] for s in scores) for k in scores[0]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
