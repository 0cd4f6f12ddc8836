"""verifier.rule is typed, checked at start, and reaches training, evaluation and sppo-eval."""

from __future__ import annotations

import pytest

from conftest import make_config, small_run_overrides
from sppo_runner.config import ConfigError, VerifierRule
from sppo_runner.verifier import Verifier


def _messages(exc: BaseException) -> str:
    out = []
    while exc is not None:
        out.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(out)


def test_default_and_choice():
    assert make_config("sppo").verifier.rule == VerifierRule.equivalence
    assert make_config("sppo", ["verifier.rule=reference"]).verifier.rule == VerifierRule.reference


def test_a_bad_rule_names_the_key_and_the_allowed_values():
    with pytest.raises(Exception) as err:
        make_config("sppo", ["verifier.rule=strict"])
    text = _messages(err.value)
    assert "verifier.rule" in text and "expected one of [equivalence, reference]" in text, text


def test_the_reference_rule_refuses_other_extractors():
    with pytest.raises(ConfigError, match="'verifier.extractors': verifier.rule=reference extracts as the reference"):
        make_config("sppo", ["verifier.rule=reference", "verifier.extractors=[boxed,answer_is]"])


class _Recording(Verifier):
    rules: list[str] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _Recording.rules.append(self.rule)


def test_training_evaluation_and_sppo_eval_use_the_rule(tiny_models, tmp_path, monkeypatch):
    from sppo_runner import evaluation_cli, session
    from sppo_runner.run import run

    monkeypatch.setattr(session, "Verifier", _Recording)
    monkeypatch.setattr(evaluation_cli, "Verifier", _Recording)
    _Recording.rules = []
    cfg = make_config("sppo", small_run_overrides(tiny_models, steps=1) + ["verifier.rule=reference"])
    summary = run(cfg, tmp_path / "run")  # trains one step and evaluates before and after
    assert summary is not None
    report = evaluation_cli.evaluate_policy(cfg, tmp_path / "eval")
    assert sum(report["rows"][0]["status"].values()) == 4 * 2  # every sample graded
    assert _Recording.rules == ["reference", "reference"]
