"""All algorithms on the embedded task at an equal wall-clock budget, over several seeds.

Runs one Hydra multirun sweep (``sppo-run -m algorithm=... seed=...``) with the same
training-time budget (``trainer.max_seconds``) for every run, evaluation every
``--eval-seconds`` of training, then writes the comparison report with
``sppo-compare`` (Markdown table + plots) into the sweep folder.

Usage::

    python scripts/bench_algorithms.py                      # 5 algorithms x 3 seeds, 60 s each
    python scripts/bench_algorithms.py --seconds 30 --seeds 0,1

The last line printed is one JSON object mapping each algorithm to its mean final
held-out accuracy and mean wall seconds (plus the time to reach GRPO's final accuracy).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algorithms", default="sppo,ppo,grpo,rloo,remax")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--seconds", type=float, default=60.0, help="training seconds per run (equal budget)")
    p.add_argument("--eval-seconds", type=float, default=15.0, help="evaluate every this many training seconds")
    p.add_argument("--problems", type=int, default=256, help="held-out problems per evaluation")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--out", default=None, help="sweep folder (default outputs/bench_algorithms/<time>)")
    p.add_argument("extra", nargs="*", help="more Hydra overrides for every run")
    return p.parse_args(argv)


def sweep(args: argparse.Namespace, out: Path) -> None:
    """One multirun; every run gets the same budget and evaluation cadence."""
    cmd = [
        str(BIN / "sppo-run"), "-m", f"algorithm={args.algorithms}", f"seed={args.seeds}",
        "trainer.steps=100000", f"trainer.max_seconds={args.seconds}", "trainer.eval_every=0",
        f"trainer.eval_every_seconds={args.eval_seconds}", "trainer.checkpoint_every=0",
        f"eval.n_problems={args.problems}", f"eval.k={args.k}", "logger.wandb.mode=disabled",
        "logger.progress=false", f"hydra.sweep.dir={out}", *args.extra,
    ]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out or ROOT / "outputs" / "bench_algorithms" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    t0 = time.perf_counter()
    sweep(args, out)
    subprocess.run([str(BIN / "sppo-compare"), str(out), "--out", str(out)], cwd=ROOT, check=True)
    report = json.loads((out / "comparison.json").read_text())
    result: dict[str, object] = {}
    for algo, row in report["algorithms"].items():
        result[algo] = {
            "final_heldout_accuracy_mean": row["accuracy_after_mean"],
            "final_heldout_accuracy_std": row["accuracy_after_std"],
            "wall_seconds_mean": row["wall_seconds_mean"],
            "seconds_to_target_mean": row["time_to_target_mean"],
            "seeds_reaching_target": row["n_reached_target"],
            "n_seeds": row["n_seeds"],
        }
    result["target_accuracy"] = report.get("target")
    result["budget_train_seconds"] = args.seconds
    result["bench_wall_seconds"] = round(time.perf_counter() - t0, 1)
    result["report"] = str(out / "comparison.md")
    print((out / "comparison.md").read_text())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
