"""Rollout engines: sample responses and their log-probs from the policy.

Backends (``BACKENDS``): ``"native"`` (default) is a batched KV-cache sampler
with row compaction; ``"hf"`` wraps ``model.generate`` (the reference).
"""

from __future__ import annotations

from sppo_runner.rollout.base import RolloutEngine, SamplingParams
from sppo_runner.rollout.hf import HFEngine
from sppo_runner.rollout.native import NativeEngine

BACKENDS: dict[str, type] = {"native": NativeEngine, "hf": HFEngine}
DEFAULT_BACKEND = "native"


def make_engine(backend: str, tokenizer, **options) -> RolloutEngine:
    """Builds the rollout engine named ``backend``.

    Args:
        backend: A key of :data:`BACKENDS`.
        tokenizer: The policy's tokenizer.
        **options: Backend-specific constructor options.

    Returns:
        The engine.

    Raises:
        ValueError: For an unknown backend.
    """
    try:
        cls = BACKENDS[backend]
    except KeyError:
        raise ValueError(
            f"unknown rollout backend {backend!r}; choose one of {sorted(BACKENDS)}"
        ) from None
    return cls(tokenizer, **options)


__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "HFEngine",
    "NativeEngine",
    "RolloutEngine",
    "SamplingParams",
    "make_engine",
]
