"""The ``hf`` rollout backend on a tiny random Qwen2 built in-process."""

from __future__ import annotations

import pytest
import torch

from sppo_runner.logprobs import sequence_logprobs
from sppo_runner.rollout import BACKENDS, SamplingParams, make_engine
from sppo_runner.rollout.hf import HFEngine
from sppo_runner.rollout.tiny import tiny_causal_lm, tiny_tokenizer, with_eos_bias

MAX_NEW = 16


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return with_eos_bias(tiny_causal_lm("qwen2", seed=0), tok.eos_token_id, 2.0)


@pytest.fixture(scope="module")
def prompts(tok):
    texts = ["1+1=", "What is 12*3? ", "x", "Solve: 7-2 ="]
    return [tok(t)["input_ids"] for t in texts]


def run(engine, model, prompts, seed=0, **kw):
    params = SamplingParams(**{"n": 3, "max_new_tokens": MAX_NEW, **kw})
    return engine.generate(model, prompts, params, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "kw",
    [
        {"temperature": 1.0},
        {"temperature": 0.7, "top_p": 0.9, "top_k": 20},
        {"temperature": 0.0},
    ],
)
def test_logprobs_match_learner(tok, model, prompts, kw):
    batch = run(HFEngine(tok), model, prompts, **kw)
    lengths = batch.response_mask.sum(1)
    if kw["temperature"] > 0:
        # Early EOS happened and rows differ in length, so right padding is exercised.
        assert (lengths < MAX_NEW).any() and lengths.min() < lengths.max(), lengths
    with torch.no_grad():
        lp, _ = sequence_logprobs(
            model, *batch.full(), batch.response_ids.shape[1], kw["temperature"]
        )
    mask = batch.response_mask.bool()
    assert (lp - batch.logprobs)[mask].abs().max().item() <= 1e-4
    assert (batch.logprobs[~mask] == 0).all()


def test_shapes_and_masks(tok, model, prompts):
    batch = run(HFEngine(tok), model, prompts)
    b, n = batch.size, 3
    assert b == len(prompts) * n
    assert batch.group.tolist() == [i // n for i in range(b)]
    # Left padding: each prompt's real tokens sit flush right, copies identical.
    for i, p in enumerate(prompts):
        for r in range(i * n, i * n + n):
            assert batch.prompt_ids[r, -len(p) :].tolist() == p
            assert batch.prompt_mask[r].sum().item() == len(p)
            assert batch.prompt_mask[r, -len(p) :].all()
    lengths = batch.response_mask.sum(1)
    assert batch.response_ids.shape[1] == lengths.max().item() <= MAX_NEW
    # The mask is a prefix; EOS ends the early rows and appears nowhere before.
    assert (
        batch.response_mask
        == (torch.arange(batch.response_ids.shape[1]) < lengths[:, None]).long()
    ).all()
    for r in range(b):
        row = batch.response_ids[r, : lengths[r]].tolist()
        assert tok.eos_token_id not in row[:-1]
        if lengths[r] < MAX_NEW:
            assert row[-1] == tok.eos_token_id
        assert (batch.response_ids[r, lengths[r] :] == tok.pad_token_id).all()
        assert batch.texts[r] == tok.decode(row, skip_special_tokens=True)


def test_deterministic_and_leaves_global_rng(tok, model, prompts):
    engine = HFEngine(tok)
    state = torch.get_rng_state()
    a = run(engine, model, prompts, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    b = run(engine, model, prompts, seed=5)
    c = run(engine, model, prompts, seed=6)
    assert torch.equal(a.response_ids, b.response_ids) and torch.equal(
        a.logprobs, b.logprobs
    )
    assert a.texts == b.texts
    assert not torch.equal(a.response_ids[:, :4], c.response_ids[:, :4])


def test_stop_strings(tok, prompts):
    model = tiny_causal_lm("qwen2", seed=1)
    engine = HFEngine(tok)
    free = run(engine, model, prompts, seed=3)
    stop = free.texts[0][3]  # one char token: ends row 0 at (or before) token 4
    cut = run(engine, model, prompts, seed=3, stop=(stop,))
    for r in range(cut.size):
        full = free.texts[r]
        if stop in full:
            k = full.index(stop) + len(stop)
            assert cut.texts[r] == full[:k]
            assert cut.response_mask[r].sum().item() == k
        else:
            assert cut.texts[r] == full
    assert cut.response_mask[0].sum().item() <= 4


def test_make_engine(tok):
    assert "hf" in BACKENDS
    assert isinstance(make_engine("hf", tok), HFEngine)
    with pytest.raises(ValueError, match="unknown rollout backend"):
        make_engine("nope", tok)
