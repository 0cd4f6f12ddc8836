"""Scale-out: reductions, the memory plan, torchrun launch arguments, and 2-process checks (gloo, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import REPO, make_config, small_run_overrides
from sppo_runner.algorithms.losses import Normalizer
from sppo_runner.distributed import Dist, launch
from sppo_runner.distributed.memory import GB, KNOWN_CONFIGS, plan, shape_of
from sppo_runner.distributed.reduce import NORMALIZER_OPS, metric_op, reduce_eval_dicts, reduce_metric_dicts

BIN = Path(sys.executable).parent


# ---- reductions (pure, no process group) ---------------------------------------------------
def test_every_normalizer_field_has_a_cross_rank_reduction():
    assert {f.name for f in fields(Normalizer)} <= set(NORMALIZER_OPS)


def test_metric_reductions_by_name():
    assert metric_op("actor/pg_loss") == metric_op("critic/loss") == metric_op("reward/status/wrong") == "sum"
    assert metric_op("rollout/response_len_max") == metric_op("perf/step_seconds") == "max"
    assert metric_op("perf/peak_rss_mb") == "max"
    assert metric_op("reward/mean") == metric_op("actor/grad_norm") == "mean"
    ranks = [{"actor/pg_loss": 0.25, "reward/mean": 0.5, "reward/status/ok": 3.0, "actor/grad_norm": 1.7},
             {"actor/pg_loss": -0.5, "reward/mean": 0.0, "reward/status/wrong": 4.0, "actor/grad_norm": 1.7}]
    assert reduce_metric_dicts(ranks) == {"actor/pg_loss": -0.25, "reward/mean": 0.25, "reward/status/ok": 3.0,
                                          "actor/grad_norm": 1.7, "reward/status/wrong": 4.0}


def test_eval_shards_combine_into_one_evaluation():
    # 3 problems on rank 0 (accuracy 2/3), 1 problem on rank 1 (accuracy 0): the whole set scores 2/4.
    ranks = [{"eval/n_problems": 3.0, "eval/k": 2.0, "eval/mean@k": 2 / 3, "eval/status/ok": 4.0,
              "eval/aime/n_problems": 1.0, "eval/aime/mean@k": 1.0},
             {"eval/n_problems": 1.0, "eval/k": 2.0, "eval/mean@k": 0.0, "eval/status/no_answer": 2.0,
              "eval/aime/n_problems": 1.0, "eval/aime/mean@k": 0.0}]
    m = reduce_eval_dicts(ranks)
    assert m["eval/n_problems"] == 4.0 and m["eval/k"] == 2.0
    assert m["eval/mean@k"] == pytest.approx(0.5, abs=1e-15)
    assert m["eval/status/ok"] == 4.0 and m["eval/status/no_answer"] == 2.0
    assert m["eval/aime/n_problems"] == 2.0 and m["eval/aime/mean@k"] == 0.5


def test_one_process_is_the_identity():
    d = Dist()
    norm = Normalizer(10.0, 4.0, 7.0)
    assert d.global_normalizer(norm) is norm and d.all(True) and not d.any(False)
    assert d.step_totals(3, 6, 40, 1.5) == (3, 6, 40, 1.5)
    assert d.shard([1, 2, 3]) == [1, 2, 3] and d.rank_seed(5) == 5


# ---- memory plan (configs only: nothing is downloaded) -------------------------------------
@pytest.mark.parametrize("path,kind,count", [
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "policy", 7.62e9),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "policy", 1.78e9),
    ("Qwen/Qwen2.5-0.5B-Instruct", "policy", 0.494e9),
    ("Qwen/Qwen2.5-Math-1.5B", "policy", 1.54e9),
])
def test_known_configs_give_the_published_parameter_counts(path, kind, count):
    from transformers import Qwen2Config

    assert shape_of(Qwen2Config(**KNOWN_CONFIGS[path]), kind).n_params == pytest.approx(count, rel=0.005)


def _preset(name: str, *extra: str):
    return make_config("sppo", [f"experiment={name}", *extra])


def test_paper_7b_small_critic_fits_four_80gb_gpus():
    p = plan(_preset("paper_7b/sppo_small_critic"), world=4, gpu_bytes=80 * GB)
    print("\n" + p.text())
    assert p.fits
    policy, critic = p.models[0][1], p.models[1][1]
    assert policy.n_params == pytest.approx(7.62e9, rel=0.005) and critic.n_params == pytest.approx(1.54e9, rel=0.005)
    # float32 weights + grads + two AdamW moments = 16 bytes per parameter, split 4 ways.
    assert p.states == pytest.approx(16 * (policy.n_params + critic.n_params) / 4)


def test_paper_7b_full_critic_needs_offload_or_more_gpus():
    cfg = _preset("paper_7b/sppo")
    assert plan(cfg, world=4, gpu_bytes=80 * GB).fits is False
    assert plan(cfg, world=8, gpu_bytes=80 * GB).fits
    assert plan(_preset("paper_7b/sppo", "distributed.cpu_offload=true"), world=4, gpu_bytes=80 * GB).fits


def test_sppo_plan_command(tmp_path):
    out = subprocess.run([str(BIN / "sppo-plan"), "experiment=paper_7b/sppo_small_critic",
                          "distributed.nproc_per_node=4", "distributed.gpu_memory_gb=80"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "4 rank(s), FSDP2 full shard over 4" in out.stdout and "fits." in out.stdout
    assert not list(tmp_path.iterdir())  # no run folder for a plan


# ---- launching -----------------------------------------------------------------------------
def _hc(target: str = "hydra._internal.core_plugins.basic_launcher.BasicLauncher", **launcher):
    return OmegaConf.create({"launcher": {"_target_": target, **launcher}, "mode": "MULTIRUN",
                             "overrides": {"task": ["seed=1"]}, "job": {"name": "cli"}})


def test_torchrun_args(monkeypatch):
    for var in ("LOCAL_RANK", "TORCHELASTIC_RUN_ID", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    cfg = make_config("sppo")
    assert launch.torchrun_args(cfg, _hc()) is None  # one process: run here
    cfg.distributed.nproc_per_node = 4
    assert launch.torchrun_args(cfg, _hc()) == ["--standalone", "--nproc_per_node=4"]
    cfg.distributed.nproc_per_node = 0
    slurm = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launch.torchrun_args(cfg, _hc(slurm, gpus_per_node=8, nodes=1)) == ["--standalone", "--nproc_per_node=8"]
    cfg.logger.wandb.group = "12-00-00"
    assert launch.job_overrides(_hc(), cfg) == ["seed=1", "hydra.job.name=cli", "logger.wandb.group=12-00-00"]
    monkeypatch.setenv("LOCAL_RANK", "0")  # already one of torchrun's ranks: never start more
    assert launch.torchrun_args(cfg, _hc(slurm, gpus_per_node=8, nodes=1)) is None


def test_a_lost_rank_becomes_one_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    (tmp_path / "checkpoints" / "step_5").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step_5" / "trainer_state.pt").write_bytes(b"")
    (tmp_path / "checkpoints" / ".tmp_step_10").mkdir()  # a save the dead rank interrupted: never counts
    with pytest.raises(launch.RankFailure) as err:
        with launch.explain_failures(tmp_path, 20):
            raise RuntimeError("[../gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:1234")
    text = str(err.value)
    assert text.startswith("rank 1 of 2: another rank stopped answering (") and "timeout_s=20 s" in text
    assert f"Last complete checkpoint: {tmp_path / 'checkpoints' / 'step_5'}." in text
    assert f"sppo-run resume={tmp_path}" in text
    with pytest.raises(ValueError):  # other errors pass through untouched
        with launch.explain_failures(tmp_path, 20):
            raise ValueError("bad value")


def test_batch_must_split_evenly_over_ranks(monkeypatch):
    from sppo_runner.config import ConfigError
    from sppo_runner.distributed import _check_world

    with pytest.raises(ConfigError, match="data.prompts_per_step.*multiple of 4"):
        _check_world(make_config("sppo", ["data.prompts_per_step=30"]), 4)


# ---- two processes (gloo) ------------------------------------------------------------------
def _torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_two_ranks_take_the_one_rank_update():
    """2 ranks x 32 prompts == 1 rank x 64 prompts (SPPO, GRPO): loss, grad norm, grads, weights."""
    out = _torchrun(str(REPO / "scripts" / "check_sharded_update.py"), "--prompts", "64")
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert lines, out.stderr[-3000:]
    result = json.loads(lines[-1])
    print(json.dumps(result, indent=1))
    assert result["world"] == 2 and set(result["cases"]) == {"sppo", "grpo", "grpo_seq_sum_norm"}
    assert result["ok"], json.dumps(result["cases"], indent=1)
    assert out.returncode == 0


@pytest.mark.slow
def test_local_submitit_sweep_then_compare(tiny_models, tmp_path):
    sweep = tmp_path / "sweep"
    over = [o for o in small_run_overrides(tiny_models) if not o.startswith("algorithm")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    out = subprocess.run([str(BIN / "sppo-run"), "-m", "hydra/launcher=local", "algorithm=sppo,grpo",
                          "algorithm.samples_per_prompt=2", *over, f"hydra.sweep.dir={sweep}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in out.stdout + out.stderr
    for job in ("sppo-seed0", "grpo-seed0"):
        assert json.loads((sweep / job / "summary.json").read_text())["steps"] == 2
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2  # run by submitit, not in-process
    report = subprocess.run([str(BIN / "sppo-compare"), str(sweep)], capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    table = (sweep / "comparison.md").read_text()
    assert "| grpo | 1 |" in table and "| sppo | 1 |" in table


# ---- the sharded code path in this process (FSDP2 over one rank, distributed.fsdp=on) ------
def _metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("perf/") or k.startswith("perf/total_")} for r in rows]


@pytest.mark.parametrize("algo", ["sppo", "grpo"])
def test_sharded_run_resumes_exactly_and_saves_loadable_weights(algo, tiny_models, tmp_path):
    from transformers import AutoModelForCausalLM

    from sppo_runner.run import run

    over = small_run_overrides(tiny_models, steps=4) + ["trainer.checkpoint_every=2", "distributed.fsdp=on"]
    if algo == "grpo":
        over.append("algorithm.samples_per_prompt=2")
    run(make_config(algo, over), tmp_path / "straight")
    run(make_config(algo, over + ["trainer.steps=2"]), tmp_path / "split")
    ckpt = tmp_path / "split" / "checkpoints" / "step_2"
    assert {p.name for p in ckpt.iterdir()} == {"sharded", "rank_00000.pt", "trainer_state.pt"}
    run(make_config(algo, over + [f"resume={tmp_path / 'split'}"]), tmp_path / "split")
    straight = [r for r in _metrics(tmp_path / "straight") if "reward/mean" in r]
    split = [r for r in _metrics(tmp_path / "split") if "reward/mean" in r]
    assert [r["step"] for r in split] == [1, 2, 3, 4] and straight == split
    final = AutoModelForCausalLM.from_pretrained(tmp_path / "straight" / "final" / "policy")
    assert sum(p.numel() for p in final.parameters()) == json.loads(
        (tmp_path / "straight" / "summary.json").read_text())["n_params"]["policy"]


def test_sharded_checkpoint_resumes_unsharded(tiny_models, tmp_path):
    """A DCP checkpoint (any world size) resumes in a plain single-process run."""
    from sppo_runner.run import run

    over = small_run_overrides(tiny_models, steps=2) + ["trainer.checkpoint_every=2"]
    run(make_config("sppo", over + ["distributed.fsdp=on"]), tmp_path / "run")
    summary = run(make_config("sppo", over + ["trainer.steps=3", f"resume={tmp_path / 'run'}"]), tmp_path / "run")
    assert summary["steps"] == 3
    assert (tmp_path / "run" / "checkpoints" / "step_3" / "policy").is_dir()  # single-process format from here on
