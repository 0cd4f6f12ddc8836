"""The learner's loss weighting: loss groups (the reference's per-micro-batch token-mean),
the whole-mini-batch token-mean, and the constant length of seq-mean-token-sum-norm.

Gradients are read at the optimizer step of a real :class:`Learner` on a tiny random model,
so the memory micro-batching and the normalizer slicing are exercised as in training.
"""

from __future__ import annotations

import pytest
import torch
from conftest import make_config
from transformers import Qwen2Config, Qwen2ForTokenClassification

from sppo_runner.algorithms import ALGORITHMS
from sppo_runner.batch import RolloutBatch, ScoredBatch
from sppo_runner.critics import TokenCritic
from sppo_runner.learner import Learner
from sppo_runner.logprobs import sequence_logprobs
from sppo_runner.rollout.tiny import tiny_causal_lm

LENGTHS = [1, 3, 10, 7, 2, 5]  # response lengths; the batch is 10 wide
MAX_NEW_TOKENS = 16  # the length cap (rollout.max_new_tokens), wider than the batch
VOCAB = 103


def _policy() -> torch.nn.Module:
    model = tiny_causal_lm("qwen2", vocab_size=VOCAB, hidden=32, layers=2, heads=2, kv_heads=1, intermediate=64,
                           seed=0)
    return model.train()


def _rollout(seed: int = 0) -> RolloutBatch:
    g = torch.Generator().manual_seed(seed)
    B, P, T = len(LENGTHS), 4, max(LENGTHS)
    mask = (torch.arange(T)[None, :] < torch.tensor(LENGTHS)[:, None]).long()
    response = torch.randint(3, VOCAB, (B, T), generator=g) * mask
    return RolloutBatch(prompt_ids=torch.randint(3, VOCAB, (B, P), generator=g), prompt_mask=torch.ones(B, P).long(),
                        response_ids=response, response_mask=mask, logprobs=torch.zeros(B, T), texts=[""] * B,
                        group=torch.arange(B))


def _scored(policy: torch.nn.Module, noise: float, seed: int = 0) -> ScoredBatch:
    """Old log-probs = the model's own plus ``noise`` (ratios off 1, some clipped); random A per sequence."""
    roll = _rollout(seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        lp, _ = sequence_logprobs(policy, *roll.full(), roll.response_ids.shape[1])
    mask = roll.response_mask.float()
    roll.logprobs = (lp + noise * torch.randn(lp.shape, generator=g)) * mask
    adv = torch.randn(roll.size, 1, generator=g) * mask
    return ScoredBatch(roll, torch.zeros(roll.size), adv)


def _learner(policy, algo="grpo", critic=None, **settings) -> tuple[Learner, list[torch.Tensor]]:
    """A learner whose optimizer step records the gradient (flattened) instead of stepping."""
    cfg = make_config(algo, [f"rollout.max_new_tokens={MAX_NEW_TOKENS}", "algorithm.mini_batches=1"])
    for key, value in settings.items():
        section, name = key.split("__")
        setattr(getattr(cfg, section), name, value)
    learner = Learner(ALGORITHMS[algo], cfg, policy, critic, None, seed=0)
    grads: list[torch.Tensor] = []

    def record(model, opt, clip, who):
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]).clone())
        opt.zero_grad(set_to_none=True)
        return 0.0

    learner._step = record
    return learner, grads


def _actor_grad(policy, batch, agg, loss_micro_batch, micro_batch_size) -> tuple[torch.Tensor, dict]:
    learner, grads = _learner(policy, algorithm__loss_agg=agg, algorithm__loss_micro_batch=loss_micro_batch,
                              model__micro_batch_size=micro_batch_size)
    stats = learner.update_actor(batch)
    assert len(grads) == 1
    return grads[0], stats


def _old_token_mean_grad(policy, batch) -> torch.Tensor:
    """The pre-loss-group result, computed directly: one forward, clipped + dual-clipped token
    loss, masked mean over every token of the mini-batch."""
    roll = batch.rollout
    policy.zero_grad(set_to_none=True)
    logp, _ = sequence_logprobs(policy, *roll.full(), roll.response_ids.shape[1])
    mask = roll.response_mask.float()
    ratio = torch.exp((logp - roll.logprobs) * mask)
    a = batch.advantages
    clipped = torch.maximum(-a * ratio, -a * ratio.clamp(0.8, 1.2))
    tok = torch.where(a < 0, torch.minimum(clipped, -a * 3.0), clipped)
    ((tok * mask).sum() / mask.sum()).backward()
    grad = torch.cat([p.grad.flatten() for p in policy.parameters()]).clone()
    policy.zero_grad(set_to_none=True)
    return grad


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-4, atol=1e-7)


def test_loss_micro_batch_one_equals_seq_mean_token_mean():
    policy = _policy()
    batch = _scored(policy, noise=0.3)
    seq_mean, s1 = _actor_grad(policy, batch, "seq-mean-token-mean", 0, 0)
    for micro in (0, 1, 4):  # memory micro-batches that hold, match or straddle the loss groups
        grad, s2 = _actor_grad(policy, batch, "token-mean", 1, micro)
        assert _close(grad, seq_mean), f"memory micro-batch {micro}"
        assert s2["actor/pg_loss"] == pytest.approx(s1["actor/pg_loss"], rel=1e-5)
    # The weighting matters here: the whole-mini-batch token-mean gives another gradient.
    token_mean, _ = _actor_grad(policy, batch, "token-mean", 0, 0)
    assert (token_mean - seq_mean).norm() > 0.05 * seq_mean.norm()


def test_whole_minibatch_token_mean_is_unchanged():
    policy = _policy()
    batch = _scored(policy, noise=0.3)
    old = _old_token_mean_grad(policy, batch)
    for loss_micro_batch, micro in ((0, 0), (0, 4), (len(LENGTHS), 4), (100, 1)):
        grad, _ = _actor_grad(policy, batch, "token-mean", loss_micro_batch, micro)
        assert _close(grad, old), (loss_micro_batch, micro)


def test_sum_norm_divides_policy_loss_by_max_new_tokens():
    policy = _policy()
    batch = _scored(policy, noise=0.0)  # ratio 1: the token loss is -A
    learner, _ = _learner(policy, algorithm__loss_agg="seq-mean-token-sum-norm", model__micro_batch_size=4)
    stats = learner.update_actor(batch)
    a = batch.advantages[:, 0]
    expect = -(a * torch.tensor(LENGTHS)).sum().item() / (len(LENGTHS) * MAX_NEW_TOKENS)
    assert stats["actor/pg_loss"] == pytest.approx(expect, rel=1e-5)


def test_sum_norm_divides_value_loss_by_max_new_tokens():
    policy = _policy()
    torch.manual_seed(0)
    critic = Qwen2ForTokenClassification(Qwen2Config(vocab_size=VOCAB, hidden_size=16, intermediate_size=32,
                                                     num_hidden_layers=1, num_attention_heads=2,
                                                     num_key_value_heads=1, num_labels=1, classifier_dropout=0.0)).train()
    batch = _scored(policy, noise=0.0)
    mask = batch.rollout.response_mask.float()
    with torch.no_grad():
        values = TokenCritic().values(critic, batch.rollout)
    batch.values = values
    batch.returns = torch.rand(values.shape, generator=torch.Generator().manual_seed(3)) * mask
    learner, grads = _learner(policy, "ppo", critic, algorithm__loss_agg="seq-mean-token-sum-norm",
                              critic__micro_batch_size=4)
    stats = learner.update_critic(batch)
    # First step: predictions equal the old values, so clipping changes nothing.
    expect = 0.5 * (((values - batch.returns) ** 2) * mask).sum().item() / (len(LENGTHS) * MAX_NEW_TOKENS)
    assert stats["critic/loss"] == pytest.approx(expect, rel=1e-5)
    assert len(grads) == 1


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_remax_scores_kl_shaped_reward_to_go(estimator):
    # The learner's score(): KL-in-reward with the chosen estimator, then ReMax's reward-to-go.
    policy, ref = _policy(), tiny_causal_lm("qwen2", vocab_size=VOCAB, hidden=32, layers=2, heads=2, kv_heads=1,
                                            intermediate=64, seed=1).eval()
    roll = _scored(policy, noise=0.0).rollout
    learner, _ = _learner(policy, "remax", algorithm__kl_in_reward_coef=0.5,
                          algorithm__kl_in_reward_estimator=estimator, algorithm__kl_estimator="k3_clamped")
    learner.ref = ref
    rewards, baseline = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    scored = learner.score(roll, rewards, baseline)
    with torch.no_grad():
        ref_lp, _ = sequence_logprobs(ref, *roll.full(), roll.response_ids.shape[1])
    mask = roll.response_mask.float()
    d = roll.logprobs - ref_lp
    kl = d if estimator == "k1" else torch.exp(-d) - 1 + d
    for i, n in enumerate(LENGTHS):
        shaped = -0.5 * kl[i, :n]
        shaped[-1] += rewards[i]
        to_go = torch.tensor([shaped[t:].sum() for t in range(n)])
        assert torch.allclose(scored.advantages[i, :n], to_go - baseline[i], atol=1e-5)
    assert (scored.advantages * (1 - mask)).abs().max() == 0


def test_negative_loss_micro_batch_is_a_config_error():
    from sppo_runner.config import ConfigError

    with pytest.raises(ConfigError, match="algorithm.loss_micro_batch"):
        make_config("sppo", ["algorithm.loss_micro_batch=-1"])
