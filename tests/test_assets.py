"""The embedded policy and critic shipped in the package (built by scripts/make_starter_policy.py)."""

from __future__ import annotations

import json
import string

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

from sppo_runner import assets
from sppo_runner.tokenizer import build_char_tokenizer

MB = 2**20


def _folder_bytes(path):
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_policy_loads_offline_and_generates():
    path = assets.path("policy")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == "qwen2"
    assert model.config.vocab_size == len(tok)
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.padding_side == "left"
    assert tok(string.printable)["input_ids"] == build_char_tokenizer()(string.printable)["input_ids"]
    assert model.generation_config.eos_token_id == tok.eos_token_id
    enc = tok(["2+3=?\n", "Ann has 4 pens, gets 5. How many?\n"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[0] == 2 and out.shape[1] > enc["input_ids"].shape[1]


def test_critic_loads_offline_with_scalar_head():
    path = assets.path("critic")
    tok = AutoTokenizer.from_pretrained(path)
    critic = AutoModelForTokenClassification.from_pretrained(path)
    policy = AutoModelForCausalLM.from_pretrained(assets.path("policy"))
    assert critic.config.num_labels == 1
    assert critic.config.vocab_size == len(tok)
    n_critic = sum(p.numel() for p in critic.parameters())
    n_policy = sum(p.numel() for p in policy.parameters())
    assert n_critic < n_policy
    enc = tok(["2+3=?\n", "7*8=?\n"], padding=True, return_tensors="pt")
    critic.train()  # no dropout on the head: values are deterministic in train mode too
    with torch.no_grad():
        a = critic(**enc).logits
        b = critic(**enc).logits
    assert a.shape == (2, enc["input_ids"].shape[1], 1)
    assert torch.equal(a, b) and torch.isfinite(a).all()


def test_sizes_and_card():
    pol, cri = assets.path("policy"), assets.path("critic")
    assert _folder_bytes(pol) <= 10 * MB
    assert _folder_bytes(cri) < _folder_bytes(pol)
    assert any(pol.glob("*.safetensors")) and any(cri.glob("*.safetensors"))
    card = json.loads((pol / "card.json").read_text())
    assert 0.25 <= card["heldout_greedy_accuracy"] <= 0.60
    assert 0.0 < card["heldout_sampled_mean_accuracy"] <= card["heldout_greedy_accuracy"] + 0.05
    assert card["n_heldout"] == 256 and card["heldout_sampled_k"] == 4
    for key in ("command", "seed", "difficulty", "steps", "wall_seconds", "policy_params",
                "critic_params", "versions"):
        assert key in card, key
    assert {"torch", "transformers"} <= set(card["versions"])


def test_missing_asset_names_regenerate_command(monkeypatch, tmp_path):
    monkeypatch.setattr(assets, "_ROOT", tmp_path)
    with pytest.raises(FileNotFoundError, match="make_starter_policy.py"):
        assets.path("policy")
    with pytest.raises(ValueError):
        assets.path("reference")


def test_activation_checkpointing_without_deprecation_warnings():
    """model.gradient_checkpointing=true turns it on for both models, under transformers' current names."""
    import warnings

    from sppo_runner.config import CriticConfig, ModelConfig
    from sppo_runner.models import checkpointing_on, load_critic, load_policy

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        policy = load_policy(ModelConfig(gradient_checkpointing=True), torch.device("cpu"))
        critic = load_critic(CriticConfig(gradient_checkpointing=True), torch.device("cpu"))
        assert checkpointing_on(policy) and checkpointing_on(critic)
        assert not checkpointing_on(load_policy(ModelConfig(), torch.device("cpu")))
