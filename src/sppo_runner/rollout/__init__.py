"""Rollout engines: sample responses and their log-probs from the policy.

Backends (``BACKENDS``): ``"native"`` (default) is a batched KV-cache sampler
with row compaction; ``"hf"`` wraps ``model.generate`` (the reference); ``"vllm"``
runs vLLM's engine in this process and is fed the live weights after every update
(needs vLLM installed; importing this package does not import vLLM).
"""

from __future__ import annotations

import torch

from sppo_runner.rollout.base import RolloutEngine, SamplingParams
from sppo_runner.rollout.hf import HFEngine
from sppo_runner.rollout.native import NativeEngine
from sppo_runner.rollout.vllm_engine import VLLMEngine

BACKENDS: dict[str, type] = {"native": NativeEngine, "hf": HFEngine, "vllm": VLLMEngine}
DEFAULT_BACKEND = "native"
RECOMPUTE_MODES = ("auto", "on", "off")


def recompute_old_logprobs(mode: str, backend: str, float32: bool = True) -> bool:
    """Whether the learner recomputes the sampled tokens' log-probs before its update.

    ``auto`` recomputes when the engine's numerics differ from the learner's: a backend
    with its own kernels (``exact_logprobs = False``: vLLM), or any backend computing in
    bf16/fp16 (``float32=False``), where log-probs differ by up to ~0.1-0.2 nat. The
    native and hf backends in float32 equal the learner to 1e-4, so ``auto`` skips it
    there. ``on`` / ``off`` force it.
    """
    mode = getattr(mode, "value", mode)
    if mode not in RECOMPUTE_MODES:
        raise ValueError(f"recompute_old_logprobs={mode!r}; allowed values: {', '.join(RECOMPUTE_MODES)}")
    if mode == "auto":
        return not (getattr(BACKENDS[backend], "exact_logprobs", True) and float32)
    return mode == "on"


def sync_weights(engine: RolloutEngine, model: torch.nn.Module) -> dict[str, float]:
    """Hands the updated policy to an engine that keeps its own copy of the weights.

    Engines that read the live module (native, hf) need nothing and report nothing; the
    ``vllm`` engine loads the weights and the time is logged as ``perf/weight_sync_seconds``.
    """
    sync = getattr(engine, "sync_weights", None)
    if sync is None:
        return {}
    return {"perf/weight_sync_seconds": float(sync(model))}


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
    "RECOMPUTE_MODES",
    "RolloutEngine",
    "SamplingParams",
    "VLLMEngine",
    "make_engine",
    "recompute_old_logprobs",
    "sync_weights",
]
