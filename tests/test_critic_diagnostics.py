"""The token critic's explained variance per response-position bucket (critic/explained_var_q*)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from sppo_runner.critics import CRITICS, explained_variance_by_position


def _batch():
    # Row 0: 4 response tokens, return 1; row 1: 3 tokens (+1 padding), return 0.
    values = torch.tensor([[0.5, 0.5, 1.0, 1.0], [0.5, 0.5, 0.0, 9.0]])
    returns = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    return values, returns, mask


def test_hand_computed_two_buckets():
    # Buckets floor(2 t / L): row 0 (L=4) -> 0,0,1,1; row 1 (L=3) -> 0,0,1.
    # q1: returns [1,1,0,0] (var 1/4), residuals [.5,.5,-.5,-.5] (var 1/4)  -> EV 0.
    # q2: returns [1,1,0] (var 2/9), residuals [0,0,0]                      -> EV 1.
    # all: returns [1,1,1,1,0,0,0] (var 12/49), residuals var 1/7           -> EV 1 - 49/84 = 5/12.
    ev = explained_variance_by_position(*_batch(), n_buckets=2)
    assert ev.keys() == {"all", "q1", "q2"}
    assert ev["q1"] == pytest.approx(0.0, abs=1e-12)
    assert ev["q2"] == pytest.approx(1.0, abs=1e-12)
    assert ev["all"] == pytest.approx(5 / 12, abs=1e-12)


def test_hand_computed_quarters_and_undefined_buckets():
    # Quarters floor(4 t / L): row 0 -> 0,1,2,3; row 1 (L=3) -> 0,1,2 (t=2: floor(8/3)=2).
    # q1: returns [1,0], values [.5,.5]: var(r)=1/4, residuals [.5,-.5] var 1/4 -> EV 0.
    # q3: returns [1,0], values [1,0]: perfect -> EV 1.   q4: one token -> left out.
    values, returns, mask = _batch()
    ev = explained_variance_by_position(values, returns, mask)
    assert ev["q1"] == pytest.approx(0.0, abs=1e-12) and ev["q2"] == pytest.approx(0.0, abs=1e-12)
    assert ev["q3"] == pytest.approx(1.0, abs=1e-12)
    assert "q4" not in ev
    # Returns that do not vary: the explained variance is undefined everywhere.
    assert explained_variance_by_position(values, torch.ones_like(returns), mask) == {}
    # A critic predicting the mean return explains nothing; a negative EV is reported as is.
    assert explained_variance_by_position(torch.full_like(values, 4 / 7), returns, mask, 2)["all"] == pytest.approx(0.0)
    assert explained_variance_by_position(1 - returns, returns, mask, 2)["all"] < 0


def test_token_critic_diagnostics_names_and_bce_scale():
    values, returns, mask = _batch()
    mse = CRITICS["token"].diagnostics(values, returns, mask, SimpleNamespace(critic_loss="mse"))
    assert set(mse) == {"critic/explained_var", "critic/explained_var_q1", "critic/explained_var_q2",
                        "critic/explained_var_q3"}
    assert mse["critic/explained_var_q3"] == pytest.approx(1.0)
    # With a BCE critic the values are logits: V = sigmoid(logit) is compared with the returns.
    logits = torch.logit(values.clamp(1e-6, 1 - 1e-6).double()).float()
    bce = CRITICS["token"].diagnostics(logits, returns, mask, SimpleNamespace(critic_loss="bce"))
    assert bce["critic/explained_var_q1"] == pytest.approx(mse["critic/explained_var_q1"], abs=1e-5)
    assert CRITICS["prompt"].diagnostics(values[:, 0], returns[:, 0], mask, SimpleNamespace(critic_loss="bce")) == {}


def test_ppo_step_logs_the_buckets(tiny_models, tmp_path):
    from conftest import make_config, small_run_overrides
    from sppo_runner.run import train_step
    from sppo_runner.session import build_session
    from sppo_runner.verifier import Verdict

    cfg = make_config("ppo", small_run_overrides(tiny_models) + ["rollout.max_new_tokens=12"])
    s = build_session(cfg, tmp_path)
    try:
        # Alternating 0/1 rewards, so the returns vary.
        s.verifier.grade_batch = lambda rs, gs: [Verdict(float(i % 2), "wrong", None) for i in range(len(rs))]
        m = train_step(s)
    finally:
        s.close()
    assert math.isfinite(m["critic/explained_var"])
    assert {f"critic/explained_var_q{q}" for q in range(1, 5)} <= set(m)
