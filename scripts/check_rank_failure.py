"""A rank killed with SIGKILL (or stopped with SIGSTOP) stops a 2-rank job; resume= then continues it exactly.

1. Run A: ``torchrun --standalone --nproc_per_node=2 -m sppo_runner`` on the demo task
   (small settings below), uninterrupted.
2. Run B: the same command; once its metrics.jsonl reaches ``--kill-at`` steps, rank 1 gets
   SIGKILL (``--hang``: SIGSTOP, and ``distributed.timeout_s`` is short). Measured: seconds
   from the signal until torchrun has exited, and the message the surviving rank printed.
3. ``resume=B`` under the same torchrun command; then B's metrics.jsonl must equal A's,
   every value except timings and memory (``perf/*`` other than the ``perf/total_*`` counts).

A and B run at the same time (4 processes), so the timings here include that load.

    python scripts/check_rank_failure.py [--steps 20] [--kill-at 12] [--hang]

The last line printed is one JSON object; exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMALL = ["data.prompts_per_step=16", "eval.n_problems=16", "eval.k=2", "rollout.max_new_tokens=32",
         "trainer.eval_every=10", "trainer.checkpoint_every=5", "verifier.workers=1", "logger.wandb.mode=disabled",
         "logger.progress=false"]


def torchrun(run_dir: Path, args: list[str], log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "sppo_runner",
           *SMALL, *args, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def rank_pid(agent: int, rank: int) -> int:
    """The pid of ``rank`` among torchrun's worker processes (read from their environment)."""
    children = subprocess.run(["pgrep", "-P", str(agent)], capture_output=True, text=True).stdout.split()
    for pid in children:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in env:
            return int(pid)
    raise RuntimeError(f"rank {rank} not among torchrun's children {children}")


def steps_logged(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    return max([json.loads(ln)["step"] for ln in path.read_text().splitlines() if "reward/mean" in ln] or [0])


def comparable(run_dir: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("perf/") or k.startswith("perf/total_")} for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--kill-at", type=int, default=12)
    ap.add_argument("--hang", action="store_true", help="SIGSTOP rank 1 instead of SIGKILL")
    ap.add_argument("--timeout-s", type=float, default=20.0, help="distributed.timeout_s of the runs")
    ap.add_argument("--out", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="rank_failure_"))
    common = [f"trainer.steps={args.steps}", f"distributed.timeout_s={args.timeout_s}"]
    a_dir, b_dir = root / "A", root / "B"
    t0 = time.perf_counter()
    a = torchrun(a_dir, common, root / "A.log")
    b = torchrun(b_dir, common, root / "B.log")
    while steps_logged(b_dir) < args.kill_at:
        if b.poll() is not None:
            raise SystemExit(f"run B ended before step {args.kill_at}; see {root / 'B.log'}")
        time.sleep(0.2)
    sig = signal.SIGSTOP if args.hang else signal.SIGKILL
    victim = rank_pid(b.pid, 1)
    killed_after = steps_logged(b_dir)
    os.kill(victim, sig)
    t_kill = time.perf_counter()
    b_rc = b.wait(timeout=600)
    stop_seconds = time.perf_counter() - t_kill
    if args.hang:
        try:
            os.kill(victim, signal.SIGKILL)  # torchrun ends it too; make sure nothing is left
        except ProcessLookupError:
            pass
    b_log = (root / "B.log").read_text(errors="replace")
    message = next((ln for ln in b_log.splitlines() if "another rank stopped answering" in ln), None)
    checkpoints = sorted(p.name for p in (b_dir / "checkpoints").iterdir())
    a_rc = a.wait(timeout=900)
    r = torchrun(b_dir, [*common, f"resume={b_dir}"], root / "B_resume.log")
    r_rc = r.wait(timeout=900)
    equal = a_rc == 0 and r_rc == 0 and comparable(a_dir) == comparable(b_dir)
    result = {
        "signal": sig.name, "killed_rank": 1, "killed_after_step": killed_after,
        "stop_seconds": round(stop_seconds, 1), "torchrun_exit": b_rc, "message": message,
        "checkpoints_after_kill": checkpoints, "uninterrupted_exit": a_rc, "resume_exit": r_rc,
        "metrics_lines_compared": len(comparable(a_dir)), "resumed_metrics_equal": equal,
        "total_seconds": round(time.perf_counter() - t0, 1), "runs": str(root),
    }
    ok = equal and message is not None and stop_seconds < 60 and b_rc != 0
    print(json.dumps({**result, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
