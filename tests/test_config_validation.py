"""Settings that were accepted and ignored or absurd now fail at start (issue #12, items 3, 4, 11)."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import make_config, small_run_overrides
from sppo_runner.config import ConfigError
from sppo_runner.models import ModelNotFoundError, resolve_device, resolve_path


@pytest.mark.parametrize("override,message", [
    ("+trainer.stepz=5", "'trainer.stepz': not a setting of TrainerConfig; did you mean 'trainer.steps'?"),
    ("+logger.wandb.nmae=x", "'logger.wandb.nmae': not a setting of WandbConfig; did you mean 'logger.wandb.name'?"),
    ("+lr=1e-5", "'lr': not a setting of Config"),
    ("trainer.max_seconds=-5", "'trainer.max_seconds': got -5.0; allowed: >= 0 (0 = no budget)"),
    ("trainer.max_samples=-1", "'trainer.max_samples': got -1; allowed: >= 0 (0 = no budget)"),
    ("trainer.checkpoint_every=-1", "'trainer.checkpoint_every': got -1; allowed: >= 0 (0 = only at the end)"),
    ("trainer.eval_every=-1", "'trainer.eval_every': got -1; allowed: >= 0"),
    ("trainer.threads=-4", "'trainer.threads': got -4; allowed: >= 0 (0 = all cores)"),
    ("trainer.max_seconds=nan", "'trainer.max_seconds': got nan"),
    ("eval.n_problems=0", "'eval.n_problems': got 0; allowed: >= 1"),
    ("eval.n_problems=-3", "'eval.n_problems': got -3; allowed: >= 1"),
    ("rollout.top_k=-1", "'rollout.top_k': got -1; allowed: >= 0 (0 = off)"),
    ("verifier.timeout_s=0", "'verifier.timeout_s': got 0.0; allowed: > 0 seconds"),
    ("model.betas=[0.9]", "'model.betas': got [0.9]; allowed: two numbers in [0, 1)"),
    ("critic.betas=[0.9,1.5]", "'critic.betas': got [0.9, 1.5]"),
    ("trainer.keep_checkpoints=0", "'trainer.keep_checkpoints': got 0; allowed: >= 1"),
    ("trainer.device=gpu", "'trainer.device': got 'gpu'; allowed values: auto, cpu, cuda, cuda:N"),
])
def test_bad_settings_fail_naming_key_value_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        make_config("sppo", [override])
    assert str(err.value).startswith("config error at ") and message in str(err.value)


def test_free_form_and_preset_keys_still_compose():
    assert make_config("sppo", ["+eval.benchmarks.aime=aime.parquet"]).eval.benchmarks == {"aime": "aime.parquet"}
    assert make_config("sppo", ["logger.wandb.name=my-run"]).logger.wandb.name == "my-run"
    make_config("sppo", ["experiment=paper_7b/sppo"])


def test_a_cuda_device_the_machine_lacks_is_a_config_error():
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError, match=r"'trainer.device': got 'cuda:99', but this machine has"):
        resolve_device("cuda:99")
    if n == 0:
        with pytest.raises(ConfigError, match="no CUDA device.*allowed here: auto, cpu"):
            resolve_device("cuda")


def test_prompts_longer_than_the_context_are_refused(tiny_models, tmp_path):
    from sppo_runner.evaluation_cli import evaluate_policy
    from sppo_runner.session import build_session

    cfg = make_config("sppo", small_run_overrides(tiny_models) + ["data.max_prompt_tokens=2048"])
    expect = r"data.max_prompt_tokens \(2048\) \+ rollout.max_new_tokens \(8\) = 2056 tokens exceed the policy's 256"
    with pytest.raises(ConfigError, match=expect):
        build_session(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match=expect):  # sppo-eval too
        evaluate_policy(cfg, tmp_path / "eval")
    # eval.max_new_tokens counts when it is the longer; no limit: the longest prompt loaded counts.
    cfg = make_config("sppo", small_run_overrides(tiny_models) + ["data.max_prompt_tokens=0", "eval.max_new_tokens=250"])
    with pytest.raises(ConfigError, match=r"the longest prompt .* \+ eval.max_new_tokens \(250\) = \d+ tokens exceed"):
        build_session(cfg, tmp_path / "run")


def test_the_critic_context_counts_what_the_critic_reads(tiny_models, tmp_path):
    from sppo_runner.session import build_session

    policy, critic = tiny_models
    short = tmp_path / "short-critic"
    shutil.copytree(critic, short)
    config = json.loads((short / "config.json").read_text())
    (short / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 200}))
    over = small_run_overrides(tiny_models) + [f"critic.path={short}"]
    # SPPO's critic reads only the prompt: 230 prompt tokens do not fit its 200 positions.
    with pytest.raises(ConfigError, match=r"data.max_prompt_tokens \(230\) = 230 tokens exceed the critic's 200"):
        build_session(make_config("sppo", over + ["data.max_prompt_tokens=230"]), tmp_path / "a")
    # PPO's token critic reads the response as well: 195 + 8 > 200.
    with pytest.raises(ConfigError, match=r"\(195\) \+ rollout.max_new_tokens \(8\) = 203 tokens exceed the critic's"):
        build_session(make_config("ppo", over + ["data.max_prompt_tokens=195"]), tmp_path / "b")
    s = build_session(make_config("sppo", over + ["data.max_prompt_tokens=195"]), tmp_path / "c")  # 195 <= 200
    s.close()


def test_a_run_or_critic_folder_as_model_path_names_the_folder_to_use(tiny_models, tmp_path):
    policy, critic = tiny_models
    run_dir = tmp_path / "run"
    shutil.copytree(policy, run_dir / "final" / "policy")
    shutil.copytree(critic, run_dir / "final" / "critic")
    with pytest.raises(ModelNotFoundError, match=rf"model.path={run_dir} is a run .* use model.path={run_dir}/final/policy"):
        resolve_path(str(run_dir), "policy")
    with pytest.raises(ModelNotFoundError, match=rf"use critic.path={run_dir}/final/critic"):
        resolve_path(str(run_dir), "critic")
    with pytest.raises(ModelNotFoundError, match=rf"use model.path={run_dir}/final/policy"):
        resolve_path(str(run_dir / "final"), "policy")  # a checkpoint folder looks the same
    with pytest.raises(ModelNotFoundError, match=rf"is a critic .*the policy beside it is {run_dir}/final/policy"):
        resolve_path(str(run_dir / "final" / "critic"), "policy")
    assert resolve_path(str(run_dir / "final" / "policy"), "policy") == str(run_dir / "final" / "policy")
