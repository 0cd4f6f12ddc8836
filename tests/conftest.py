"""Shared fixtures: tiny random models (no download) and a config builder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SPPO_SHARED_DATA", REPO.parent / "shared" / "data"))

# Tests run on 2 cores next to each other's worker processes: keep torch to one thread.
torch.set_num_threads(1)


def make_tiny_models(root: Path) -> tuple[Path, Path]:
    """Writes a random tiny Qwen2 policy and a smaller critic with the char tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2ForTokenClassification

    from sppo_runner.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    torch.manual_seed(0)
    common = dict(vocab_size=len(tok), num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                  pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None)
    policy = Qwen2ForCausalLM(Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          tie_word_embeddings=True, **common))
    critic = Qwen2ForTokenClassification(Qwen2Config(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                     num_labels=1, **common))
    paths = root / "policy", root / "critic"
    for model, path in zip((policy, critic), paths):
        model.save_pretrained(path)
        tok.save_pretrained(path)
    return paths


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> tuple[Path, Path]:
    return make_tiny_models(tmp_path_factory.mktemp("tiny"))


def make_config(algorithm: str = "sppo", overrides: list[str] | None = None):
    """Composes conf/ like sppo-run does (Hydra compose API) and returns the typed Config."""
    from hydra import compose, initialize_config_dir

    from sppo_runner.cli import CONF_DIR, _register
    from sppo_runner.config import to_object

    _register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"algorithm={algorithm}", *(overrides or [])])
    cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg
    return to_object(cfg)


def small_run_overrides(tiny_models, steps: int = 2) -> list[str]:
    policy, critic = tiny_models
    return [
        f"model.path={policy}", f"critic.path={critic}", f"trainer.steps={steps}", "trainer.eval_every=0",
        "trainer.checkpoint_every=0", "logger.wandb.mode=disabled", "logger.progress=false",
        "data.prompts_per_step=4", "data.train_size=64", "eval.n_problems=4", "eval.k=2",
        "rollout.max_new_tokens=8", "verifier.workers=1", "trainer.threads=1", "rollout.backend=hf",
    ]
