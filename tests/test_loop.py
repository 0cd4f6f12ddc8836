"""Smoke runs of every algorithm on a tiny model, determinism, exact resume, bad numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import make_config, small_run_overrides
from sppo_runner.run import run, train_step
from sppo_runner.session import build_session

ALGOS = ["sppo", "ppo", "ppo_bce", "grpo", "rloo", "remax"]


def _metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # Timings and memory differ between runs by nature; everything else must not.
    return [{k: v for k, v in r.items() if not k.startswith("perf/") or k.startswith("perf/total_")} for r in rows]


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("algo", ALGOS)
def test_one_step_changes_every_parameter(algo, tiny_models, tmp_path):
    over = small_run_overrides(tiny_models) + ["algorithm.critic_warmup_steps=0", "algorithm.samples_per_prompt=" +
                                               ("4" if algo in ("grpo", "rloo") else "1")]
    cfg = make_config(algo, over)
    s = build_session(cfg, tmp_path)
    try:
        before = {"policy": _snapshot(s.policy), **({"critic": _snapshot(s.critic)} if s.critic is not None else {})}
        # Untrained models rarely earn a reward; force a nonzero advantage signal by a fixed reward pattern.
        s.verifier.grade_batch = _alternating_rewards(s.verifier.grade_batch)
        metrics = train_step(s)
    finally:
        s.close()
    assert metrics["actor/skipped_steps"] == 0
    for name, snap in before.items():
        model = getattr(s, name)
        unchanged = [n for n, p in model.named_parameters() if torch.equal(p.detach(), snap[n])]
        assert not unchanged, f"{algo}: {name} parameters unchanged after one step: {unchanged}"
    assert (s.critic is not None) == (algo in ("sppo", "ppo", "ppo_bce"))


def _alternating_rewards(grade_batch):
    from sppo_runner.verifier import Verdict

    calls = []

    def fake(responses, golds):
        # Sampled rows alternate 0/1; a later call (ReMax's greedy baseline) scores 0.
        calls.append(1)
        real = grade_batch(responses, golds)
        return [Verdict(float(i % 2 and len(calls) == 1), "wrong", v.extracted) for i, v in enumerate(real)]

    return fake


def test_same_seed_same_metrics(tiny_models, tmp_path):
    over = small_run_overrides(tiny_models, steps=3)
    run(make_config("sppo", over), tmp_path / "a")
    run(make_config("sppo", over), tmp_path / "b")
    a, b = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    assert len(a) == 5 and a == b  # eval before, 3 steps, eval after


def test_different_seed_differs(tiny_models, tmp_path):
    over = small_run_overrides(tiny_models, steps=2)
    run(make_config("sppo", over), tmp_path / "a")
    run(make_config("sppo", over + ["seed=1"]), tmp_path / "b")
    assert _metrics(tmp_path / "a")[1] != _metrics(tmp_path / "b")[1]


@pytest.mark.parametrize("algo", ["sppo", "grpo"])
def test_resume_is_exact(algo, tiny_models, tmp_path):
    over = small_run_overrides(tiny_models, steps=4) + ["trainer.checkpoint_every=2"]
    if algo == "grpo":
        over.append("algorithm.samples_per_prompt=2")
    run(make_config(algo, over), tmp_path / "straight")
    first = make_config(algo, over + ["trainer.steps=2"])
    run(first, tmp_path / "split")
    resumed = make_config(algo, over + [f"resume={tmp_path / 'split'}"])
    run(resumed, tmp_path / "split")
    straight = [r for r in _metrics(tmp_path / "straight") if "reward/mean" in r]
    split = [r for r in _metrics(tmp_path / "split") if "reward/mean" in r]
    assert [r["step"] for r in split] == [1, 2, 3, 4]
    assert straight == split


def test_nonfinite_gradient_skips_step(tiny_models, tmp_path):
    cfg = make_config("sppo", small_run_overrides(tiny_models))
    s = build_session(cfg, tmp_path)
    try:
        before = _snapshot(s.policy)
        real_score = s.learner.score

        def nan_score(*args, **kwargs):
            batch = real_score(*args, **kwargs)
            batch.advantages = torch.full_like(batch.advantages, float("nan"))
            return batch

        s.learner.score = nan_score
        metrics = train_step(s)
    finally:
        s.close()
    assert metrics["actor/skipped_steps"] == 1
    assert all(torch.equal(p, before[n]) for n, p in s.policy.named_parameters())


def test_summary_and_outputs(tiny_models, tmp_path):
    summary = run(make_config("sppo", small_run_overrides(tiny_models, steps=2)), tmp_path)
    for key in ("heldout_accuracy_before", "heldout_accuracy_after", "k", "n_heldout_problems", "steps",
                "wall_seconds"):
        assert key in summary
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 2
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert (tmp_path / "final" / "policy" / "config.json").exists()
    assert (tmp_path / "final" / "critic" / "config.json").exists()
    rows = [json.loads(ln) for ln in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert {"prompt", "response", "extracted", "status", "reward", "value", "advantage"} <= set(rows[0])
    metric_keys = set().union(*_metrics(tmp_path))
    assert {"perf/total_samples", "perf/total_tokens", "perf/total_prompts"} <= metric_keys
    namespaces = {k.split("/")[0] for k in metric_keys if k != "step"}
    assert namespaces <= {"rollout", "reward", "actor", "critic", "perf", "eval"}
