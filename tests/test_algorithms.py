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


def test_clip_higher_uses_separate_epsilons():
    logp = torch.tensor([[math.log(1.5)]])
    mask, adv = torch.ones(1, 1), torch.ones(1, 1)
    loss, _ = clipped_policy_loss(logp, torch.zeros(1, 1), adv, mask, 0.2, 0.28, 3.0, "token-mean", Normalizer.of(mask))
    assert loss.item() == pytest.approx(-1.28)


def test_aggregation_modes():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    norm = Normalizer.of(mask)
    assert aggregate(loss, mask, "token-mean", norm).item() == pytest.approx(10 / 4)
    assert aggregate(loss, mask, "seq-mean-token-mean", norm).item() == pytest.approx((2 + 4) / 2)
    assert aggregate(loss, mask, "seq-mean-token-sum-norm", norm).item() == pytest.approx(10 / (2 * 3))


def test_micro_batch_shares_sum_to_minibatch_loss():
    g = torch.Generator().manual_seed(1)
    logp, old, adv = (torch.randn(6, 4, generator=g) * 0.3 for _ in range(3))
    mask = (torch.rand(6, 4, generator=g) > 0.3).float()
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        norm = Normalizer.of(mask)
        full, _ = clipped_policy_loss(logp, old, adv, mask, 0.2, 0.2, 3.0, mode, norm)
        parts = sum(clipped_policy_loss(logp[i:i + 2], old[i:i + 2], adv[i:i + 2], mask[i:i + 2], 0.2, 0.2, 3.0,
                                        mode, norm)[0] for i in (0, 2, 4))
        assert parts.item() == pytest.approx(full.item(), abs=1e-6)


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


def test_registry_specs():
    assert set(ALGORITHMS) >= {"sppo", "ppo", "grpo", "rloo", "remax", "ppo_bce"}
    assert ALGORITHMS["sppo"].critic == "prompt" and ALGORITHMS["ppo"].critic == "token"
    assert ALGORITHMS["grpo"].min_samples_per_prompt == 2
    with pytest.raises(ValueError):
        register(AlgorithmSpec("sppo", prompt_bandit, critic="prompt"))
