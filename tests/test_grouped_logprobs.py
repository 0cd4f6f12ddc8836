"""The learner's shared-prompt forward equals the per-row forward (values and gradients)."""

from __future__ import annotations

import pytest
import torch

from sppo_runner.logprobs import grouped_sequence_logprobs, sequence_logprobs
from sppo_runner.rollout import SamplingParams, make_engine
from sppo_runner.rollout.tiny import tiny_causal_lm, tiny_tokenizer, with_eos_bias


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_grouped_equals_per_row(arch):
    tok = tiny_tokenizer()
    # An EOS bias makes some responses stop early, so right padding is exercised too.
    model = with_eos_bias(tiny_causal_lm(arch, seed=0), tok.eos_token_id, 2.0)
    prompts = [tok(t)["input_ids"] for t in ["1+1=", "What is 12*3? ", "x"]]
    b = make_engine("native", tok).generate(model, prompts, SamplingParams(n=4, max_new_tokens=12),
                                             torch.Generator().manual_seed(0))
    assert (b.response_mask.sum(1) < b.response_mask.shape[1]).any()
    # Shuffle rows so groups are interleaved, as in a shuffled mini-batch.
    perm = torch.randperm(b.size, generator=torch.Generator().manual_seed(1))
    ids, mask, pos = b.full()
    mask_r = b.response_mask.float()[perm]
    model.train()
    lp1, e1 = sequence_logprobs(model, ids[perm], mask[perm], pos[perm], b.response_ids.shape[1], 0.7, True)
    (lp1 * mask_r).sum().backward()
    g1 = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    lp2, e2 = grouped_sequence_logprobs(model, b.prompt_ids[perm], b.prompt_mask[perm], b.response_ids[perm],
                                        b.response_mask[perm], b.group[perm], 0.7, True)
    (lp2 * mask_r).sum().backward()
    assert ((lp1 - lp2) * mask_r).abs().max() < 1e-5
    assert ((e1 - e2) * mask_r).abs().max() < 1e-5
    for p, g in zip(model.parameters(), g1):
        assert torch.allclose(p.grad, g, rtol=1e-4, atol=1e-5)
