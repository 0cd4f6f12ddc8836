"""The horizon starters (builder and shipped cards) and a smoke run of scripts/bench_horizon.py."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from conftest import REPO
from sppo_runner import assets

sys.path.insert(0, str(REPO / "scripts"))
MB = 2**20
LEVELS = (2, 4, 8, 16, 32)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_kit(tmp_path_factory):
    """A horizon kit built by make_starter_policy.py --horizons with a tiny model and few steps."""
    import make_starter_policy

    out = tmp_path_factory.mktemp("kit")
    argv = ["--horizons", "2,3", "--max-steps", "6", "--eval-every", "3", "--n-eval", "8", "--k-samples", "2",
            "--pool-per-horizon", "40", "--critic-pretrain-steps", "2", "--batch-tokens", "512", "--hidden", "32",
            "--intermediate", "64", "--layers", "1", "--critic-hidden", "16", "--critic-intermediate", "32",
            "--critic-layers", "1", "--init-policy", "none", "--out-dir", str(out)]
    assert make_starter_policy.main(argv) == 0
    return out


def test_builder_writes_levels_and_cards(tiny_kit):
    summary = json.loads((tiny_kit / "card.json").read_text())
    assert set(summary["levels"]) == {"2", "3"}
    for h in (2, 3):
        card = json.loads((tiny_kit / f"h{h}" / "policy" / "card.json").read_text())
        assert card["horizon"] == h and card["n_heldout"] == 8 and card["heldout_sampled_k"] == 2
        for key in ("heldout_greedy_accuracy", "heldout_sampled_mean_accuracy", "sft_step", "command", "seed",
                    "max_new_tokens", "solution_tokens_max_with_eos", "versions"):
            assert key in card, key
        assert card["max_new_tokens"] > card["solution_tokens_max_with_eos"]
        cfg = json.loads((tiny_kit / f"h{h}" / "critic" / "config.json").read_text())
        assert len(cfg["id2label"]) == 1 and cfg["max_position_embeddings"] == 1024


def test_continued_level_merges_into_the_kit(tiny_kit, tmp_path):
    """A long level continued from a shorter one's policy joins the kit; each level names its own run."""
    import shutil

    import make_starter_policy

    kit = tmp_path / "kit"
    shutil.copytree(tiny_kit, kit)
    before = json.loads((kit / "card.json").read_text())
    argv = ["--horizons", "3", "--train-horizons", "3-4", "--lr-schedule", "cosine", "--max-steps", "4",
            "--eval-every", "2", "--n-eval", "8", "--k-samples", "2", "--pool-per-horizon", "40",
            "--critic-pretrain-steps", "2", "--batch-tokens", "512", "--hidden", "32", "--intermediate", "64",
            "--layers", "1", "--critic-hidden", "16", "--critic-intermediate", "32", "--critic-layers", "1",
            "--init-policy", str(kit / "h2" / "policy"), "--out-dir", str(kit)]
    assert make_starter_policy.main(argv) == 0
    summary = json.loads((kit / "card.json").read_text())
    assert set(summary["levels"]) == {"2", "3"}
    assert summary["levels"]["2"] == {**summary["levels"]["2"], **{k: before["levels"]["2"][k] for k in
                                                                     ("sft_step", "heldout_greedy_accuracy")}}
    assert summary["levels"]["2"]["init_policy"] == "none"
    three = summary["levels"]["3"]
    assert three["init_policy"] == str(kit / "h2" / "policy") and three["lr_schedule"] == "cosine"
    assert three["train_horizons"] == "3-4" and "--train-horizons 3-4" in three["command"]
    assert "unfinished" in summary  # 4, 8, 16, 32 are not in this kit


def test_cosine_schedule_and_train_lengths():
    import argparse

    import horizon_starters as hs

    a = argparse.Namespace(lr=1e-3, warmup=10, max_steps=110, lr_schedule="cosine")
    assert hs.lr_at(a, 5) == pytest.approx(5e-4)  # warm-up
    assert hs.lr_at(a, 10) == pytest.approx(1e-3)
    assert hs.lr_at(a, 60) == pytest.approx(5.5e-4)  # half-way: (1 + 0.1) / 2
    assert hs.lr_at(a, 110) == pytest.approx(1e-4)
    assert hs.lr_at(argparse.Namespace(lr=1e-3, warmup=10, max_steps=110, lr_schedule="constant"), 110) == 1e-3
    assert hs.train_lengths("8-32") == tuple(range(8, 33)) and hs.train_lengths("4") == (4,)
    for bad in ("1-8", "8-40", "x", "9-8"):
        with pytest.raises(SystemExit, match="--train-horizons"):
            hs.train_lengths(bad)


# ---- the shipped starters ----------------------------------------------------------------------
def test_every_level_shipped_with_room_to_rise():
    assert assets.horizon_levels() == list(LEVELS)
    summary = json.loads((assets.path("policy").parent / "horizon" / "card.json").read_text())
    for h in LEVELS:
        card = json.loads((assets.horizon_path(h, "policy") / "card.json").read_text())
        assert card["horizon"] == h and card["n_heldout"] == 256 and card["seed"] == 0
        assert 0.15 <= card["heldout_greedy_accuracy"] <= 0.60, (h, card["heldout_greedy_accuracy"])
        assert 0.0 < card["heldout_sampled_mean_accuracy"] <= card["heldout_greedy_accuracy"] + 0.05
        assert summary["levels"][str(h)]["heldout_greedy_accuracy"] == card["heldout_greedy_accuracy"]
        # Positions hold the longest prompt plus the generation budget.
        assert card["max_positions"] >= card["prompt_tokens_max"] + card["max_new_tokens"]
        assert card["max_new_tokens"] > card["solution_tokens_max_with_eos"]
    lengths = [json.loads((assets.horizon_path(h, "policy") / "card.json").read_text())
               ["solution_tokens_mean_with_eos"] for h in LEVELS]
    assert lengths == sorted(lengths) and lengths[0] < 50 and lengths[-1] > 300
    assert "unfinished" not in summary


def test_kit_within_size_budget():
    root = assets.path("policy").parent / "horizon"
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    assert total <= 12 * MB, total / MB  # five levels in float16 would take about 11 MB
    for h in LEVELS:
        pol = assets.horizon_path(h, "policy")
        assert sum(f.stat().st_size for f in pol.rglob("*") if f.is_file()) <= 10 * MB


def test_h2_greedy_accuracy_reproduces_card():
    """The card's greedy accuracy is that of the shipped weights, measured as a run measures it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import horizon_starters
    from sppo_runner.data.synthetic import SyntheticTask
    from sppo_runner.rollout.native import NativeEngine

    path = assets.horizon_path(2, "policy")
    card = json.loads((path / "card.json").read_text())
    tok = AutoTokenizer.from_pretrained(path)
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    problems = SyntheticTask(0, 2, horizon=2).heldout(256)
    engine = NativeEngine(tok, workers=1, parallel="threads")
    acc, _ = horizon_starters.accuracy(engine, policy, tok, problems, card["max_new_tokens"])
    assert abs(acc - card["heldout_greedy_accuracy"]) <= 0.02


def test_missing_level_names_the_build_command():
    with pytest.raises(FileNotFoundError, match="make horizon-kit"):
        assets.horizon_path(3, "policy")


# ---- the benchmark -------------------------------------------------------------------------------
@pytest.mark.slow
def test_bench_smoke(tiny_kit, tmp_path, capsys):
    import bench_horizon

    out = tmp_path / "bench"
    argv = ["--horizons", "2,3", "--algorithms", "sppo,ppo,grpo", "--seeds", "0", "--samples", "16",
            "--samples-per-step", "8", "--problems", "4", "--k", "1", "--evals", "1", "--kit", str(tiny_kit),
            "--out", str(out), "--jobs", "2", "data.train_size=64", "verifier.workers=1", "trainer.threads=1",
            "rollout.cpu_parallel=threads", "algorithm.critic_warmup_steps=0"]
    assert bench_horizon.main(argv) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last["final_accuracy"]) == {"tokens", "seconds"}
    assert set(last["final_accuracy"]["tokens"]["2"]) == {"sppo", "ppo", "grpo"}
    report = json.loads((out / "horizon.json").read_text())
    tok2 = report["modes"]["tokens"]["2"]["algorithms"]
    # Equal samples per update: GRPO's 8 samples come from one prompt.
    grpo_cfg = (out / "runs" / "tokens" / "h2" / "grpo-seed0" / "config.yaml").read_text()
    assert "prompts_per_step: 1" in grpo_cfg and "horizon: 2" in grpo_cfg
    assert all(c["n_seeds"] == 1 for c in tok2.values())
    assert "critic/explained_var" in tok2["ppo"]["diagnostics"] or tok2["ppo"]["diagnostics"] == {}
    assert "critic/value_reward_corr" in tok2["sppo"]["diagnostics"]
    # The wall-clock budget is SPPO's mean training time for the token budget.
    sppo = json.loads((out / "runs" / "tokens" / "h2" / "sppo-seed0" / "summary.json").read_text())
    assert report["budgets"]["seconds"]["2"]["seconds"] == pytest.approx(sppo["train_seconds"])
    secs = json.loads((out / "runs" / "seconds" / "h2" / "grpo-seed0" / "summary.json").read_text())
    assert secs["stop_reason"] == "max_seconds"
    assert (out / "accuracy_vs_horizon.png").stat().st_size > 0
    md = (out / "horizon.md").read_text()
    assert "equal generated tokens" in md and "equal wall clock" in md and "SPPO minus token PPO" in md
    assert not (out / "runs" / "tokens" / "h2" / "sppo-seed0" / "final").exists()
    # A second call finds every run finished and only rewrites the report; its wall time adds up.
    first = report["bench_wall_seconds"]
    assert bench_horizon.main(argv) == 0
    assert "(done)" in capsys.readouterr().out
    assert json.loads((out / "horizon.json").read_text())["bench_wall_seconds"] >= first > 0
