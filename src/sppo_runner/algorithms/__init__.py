"""The algorithm registry: every algorithm is one spec with the same fields.

An algorithm is (advantage estimator, critic kind, minimum samples per prompt,
whether it needs a greedy baseline rollout). The training loop reads these
fields and never branches on an algorithm's name. Adding one is a call to
:func:`register` plus a YAML file in ``conf/algorithm/``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sppo_runner.algorithms.advantages import (
    AdvantageFn,
    AdvantageInputs,
    gae,
    greedy_baseline,
    group_normalized,
    leave_one_out,
    prompt_bandit,
    token_rewards_from,
)


@dataclass(frozen=True)
class AlgorithmSpec:
    """What the loop needs to know about an algorithm.

    Attributes:
        name: Registry key (``algorithm.name`` in the config).
        advantage: The estimator (see :mod:`sppo_runner.algorithms.advantages`).
        critic: ``"none"``, ``"prompt"`` (one logit at the last prompt token) or
            ``"token"`` (a value per response token).
        min_samples_per_prompt: Group-baseline methods need more than one.
        greedy_baseline: Whether the loop must also roll out greedily (ReMax).
    """

    name: str
    advantage: AdvantageFn
    critic: str
    min_samples_per_prompt: int = 1
    greedy_baseline: bool = False


ALGORITHMS: dict[str, AlgorithmSpec] = {}


def register(spec: AlgorithmSpec) -> AlgorithmSpec:
    """Adds ``spec`` to :data:`ALGORITHMS` (names must be unique)."""
    if spec.name in ALGORITHMS:
        raise ValueError(f"algorithm {spec.name!r} is already registered")
    if spec.critic not in ("none", "prompt", "token"):
        raise ValueError(f"critic kind must be none, prompt or token, got {spec.critic!r}")
    ALGORITHMS[spec.name] = spec
    return spec


register(AlgorithmSpec("sppo", prompt_bandit, critic="prompt"))
register(AlgorithmSpec("ppo", gae, critic="token"))
register(AlgorithmSpec("ppo_bce", gae, critic="token"))
register(AlgorithmSpec("grpo", group_normalized, critic="none", min_samples_per_prompt=2))
register(AlgorithmSpec("rloo", leave_one_out, critic="none", min_samples_per_prompt=2))
register(AlgorithmSpec("remax", greedy_baseline, critic="none", greedy_baseline=True))

__all__ = ["ALGORITHMS", "AlgorithmSpec", "AdvantageInputs", "register", "token_rewards_from"]
