"""Hand-computed advantages and losses for every estimator and loss piece."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from sppo_runner.algorithms import ALGORITHMS, AlgorithmSpec, register
from sppo_runner.algorithms.advantages import (
    AdvantageInputs,
    gae,
    greedy_baseline,
    group_normalized,
    leave_one_out,
    prompt_bandit,
    token_rewards_from,
    whiten,
)
from sppo_runner.algorithms.losses import (
    Normalizer,
    aggregate,
    bce_value_loss,
    clipped_policy_loss,
    kl_penalty,
    mse_value_loss,
)

CFG = SimpleNamespace(gamma=1.0, lam=1.0, norm_by_std=True, adv_eps=1e-6, whiten_advantages=False,
                      critic_loss="mse")


def _inputs(rewards, mask, group=None, values=None, baseline=None):
    mask = torch.tensor(mask, dtype=torch.float32)
    r = torch.tensor(rewards, dtype=torch.float32)
    g = torch.tensor(group if group is not None else list(range(len(rewards))))
    return AdvantageInputs(token_rewards_from(r, mask), mask, g, values, baseline)


def test_token_rewards_on_last_token():
    out = token_rewards_from(torch.tensor([1.0, 0.5]), torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert out.tolist() == [[0, 1, 0], [0, 0, 0.5]]


def test_sppo_advantage_hand_computed():
    # V = sigmoid(logit): logit 0 -> 0.5, logit ln(3) -> 0.75.
    values = torch.tensor([0.0, math.log(3.0)])
    inp = _inputs([1.0, 0.0], [[1, 1, 1], [1, 1, 0]], values=values)
    adv, returns = prompt_bandit(inp, CFG)
    assert torch.allclose(adv, torch.tensor([[0.5, 0.5, 0.5], [-0.75, -0.75, 0.0]]))
    assert returns.tolist() == [1.0, 0.0]  # BCE target is the raw reward


def test_sppo_advantage_is_not_whitened():
    cfg = SimpleNamespace(**{**vars(CFG), "whiten_advantages": True})
    inp = _inputs([1.0, 1.0], [[1], [1]], values=torch.zeros(2))
    adv, _ = prompt_bandit(inp, cfg)
    assert adv.flatten().tolist() == [0.5, 0.5]


def _gae_loop(rewards, values, mask, gamma, lam):
    """Reference GAE: a plain per-row loop over valid tokens only."""
    B, T = rewards.shape
    adv = torch.zeros(B, T)
    for b in range(B):
        n = int(mask[b].sum())
        last = 0.0
        for t in reversed(range(n)):
            next_v = values[b, t + 1] if t + 1 < n else 0.0
            delta = rewards[b, t] + gamma * next_v - values[b, t]
            last = delta + gamma * lam * last
            adv[b, t] = last
    return adv


@pytest.mark.parametrize("gamma,lam", [(1.0, 1.0), (0.9, 0.95), (1.0, 0.5)])
def test_gae_matches_loop(gamma, lam):
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.float32)
    r = torch.rand(3, 5, generator=g) * mask
    v = torch.randn(3, 5, generator=g)
    cfg = SimpleNamespace(**{**vars(CFG), "gamma": gamma, "lam": lam})
    adv, returns = gae(AdvantageInputs(r, mask, torch.arange(3), v), cfg)
    ref = _gae_loop(r, v * mask, mask, gamma, lam)
    assert torch.allclose(adv, ref, atol=1e-6)
    assert torch.allclose(returns, (ref + v) * mask, atol=1e-6)


def test_gae_gamma_lambda_one_is_reward_minus_value():
    mask = torch.tensor([[1.0, 1.0, 1.0]])
    v = torch.tensor([[0.2, 0.4, 0.6]])
    adv, _ = gae(_inputs([1.0], mask.tolist(), values=v), CFG)
    assert torch.allclose(adv, torch.tensor([[0.8, 0.6, 0.4]]))


def test_grpo_hand_computed_and_degenerate_group():
    # Group 0: rewards 1, 0, 1, 0 -> mean .5, unbiased std sqrt(1/3). Group 1 all equal -> 0.
    inp = _inputs([1, 0, 1, 0, 1, 1, 1, 1], [[1]] * 8, group=[0, 0, 0, 0, 1, 1, 1, 1])
    adv, returns = group_normalized(inp, CFG)
    s = math.sqrt(1 / 3)
    expect = [0.5 / s, -0.5 / s, 0.5 / s, -0.5 / s, 0, 0, 0, 0]
    assert torch.allclose(adv.flatten(), torch.tensor(expect), atol=1e-4)
    assert returns is None


def test_dr_grpo_drops_std():
    cfg = SimpleNamespace(**{**vars(CFG), "norm_by_std": False})
    adv, _ = group_normalized(_inputs([1, 0, 0, 0], [[1]] * 4, group=[0, 0, 0, 0]), cfg)
    assert torch.allclose(adv.flatten(), torch.tensor([0.75, -0.25, -0.25, -0.25]))


def test_rloo_hand_computed():
    adv, _ = leave_one_out(_inputs([1, 0, 0, 1, 1, 0], [[1, 1]] * 6, group=[0, 0, 0, 1, 1, 1]), CFG)
    # Sample 0: 1 - mean(0, 0) = 1; sample 1: 0 - mean(1, 0) = -0.5; sample 3: 1 - mean(1, 0) = 0.5.
    assert torch.allclose(adv[:, 0], torch.tensor([1.0, -0.5, -0.5, 0.5, 0.5, -1.0]))


def test_remax_uses_greedy_baseline():
    adv, _ = greedy_baseline(_inputs([1, 0, 1], [[1]] * 3, baseline=torch.tensor([1.0, 0.0, 0.0])), CFG)
    assert adv.flatten().tolist() == [0.0, 0.0, 1.0]


def test_remax_with_kl_shaped_rewards_is_reward_to_go_minus_baseline():
    # Row 0: R = 1 on the last of 3 tokens, per-token KL penalties 0.1, 0.2, 0.3 already subtracted.
    # Row 1: R = 0, 2 tokens then padding, penalties 0.5, 0.25.
    token_rewards = torch.tensor([[-0.1, -0.2, 1 - 0.3], [-0.5, -0.25, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    inp = AdvantageInputs(token_rewards, mask, torch.arange(2), baseline_rewards=torch.tensor([0.5, 1.0]))
    adv, _ = greedy_baseline(inp, CFG)
    # Returns-to-go: 0.4, 0.5, 0.7 and -0.75, -0.25; minus baselines 0.5 and 1.
    expect = torch.tensor([[-0.1, 0.0, 0.2], [-1.75, -1.25, 0.0]])
    assert torch.allclose(adv, expect, atol=1e-6)
    # The old estimator gave every token the total R - b: 0.4 - 0.5 = -0.1 on row 0.
    assert not torch.allclose(adv[0], torch.full((3,), -0.1))


def test_clipped_loss_hand_computed():
    # Ratios e^0.5 = 1.6487 (clipped at 1.2 for A>0) and e^-0.5 = 0.6065 (clipped at 0.8 for A<0).
    logp = torch.tensor([[0.5, -0.5]])
    old = torch.zeros(1, 2)
    mask = torch.ones(1, 2)
    adv_pos = torch.tensor([[1.0, 1.0]])
    loss, stats = clipped_policy_loss(logp, old, adv_pos, mask, 0.2, 0.2, 3.0, "token-mean", Normalizer.of(mask))
    # Token 1: max(-1.6487, -1.2) = -1.2; token 2: max(-0.6065, -0.8) = -0.6065.
    assert loss.item() == pytest.approx((-1.2 - math.exp(-0.5)) / 2, abs=1e-5)
    assert stats["clipfrac"].item() == pytest.approx(0.5)


def test_dual_clip_caps_negative_advantage_loss():
    logp = torch.tensor([[math.log(5.0)]])  # ratio 5
    old, mask, adv = torch.zeros(1, 1), torch.ones(1, 1), torch.tensor([[-1.0]])
    loss, stats = clipped_policy_loss(logp, old, adv, mask, 0.2, 0.2, 3.0, "token-mean", Normalizer.of(mask))
    # Clipped loss would be max(5, 1.2) = 5; dual-clip caps it at -A * c = 3.
    assert loss.item() == pytest.approx(3.0)
    assert stats["dual_clipfrac"].item() == 1.0
    loss_nodual, _ = clipped_policy_loss(logp, old, adv, mask, 0.2, 0.2, 0.0, "token-mean", Normalizer.of(mask))
    assert loss_nodual.item() == pytest.approx(5.0, rel=1e-5)


@pytest.mark.parametrize("a,dual,expect", [(0.0, 3.0, 0.0), (-1.0, 3.0, 3.0), (-1.0, 0.0, math.exp(20.0)),
                                            (1.0, 3.0, -1.2), (0.0, 0.0, 0.0)])
def test_huge_log_ratio_gives_finite_loss_and_gradient(a, dual, expect):
    # A float32 log-ratio of 100 (a stale or broken batch): exp(100) overflows to inf.
    assert torch.isinf(torch.exp(torch.tensor(100.0)))
    logp = torch.tensor([[100.0, 0.0]], requires_grad=True)
    old, mask = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])
    adv = torch.full((1, 2), a)
    loss, stats = clipped_policy_loss(logp, old, adv, mask, 0.2, 0.2, dual, "token-mean", Normalizer.of(mask))
    loss.backward()
    # The log-ratio is clamped to 20 before exp: finite loss, and no gradient past the clamp.
    assert loss.item() == pytest.approx(expect, rel=1e-6)
    assert torch.isfinite(logp.grad).all() and logp.grad.abs().sum() == 0
    assert all(torch.isfinite(v) for v in stats.values())
    assert stats["ppo_kl"].item() == pytest.approx(-20.0)


def test_clip_higher_uses_separate_epsilons():
    logp = torch.tensor([[math.log(1.5)]])
    mask, adv = torch.ones(1, 1), torch.ones(1, 1)
    loss, _ = clipped_policy_loss(logp, torch.zeros(1, 1), adv, mask, 0.2, 0.28, 3.0, "token-mean", Normalizer.of(mask))
    assert loss.item() == pytest.approx(-1.28)


def test_aggregation_modes():
    # The batch is 3 tokens wide (its longest response) but the length cap is 5.
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    norm = Normalizer.of(mask, norm_len=5)
    assert aggregate(loss, mask, "token-mean", norm).item() == pytest.approx(10 / 4)
    assert aggregate(loss, mask, "seq-mean-token-mean", norm).item() == pytest.approx((2 + 4) / 2)
    # Dr. GRPO: token sums over the constant 5, not over the batch's width 3 (10 / 6 before the fix).
    assert aggregate(loss, mask, "seq-mean-token-sum-norm", norm).item() == pytest.approx(10 / (2 * 5))
    with pytest.raises(ValueError, match="constant norm_len"):
        aggregate(loss, mask, "seq-mean-token-sum-norm", Normalizer.of(mask))


def test_value_losses_sum_norm_use_constant_length():
    v, old, ret = torch.tensor([[1.0, 1.0], [3.0, 0.0]]), torch.zeros(2, 2), torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    norm = Normalizer.of(mask, norm_len=4)
    # Squared errors 1, 1, 4 (sum 6): 0.5 * 6 / (2 sequences * 4).
    assert mse_value_loss(v, old, ret, mask, 0.0, norm, "seq-mean-token-sum-norm").item() == pytest.approx(0.375)
    logits, targets = torch.zeros(2, 2), torch.ones(2, 2)
    # BCE of logit 0 is log 2 per token; 3 tokens over 2 * 4.
    bce = bce_value_loss(logits, targets, mask, norm, "seq-mean-token-sum-norm").item()
    assert bce == pytest.approx(3 * math.log(2) / 8, abs=1e-6)


@pytest.mark.parametrize("group_size", [0, 1, 2, 4])
def test_micro_batch_shares_sum_to_minibatch_loss(group_size):
    g = torch.Generator().manual_seed(1)
    logp, old, adv = (torch.randn(6, 4, generator=g) * 0.3 for _ in range(3))
    mask = (torch.rand(6, 4, generator=g) > 0.3).float()
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        norm = Normalizer.of(mask, norm_len=8, group_size=group_size)
        full, _ = clipped_policy_loss(logp, old, adv, mask, 0.2, 0.2, 3.0, mode, norm)
        parts = sum(clipped_policy_loss(logp[i:i + 3], old[i:i + 3], adv[i:i + 3], mask[i:i + 3], 0.2, 0.2, 3.0,
                                        mode, norm.select(torch.arange(i, i + 3)))[0] for i in (0, 3))
        assert parts.item() == pytest.approx(full.item(), abs=1e-6)


def _row_shares(lengths, mode, group_size):
    """d loss / d (every token's loss of row i), summed over the row: each row's share of the loss."""
    T = max(lengths)
    mask = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).float()
    loss = torch.ones(len(lengths), T, requires_grad=True)
    aggregate(loss, mask, mode, Normalizer.of(mask, norm_len=T, group_size=group_size)).backward()
    return (loss.grad * mask).sum(-1)


def test_loss_shares_of_long_and_short_responses():
    lengths = [100, 1000, 4000, 8000]
    # token-mean over the mini-batch: shares are proportional to length (100 / 13100, ...).
    shares = _row_shares(lengths, "token-mean", 0)
    assert torch.allclose(shares, torch.tensor(lengths) / 13100.0)
    assert [round(x, 3) for x in shares.tolist()] == [0.008, 0.076, 0.305, 0.611]
    # The reference's token-mean per micro-batch of 1 sequence: every sequence weighs 1/4.
    assert torch.allclose(_row_shares(lengths, "token-mean", 1), torch.full((4,), 0.25))
    assert torch.allclose(_row_shares(lengths, "seq-mean-token-mean", 0), torch.full((4,), 0.25))
    # Groups of 2: each group weighs 1/2, split by length inside the group.
    expect = torch.tensor([100 / 1100, 1000 / 1100, 4000 / 12000, 8000 / 12000]) / 2
    assert torch.allclose(_row_shares(lengths, "token-mean", 2), expect)
    # One group holding the whole mini-batch is the plain token-mean.
    assert torch.allclose(_row_shares(lengths, "token-mean", 4), shares)


def test_uneven_last_loss_group_weighs_as_a_group():
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    norm = Normalizer.of(mask, norm_len=2, group_size=2)  # groups {0, 1} (3 tokens) and {2} (2 tokens)
    assert (norm.n_groups, norm.group_tokens.tolist(), norm.group_seqs.tolist()) == (2.0, [3, 3, 2], [2, 2, 1])
    loss = torch.tensor([[1.0, 2.0], [3.0, 9.0], [4.0, 6.0]])
    # ((1 + 2 + 3) / 3 + (4 + 6) / 2) / 2 groups.
    assert aggregate(loss, mask, "token-mean", norm).item() == pytest.approx((2 + 5) / 2)


def test_bce_critic_loss_hand_computed():
    logits, target = torch.tensor([0.0, math.log(3.0)]), torch.tensor([1.0, 0.0])
    n = Normalizer(2, 2, 1)
    loss = bce_value_loss(logits, target, torch.ones(2), n)
    # -log(0.5) and -log(1 - 0.75), averaged.
    assert loss.item() == pytest.approx((math.log(2) + math.log(4)) / 2, abs=1e-6)


def test_clipped_value_loss():
    v, old, ret, mask = torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([[2.0]]), torch.ones(1, 1)
    # Unclipped error (1-2)^2 = 1; clipped v = 0.5 gives (0.5-2)^2 = 2.25; the max is kept.
    assert mse_value_loss(v, old, ret, mask, 0.5, Normalizer.of(mask)).item() == pytest.approx(0.5 * 2.25)


def test_kl_estimators():
    lp, ref = torch.tensor([0.0]), torch.tensor([math.log(0.5)])
    assert kl_penalty(lp, ref, "k1").item() == pytest.approx(math.log(2))
    assert kl_penalty(lp, ref, "k3").item() == pytest.approx(0.5 - 1 + math.log(2))
    assert kl_penalty(lp, ref, "k3_clamped").item() == pytest.approx(0.5 - 1 + math.log(2))


def test_clamped_k3_bounds_far_off_tokens():
    lp, ref = torch.tensor([0.0, 0.0, 0.0]), torch.tensor([100.0, 3.0, -100.0])
    k3c = kl_penalty(lp, ref, "k3_clamped")
    # log(q/p) = 100 is clamped to 20 and exp(20) - 1 - 20 to 10; 3 gives e^3 - 4 = 16.09 -> 10;
    # -100 is clamped to -20: e^-20 - 1 + 20 = 19.0 -> 10.
    assert k3c.tolist() == [10.0, 10.0, 10.0]
    assert torch.isinf(kl_penalty(lp, ref, "k3")[0])  # unclamped, exp(100) overflows float32
    small = kl_penalty(torch.tensor([0.0]), torch.tensor([-0.5]), "k3_clamped")
    assert small.item() == pytest.approx(math.exp(-0.5) - 1 + 0.5)


def test_whitening_population_or_unbiased_variance():
    x, mask = torch.tensor([[1.0, 2.0, 3.0, 4.0, 99.0]]), torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    # Mean 2.5; population variance 1.25, Bessel-corrected 5/3.
    assert whiten(x, mask)[0, 0].item() == pytest.approx(-1.5 / math.sqrt(1.25), rel=1e-6)
    assert whiten(x, mask, unbiased=True)[0, 0].item() == pytest.approx(-1.5 / math.sqrt(5 / 3), rel=1e-6)
    assert whiten(x, mask, unbiased=True)[0, 4].item() == 0.0


def test_gae_skips_masked_tokens_inside_a_response():
    # A hole at position 1 (masked-out token, e.g. a tool observation): the next value of
    # position 0 is v2, and the advantage of position 2 carries through the hole.
    r, v = torch.tensor([[0.1, 5.0, 1.0]]), torch.tensor([[0.2, 9.0, 0.6]])
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    cfg = SimpleNamespace(**{**vars(CFG), "gamma": 0.9, "lam": 0.5})
    adv, returns = gae(AdvantageInputs(r, mask, torch.arange(1), v), cfg)
    a2 = 1.0 - 0.6
    a0 = (0.1 + 0.9 * 0.6 - 0.2) + 0.9 * 0.5 * a2
    assert torch.allclose(adv, torch.tensor([[a0, 0.0, a2]]), atol=1e-6)
    assert torch.allclose(returns, torch.tensor([[a0 + 0.2, 0.0, a2 + 0.6]]), atol=1e-6)


def test_registry_specs():
    assert set(ALGORITHMS) >= {"sppo", "ppo", "grpo", "rloo", "remax", "ppo_bce"}
    assert ALGORITHMS["sppo"].critic == "prompt" and ALGORITHMS["ppo"].critic == "token"
    assert ALGORITHMS["grpo"].min_samples_per_prompt == 2
    with pytest.raises(ValueError):
        register(AlgorithmSpec("sppo", prompt_bandit, critic="prompt"))
