"""Model-loading details where the reference code (sustech-nlp/SPPO) fixes a value."""

from __future__ import annotations

import json

import torch

from sppo_runner.config import CriticConfig
from sppo_runner.models import load_critic


def test_critic_head_has_no_dropout(tiny_models):
    # The tiny critic's config, like R1-Distill-Qwen's, does not set classifier_dropout, for
    # which transformers' token-classification head defaults to 0.1. The reference sets 0
    # (verl/workers/fsdp_workers.py:1260), so train-mode values equal the scoring values.
    _, critic_path = tiny_models
    assert "classifier_dropout" not in json.loads((critic_path / "config.json").read_text())
    critic = load_critic(CriticConfig(path=str(critic_path)), torch.device("cpu")).train()
    ids = torch.randint(3, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = critic(input_ids=ids).logits, critic(input_ids=ids).logits
    assert torch.equal(a, b)
