"""Shared fixtures: tiny random models (no download) and a config builder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("cli_driver.py")  # sppo-run with a patched timing or fault
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


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for subprocess runs of the commands: one thread, short Hydra errors."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", **extra}


def _teacher_forced(model, batch):
    """Logits ``[B, T, V]`` that ``model`` (the learner's forward) gives each response position of
    ``batch``, and one unit in the last place of the model dtype at their largest magnitude."""
    n_resp = batch.response_ids.shape[1]
    input_ids, attention_mask, position_ids = batch.full()
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    logits = out.logits[:, -n_resp - 1 : -1]
    scale = logits.abs().max().float().clamp(min=1e-30)
    return logits.float(), torch.finfo(logits.dtype).eps * torch.exp2(torch.floor(torch.log2(scale)))


def assert_greedy_agrees(model, ours, ref, min_compared: float = 0.5, ulps: float = 1.0) -> float:
    """Greedy tokens of two implementations agree wherever the choice is resolvable.

    Two correct implementations round differently, so where the reference's top-2 logits are
    closer than ``ulps`` units in the last place of the model dtype at the logits' scale, either
    token is a correct greedy choice and the rows may part from there on. Each row's tokens must
    match up to its first such near-tie (the whole row, length included, where there is none).
    Near-ties are found by teacher-forcing the reference's tokens through ``model`` (the learner's
    forward), in the model's own dtype.

    Args:
        model: The causal LM both implementations decoded.
        ours, ref: ``RolloutBatch`` es of greedy decoding of the same prompts.
        min_compared: The fraction of the reference's response tokens that must be compared, so
            that a test cannot pass by finding near-ties everywhere.
        ulps: The top-2 margin, in units in the last place, below which a choice is a near-tie.

    Returns:
        The fraction of response tokens compared.
    """
    logits, ulp = _teacher_forced(model, ref)
    top2 = logits.topk(2, dim=-1).values  # [B, T, 2]
    clear = (top2[..., 0] - top2[..., 1]) >= ulps * ulp  # [B, T]
    lengths, compared = ref.response_mask.sum(1).tolist(), 0
    for r, n in enumerate(lengths):
        ties = (~clear[r, :n]).nonzero()
        k = int(ties[0]) if len(ties) else n
        mine = ours.response_ids[r, : int(ours.response_mask[r].sum())].tolist()
        theirs = ref.response_ids[r, :n].tolist()
        if k == n:
            assert mine == theirs, f"row {r}: greedy tokens differ with no near-tie in the reference"
        else:
            assert mine[:k] == theirs[:k], f"row {r}: tokens differ before the first near-tie (position {k})"
        compared += k
    fraction = compared / max(sum(lengths), 1)
    assert fraction >= min_compared, f"only {fraction:.0%} of tokens before a near-tie: the check says little"
    return fraction


def assert_greedy_choices(model, batch, ulps: float = 2.0) -> None:
    """Every response token of ``batch`` is a greedy choice of ``model``'s teacher-forced forward.

    A token passes when its logit is within ``ulps`` units in the last place (of the model dtype,
    at the logits' scale) of the position's largest logit. Unlike a comparison of two decodes,
    this checks every token, near-ties included, so it cannot pass by comparing few of them.

    Args:
        model: The causal LM that ``batch`` was decoded greedily from.
        batch: A ``RolloutBatch``; its response tokens ``[B, T]`` are checked where the mask is 1.
    """
    logits, ulp = _teacher_forced(model, batch)
    chosen = logits.gather(-1, batch.response_ids.unsqueeze(-1)).squeeze(-1)  # [B, T]
    deficit = (logits.max(-1).values - chosen) / ulp
    bad = (deficit > ulps) & batch.response_mask.bool()
    assert not bad.any(), (
        f"{int(bad.sum())} tokens are not greedy choices; first at (row, position) "
        f"{tuple(bad.nonzero()[0].tolist())}, {float(deficit[bad].max()):.1f} ulps below the top logit"
    )
