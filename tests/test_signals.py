"""Signals sent to a running ``sppo-run`` (issue #12, item 10)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DRIVER, cli_env, small_run_overrides
from sppo_runner.checkpoint import list_checkpoints

BIN = Path(sys.executable).parent / "sppo-run"
pytestmark = pytest.mark.slow


def _trained_steps(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.endswith("}")]
    return [r["step"] for r in rows if "reward/mean" in r]


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_checkpoint_after_the_step_and_exit_128_plus_n(sig, status, tiny_models, tmp_path):
    run_dir = tmp_path / "run"
    over = small_run_overrides(tiny_models, steps=10_000) + [f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen([str(BIN), *over], cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not _trained_steps(run_dir) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == status, err[-3000:]
    assert f"received {sig.name}: stopping after the current step" in err and "Traceback" not in out + err
    assert f"continue with: sppo-run resume={run_dir}" in out
    steps = _trained_steps(run_dir)
    assert steps and [p.name for p in list_checkpoints(run_dir)][-1] == f"step_{steps[-1]}"


def test_ctrl_c_during_an_evaluation_stops_after_it(tiny_models, tmp_path):
    run_dir = tmp_path / "run"
    over = small_run_overrides(tiny_models, steps=50) + [f"hydra.run.dir={run_dir}"]
    out = subprocess.run([sys.executable, str(DRIVER), "sigint-in-eval=1", *over], cwd=tmp_path, env=cli_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 130, out.stderr[-3000:]
    assert "received SIGINT: stopping after the current step (or evaluation) and writing a checkpoint; " \
           "press Ctrl-C again to stop at once" in out.stderr
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0] and "eval/mean@k" in rows[0]  # the evaluation finished, no step ran
    assert [p.name for p in list_checkpoints(run_dir)] == ["step_0"]
    assert "Traceback" not in out.stdout + out.stderr


def test_a_second_ctrl_c_stops_at_once_without_a_traceback(tiny_models, tmp_path):
    run_dir = tmp_path / "run"
    over = small_run_overrides(tiny_models, steps=50) + [f"hydra.run.dir={run_dir}"]
    out = subprocess.run([sys.executable, str(DRIVER), "sigint-in-eval=2", *over], cwd=tmp_path, env=cli_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 130, out.stderr[-3000:]
    assert "sppo-run: interrupted, stopped at once" in out.stderr
    assert "Traceback" not in out.stdout + out.stderr and "KeyboardInterrupt" not in out.stderr
    assert not list_checkpoints(run_dir)
