"""Training runs with ``rollout.backend=vllm`` (real vLLM: ``make test-vllm`` runs them in .venv-vllm)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, make_config, small_run_overrides
from sppo_runner.rollout.vllm_engine import vllm_available

if not vllm_available():
    if os.environ.get("SPPO_REQUIRE_VLLM") == "1":
        raise RuntimeError("SPPO_REQUIRE_VLLM=1 but vLLM is not importable here")
    pytest.skip("vLLM is not installed here: `make test-vllm` runs these tests in .venv-vllm",
                allow_module_level=True)


def _vllm_overrides(tiny_models, steps: int = 2) -> list[str]:
    """The small run, on the embedded models: vLLM's CPU attention needs head size 32 or more
    (the conftest models have 16)."""
    drop = ("rollout.backend=", "model.path=", "critic.path=")
    over = [o for o in small_run_overrides(tiny_models, steps) if not o.startswith(drop)]
    return over + ["rollout.backend=vllm", "model.path=embedded", "critic.path=embedded"]


def test_sppo_run_syncs_and_recomputes(tiny_models, tmp_path):
    """Every step logs the sync time and the engine/learner log-prob gap (float32: tiny)."""
    from sppo_runner.run import run

    summary = run(make_config("sppo", _vllm_overrides(tiny_models)), tmp_path)
    assert summary["steps"] == 2
    rows = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward/mean" in r]
    assert len(steps) == 2
    for r in steps:
        assert r["perf/weight_sync_seconds"] > 0
        assert 0 <= r["rollout/logprob_abs_diff_mean"] <= r["rollout/logprob_abs_diff_max"] < 1e-3


def test_cli_grpo_with_vllm(tiny_models, tmp_path):
    """``sppo-run algorithm=grpo rollout.backend=vllm`` as a user runs it (a fresh process)."""
    cmd = [sys.executable, "-c", "from sppo_runner.cli import train_main; train_main()", "algorithm=grpo",
           "algorithm.samples_per_prompt=2", *_vllm_overrides(tiny_models), f"hydra.run.dir={tmp_path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["algorithm"] == "grpo"
