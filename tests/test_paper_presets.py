"""Every conf/experiment/ preset composes, and its values are the paper's (sppo-notes.md table)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sppo_runner.cli import CONF_DIR, _register

EXPERIMENTS = sorted(
    str(p.relative_to(Path(CONF_DIR) / "experiment").with_suffix(""))
    for p in (Path(CONF_DIR) / "experiment").rglob("*.yaml") if p.stem != "common"
)

R1_1P5B = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
R1_7B = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"

# The paper's table ("Settings used in the paper"), per setting.
PAPER = {
    "1.5b": {"policy": R1_1P5B, "critic": R1_1P5B, "prompts": 256, "mini_batch": 128, "max_prompt": 1024,
             "max_response": 8192, "actor_lr": 1e-6, "weight_decay": 0.01, "critic_lr": 5e-6, "temperature": 0.6,
             "steps": 1000},
    "7b": {"policy": R1_7B, "critic": R1_7B, "prompts": 512, "mini_batch": 32, "max_prompt": 2048,
           "max_response": 8192, "actor_lr": 1e-6, "weight_decay": 0.1, "critic_lr": 1e-5, "temperature": 0.6,
           "steps": 200},
}
# Baselines (notes: "Baselines, all in the same framework"): name -> (algorithm, N, KL-in-reward).
METHODS = {"sppo": ("sppo", 1, 0.0), "sppo_small_critic": ("sppo", 1, 0.0), "grpo": ("grpo", 8, 0.0),
           "ppo": ("ppo", 1, 0.0), "rloo": ("rloo", 5, 0.001), "remax": ("remax", 1, 0.001)}

# The reference code, sustech-nlp/SPPO at 55e8a7236dab (a verl fork). Run scripts exist only for
# SPPO; the baselines take the SPPO script of their size. "script:N" is line N of:
SCRIPTS = {"1.5b": "run_scripts/run_ds1.5B_PPO_SEQUENCE_shuffle.sh",
           "7b": "run_scripts/run_R1-7B_DAPO_SEQUENCE.sh and run_R1-7B_DAPO_SEQUENCE_small_critic.sh"}
# algorithm.<key>: (1.5B value, 7B value, where it comes from).
REFERENCE = {
    "loss_agg": ("token-mean", "token-mean",
                 "verl/trainer/config/actor/actor.yaml:72 loss_agg_mode (no script sets it)"),
    # token-mean per micro-batch (core_algos.py:806-807), scaled by 1/accumulation steps
    # (dp_actor.py:399-402, 420), gradients averaged over the GPUs: groups of the per-GPU size.
    "loss_micro_batch": (2, 1, "script:38 actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"),
    "critic_loss_micro_batch": (1, 1, "script:60 critic.ppo_micro_batch_size_per_gpu"),
    "kl_in_reward_estimator": ("k1", "k1", "verl/trainer/config/ppo_trainer.yaml:86 algorithm.kl_penalty: kl"),
    "kl_estimator": ("k3_clamped", "k3_clamped",
                     "verl/trainer/config/actor/actor.yaml:88 kl_loss_type: low_var_kl (core_algos.py:1459-1465)"),
    "whiten_unbiased": (True, True, "verl/utils/torch_functional.py:188 masked_var(unbiased=True), masked_whiten:219"),
    "dual_clip": (3.0, 3.0, "verl/trainer/config/actor/actor.yaml:69 clip_ratio_c"),
    "clip_ratio_low": (0.2, 0.2, "verl/trainer/config/actor/actor.yaml:36"),
    "clip_ratio_high": (0.2, 0.2, "verl/trainer/config/actor/actor.yaml:39"),
    "kl_coef": (0.0, 0.0, "script:35 actor_rollout_ref.actor.use_kl_loss=False"),
}
PPO_VALUE_CLIP = (0.5, "verl/trainer/config/critic/critic.yaml:77 cliprange_value")
# verifier.rule: the reward of every math* data source (all the paper's files, DAPO's "math_dapo"
# included: the math branch comes first) is naive_dapo.compute_score, via the naive reward manager.
REWARD_RULE = ("reference", "verl/utils/reward_score/__init__.py:49-61 data_source.startswith('math') -> "
               "naive_dapo.compute_score; verl/trainer/config/reward_model/reward_model.yaml:56 reward_manager: naive")


def compose_experiment(name: str):
    _register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={name}"])
    return cfg


def test_all_presets_present():
    want = {f"paper_1.5b/{m}" for m in ("sppo", "grpo", "ppo", "rloo", "remax")}
    want |= {f"paper_7b/{m}" for m in METHODS}
    assert want <= set(EXPERIMENTS)


def typed_experiment(name: str):
    from sppo_runner.config import to_object
    from sppo_runner.rollout import BACKENDS

    cfg = compose_experiment(name)
    if cfg.rollout.backend not in BACKENDS:  # the native engine may not be registered yet
        cfg.rollout.backend = "hf"
    return to_object(cfg)  # validates too


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_preset_follows_reference_code(name):
    c = typed_experiment(name)
    size = name.split("/")[0].removeprefix("paper_")
    for key, (v15, v7, source) in REFERENCE.items():
        got = getattr(c.algorithm, key)
        got = getattr(got, "value", got)  # enums
        want = v15 if size == "1.5b" else v7
        assert got == want, f"{name}: algorithm.{key} = {got!r}, the reference has {want!r} ({source}, {SCRIPTS[size]})"
    if c.algorithm.name == "ppo":
        assert c.algorithm.value_clip == PPO_VALUE_CLIP[0], PPO_VALUE_CLIP[1]
    rule = getattr(c.verifier.rule, "value", c.verifier.rule)
    assert rule == REWARD_RULE[0], f"{name}: verifier.rule = {rule!r}, the reference's reward is {REWARD_RULE[1]}"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_preset_matches_paper_table(name):
    c = typed_experiment(name)
    size, method = name.split("/")[0].removeprefix("paper_"), name.split("/")[1]
    t = PAPER[size]
    algo, n, kl_in_reward = METHODS[method]
    assert (c.algorithm.name, c.algorithm.samples_per_prompt, c.algorithm.kl_in_reward_coef) == (algo, n, kl_in_reward)
    assert c.algorithm.kl_coef == 0.0 and c.algorithm.entropy_coef == 0.0  # notes: no KL / entropy elsewhere
    assert c.model.path == t["policy"] and c.model.lr == t["actor_lr"] and c.model.weight_decay == t["weight_decay"]
    assert tuple(c.model.betas) == (0.9, 0.999) and c.model.grad_clip == 1.0
    assert c.data.prompts_per_step == t["prompts"]
    assert c.algorithm.mini_batches == t["prompts"] // t["mini_batch"]  # optimizer steps per epoch
    assert c.data.max_prompt_tokens == t["max_prompt"] and c.rollout.max_new_tokens == t["max_response"]
    assert c.rollout.temperature == t["temperature"] == c.eval.temperature
    assert c.trainer.steps == t["steps"]
    assert c.algorithm.clip_ratio_low == c.algorithm.clip_ratio_high == 0.2
    if algo == "sppo":
        assert c.algorithm.dual_clip == 3.0 and c.algorithm.critic_loss.value == "bce"
        assert c.algorithm.critic_warmup_steps == 0 and not c.algorithm.whiten_advantages
        small = method == "sppo_small_critic"
        assert c.critic.path == (R1_1P5B if small else t["critic"])
        assert c.critic.lr == (1e-5 if small else t["critic_lr"])
    if algo == "ppo":
        assert (c.algorithm.gamma, c.algorithm.lam, c.algorithm.critic_warmup_steps) == (1.0, 1.0, 50)
        assert c.critic.lr == 1e-5 and c.critic.path == t["critic"]
    data_file = {"1.5b": None, "7b": "dapo-math-17k_dedup.parquet"}[size]
    assert c.data.path == data_file
    assert size != "1.5b" or c.data.name == "agentica-org/DeepScaleR-Preview-Dataset"


def test_paper_eval_suite():
    _register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("eval_config", overrides=["eval=paper"])
    assert cfg.eval.k == 16 and cfg.eval.temperature == 0.6
    assert dict(cfg.eval.benchmarks) == {
        "aime24": "math__aime_repeated_8x_240.parquet", "aime25": "math__aime2025_2025.parquet",
        "amc23": "math__amc23_2025.parquet", "math500": "math__math_500.parquet",
        "minerva": "math__minerva_math_2025_processed.parquet"}


def test_data_dir_env_var(monkeypatch):
    monkeypatch.setenv("SPPO_DATA_DIR", "/data/math")
    cfg = compose_experiment("paper_7b/sppo")
    assert OmegaConf.to_container(cfg.data, resolve=True)["data_dir"] == "/data/math"


def test_cli_prints_composed_preset():
    env = {**os.environ, "SPPO_DATA_DIR": "/nowhere"}
    out = subprocess.run([sys.executable, "-c", "from sppo_runner.cli import train_main; train_main()",
                          "experiment=paper_7b/sppo_small_critic", "--cfg", "job", "--resolve"],
                         check=False, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    job = OmegaConf.create(out.stdout)
    assert job.critic.path == R1_1P5B and job.critic.lr == 1e-5 and job.model.path == R1_7B
    assert job.data.data_dir == "/nowhere" and job.algorithm.mini_batches == 16


def test_missing_model_offline_gives_clear_error(monkeypatch, tmp_path):
    from sppo_runner.config import ModelConfig
    from sppo_runner.models import ModelNotFoundError, load_policy

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing can be found locally
    with pytest.raises(ModelNotFoundError, match=r"'no-such-org/no-such-model-xyz'.*HF_HUB_OFFLINE"):
        load_policy(ModelConfig(path="no-such-org/no-such-model-xyz"), "cpu")
