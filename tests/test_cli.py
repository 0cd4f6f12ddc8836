"""The user-facing command does what the README says (subprocess runs of sppo-run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import small_run_overrides

BIN = Path(sys.executable).parent / "sppo-run"
pytestmark = pytest.mark.slow


def sppo_run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([str(BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_train_then_resume_from_the_run_folder(tiny_models, tmp_path):
    run_dir = tmp_path / "run"
    over = small_run_overrides(tiny_models, steps=2) + ["trainer.checkpoint_every=1", f"hydra.run.dir={run_dir}"]
    out = sppo_run(*over, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "held-out accuracy (mean@2, 4 problems):" in out.stdout + out.stderr
    for name in ("config.yaml", "metrics.jsonl", "samples.jsonl", "curves.png", "summary.json",
                 "final/policy/model.safetensors", "final/critic/model.safetensors", "checkpoints/step_2"):
        assert (run_dir / name).exists(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["k"] == 2 and summary["n_heldout_problems"] == 4

    out = sppo_run(f"resume={run_dir}", "trainer.steps=3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    steps = [json.loads(ln)["step"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 3 and steps.count(1) == 1
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 3


def test_unknown_algorithm_lists_the_choices(tmp_path):
    out = sppo_run("algorithm=nope", cwd=tmp_path)
    assert out.returncode != 0
    for name in ("sppo", "ppo", "grpo", "rloo", "remax"):
        assert f"\t{name}\n" in out.stderr


@pytest.mark.parametrize("arg,expect", [
    ("trainer.stepz=5", "Key 'stepz' not in 'TrainerConfig'"),
    ("+trainer.stepz=5", "sppo-run: config error at 'trainer.stepz': not a setting of TrainerConfig; did you mean "
                         "'trainer.steps'?"),
    ("logger.wandb.mode=sometimes", "expected one of [auto, online, offline, disabled]"),
    ("trainer.steps=many", "trainer.steps"),
    ("algorithm.loss_agg=sum", "allowed values: seq-mean-token-mean, seq-mean-token-sum-norm, token-mean"),
    ("algorithm=grpo algorithm.samples_per_prompt=1", "grpo needs at least 2 samples per prompt"),
    ("--cfg job trainer.max_seconds=-5", "sppo-run: config error at 'trainer.max_seconds': got -5.0; allowed: >= 0"),
    ("trainer.device=cuda:99", "sppo-run: config error at 'trainer.device': got 'cuda:99', but this machine has"),
])
def test_bad_config_fails_at_start_naming_the_key(arg, expect, tmp_path):
    out = sppo_run(*arg.split(), "trainer.steps=0", cwd=tmp_path) if "trainer.steps" not in arg else \
        sppo_run(arg, cwd=tmp_path)
    assert out.returncode != 0
    assert expect in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr + out.stdout
    if out.stderr.startswith("sppo-run: "):  # our checks: exit 2, and no folder left behind
        assert out.returncode == 2 and not (tmp_path / "outputs").exists()


def test_runtime_errors_are_one_line_exit_2_with_the_traceback_in_the_log(tiny_models, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1+1?", "answer": "2"}\n{"prompt": "no answer"}\n')
    run_dir = tmp_path / "run"
    out = sppo_run(*small_run_overrides(tiny_models), "data.source=file", f"data.path={bad}", "data.answer_key=answer",
                   "data.heldout_size=1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    ours = [ln for ln in out.stderr.splitlines() if ln.startswith("sppo-run:")]
    assert ours == [f"sppo-run: {bad}, row 1: missing key 'answer' (skip bad rows with data.bad_rows=skip)"]
    assert "Traceback" not in out.stdout + out.stderr
    log = (run_dir / "sppo-run.log").read_text()
    assert "Traceback" in log and "BadRowError" in log
    # That run never reached a checkpoint: resume= says to start it again.
    out = sppo_run(f"resume={run_dir}", cwd=tmp_path)
    assert out.returncode == 2
    assert "the run stopped before its first checkpoint, so there is nothing to resume; start it again" in out.stderr
    assert "Traceback" not in out.stdout + out.stderr
