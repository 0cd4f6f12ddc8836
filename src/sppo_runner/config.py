"""Typed configuration: dataclass schemas registered in Hydra's ConfigStore.

Choice fields are ``str`` Enums, so OmegaConf rejects a bad value at compose time
with ``Invalid value 'x', expected one of [...]`` and the full key. Checks that
span fields or depend on registries live in :func:`validate`, whose messages name
the key and the allowed values too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from sppo_runner.errors import UserError


class CriticKind(str, Enum):
    none = "none"
    prompt = "prompt"
    token = "token"


class CriticLoss(str, Enum):
    bce = "bce"
    mse = "mse"


LOSS_AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


class KLEstimator(str, Enum):
    k1 = "k1"
    k3 = "k3"
    k3_clamped = "k3_clamped"  # the reference's low_var_kl: k3 with its log-ratio and result clamped


class CpuParallel(str, Enum):
    processes = "processes"
    threads = "threads"


class RecomputeOldLogprobs(str, Enum):
    """Whether the learner recomputes the sampled tokens' log-probs before the update."""

    auto = "auto"  # on for engines whose numerics differ from the learner's (vllm), off otherwise
    on = "on"
    off = "off"


class VerifierRule(str, Enum):
    """Which reward rule grades math answers (docs/reproducing.md, "Reward")."""

    equivalence = "equivalence"  # this project's verifier
    reference = "reference"  # the paper code's naive_dapo rule, re-implemented without parse_expr


class WandbMode(str, Enum):
    auto = "auto"
    online = "online"
    offline = "offline"
    disabled = "disabled"


class MixedPrecision(str, Enum):
    """Compute dtype under autocast; the weights keep ``model.dtype`` (float32 = master weights)."""

    none = "none"
    bf16 = "bf16"
    fp16 = "fp16"


class DataSource(str, Enum):
    synthetic = "synthetic"
    file = "file"
    hub = "hub"


class BadRow(str, Enum):
    error = "error"
    skip = "skip"


class LongPrompt(str, Enum):
    filter = "filter"
    truncate = "truncate"


class AnswerFormat(str, Enum):
    """How a source's answer field becomes a ground truth (see ``data/sources.py``)."""

    auto = "auto"  # GSM8K "#### x" or a MATH solution's last \boxed{} when present, else raw
    raw = "raw"
    gsm8k = "gsm8k"
    boxed = "boxed"


@dataclass
class AlgorithmConfig:
    """What differs between algorithms; ``name`` picks the registered spec."""

    name: str = MISSING
    samples_per_prompt: int = 1
    clip_ratio_low: float = 0.2
    clip_ratio_high: float = 0.2
    dual_clip: float = 3.0  # <= 1 disables it
    loss_agg: str = "token-mean"  # one of LOSS_AGG_MODES
    # Sequences per loss group: loss_agg applies within each group of this many sequences and
    # the groups weigh the same (the reference's per-GPU micro-batch); 0 = the whole mini-batch.
    loss_micro_batch: int = 0
    critic_loss_micro_batch: int = 0  # the same for the critic's value loss
    ppo_epochs: int = 1
    mini_batches: int = 1  # optimizer steps per epoch (the batch is split evenly)
    gamma: float = 1.0
    lam: float = 1.0
    norm_by_std: bool = True  # GRPO; False is Dr. GRPO
    adv_eps: float = 1e-6
    whiten_advantages: bool = False
    whiten_unbiased: bool = False  # Bessel-corrected variance when whitening (the reference's)
    critic_loss: CriticLoss = CriticLoss.bce
    value_clip: float = 0.0  # 0 disables value clipping (token critics only)
    critic_warmup_steps: int = 0  # steps that update only the critic
    critic_epochs: int = 1
    kl_coef: float = 0.0  # KL to a frozen reference, in the loss
    kl_estimator: KLEstimator = KLEstimator.k3  # for the KL term in the loss (kl_coef)
    kl_in_reward_coef: float = 0.0  # KL to the reference, subtracted from rewards
    kl_in_reward_estimator: KLEstimator = KLEstimator.k3
    entropy_coef: float = 0.0
    # Old log-probs (the PPO ratio's denominator) from the learner's own forward instead of the
    # engine's; logs rollout/logprob_abs_diff_mean/_max (engine vs learner) whenever it runs.
    recompute_old_logprobs: RecomputeOldLogprobs = RecomputeOldLogprobs.auto


@dataclass
class ModelConfig:
    """The policy. ``path`` is ``embedded``, a local folder or a hub id."""

    path: str = "embedded"
    dtype: str = "float32"
    lr: float = 1e-6
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    gradient_checkpointing: bool = False
    micro_batch_size: int = 0  # rows per forward in the learner; 0 = whole mini-batch
    trust_remote_code: bool = False


@dataclass
class CriticConfig:
    """The critic: its own model with a scalar head (may be smaller than the policy)."""

    path: str = "embedded"
    dtype: str = "float32"
    lr: float = 1e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    gradient_checkpointing: bool = False
    micro_batch_size: int = 0
    trust_remote_code: bool = False


@dataclass
class DataConfig:
    """Where prompts come from and how they are rendered."""

    source: DataSource = DataSource.synthetic
    difficulty: int = 2  # synthetic task
    horizon: int = 0  # synthetic task: 0 = off; 2..32 = chains of that many steps (the horizon benchmark)
    seed: int = 0  # synthetic task generation (independent of the run seed)
    train_size: int = 20000
    # Relative file paths (data.path, data.heldout_path, eval.benchmarks) are looked up here
    # when they do not exist as given; the env var lets a GPU node keep its own copy.
    data_dir: str = "${oc.env:SPPO_DATA_DIR,../shared/data}"
    path: Optional[str] = None  # file source: .parquet / .jsonl / .csv
    name: Optional[str] = None  # hub source: dataset id
    subset: Optional[str] = None  # hub source: dataset config name (GSM8K: "main")
    split: str = "train"
    prompt_key: str = "prompt"  # dotted for nesting; a chat-message list gives its user message
    answer_key: str = "reward_model.ground_truth"
    source_key: str = "data_source"
    answer_format: AnswerFormat = AnswerFormat.auto
    max_rows: int = 0  # read at most this many rows of a file/hub source; 0 = all (smoke tests)
    # Held-out set of a file/hub source: this file, else this hub split, else the
    # heldout_size rows with the smallest prompt hashes (removed from training).
    heldout_path: Optional[str] = None
    heldout_split: Optional[str] = None
    heldout_size: int = 256
    chat_template: bool = True  # use the tokenizer's template when it has one
    suffix: str = ""
    max_prompt_tokens: int = 256
    long_prompts: LongPrompt = LongPrompt.filter
    bad_rows: BadRow = BadRow.error
    prompts_per_step: int = 64


@dataclass
class VLLMConfig:
    """``rollout.backend=vllm``: vLLM's engine colocated with the learner (see rollout/vllm_engine.py)."""

    tensor_parallel_size: int = 1  # ranks per vLLM instance under torchrun (external_launcher)
    gpu_memory_utilization: float = 0.5  # GPU share for vLLM's weights + KV cache; the learner needs the rest
    kv_cache_gib: float = 0.0  # explicit KV-cache size; 0 = from gpu_memory_utilization (GPU), 1 GiB (CPU)
    sleep_level: int = 0  # GPU only. 0 off; 1 offload weights + free KV cache during updates; 2 free both
    dtype: str = "auto"  # auto = the learner's compute dtype (autocast's, else the weights')
    enforce_eager: Optional[bool] = None  # None = eager on CPU, CUDA graphs on GPU
    enable_prefix_caching: bool = True
    max_model_len: int = 0  # 0 = the model's max_position_embeddings
    max_num_seqs: int = 0  # sequences decoded at once; 0 = vLLM's default


@dataclass
class RolloutConfig:
    backend: str = "native"  # native | hf | vllm
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    stop: list[str] = field(default_factory=list)
    micro_batch_size: int = 0  # rows generated at once; 0 = all
    workers: int = 0  # CPU chunks decoded concurrently; 0 = torch's thread count
    cpu_parallel: CpuParallel = CpuParallel.processes  # how CPU chunks run
    vllm: VLLMConfig = field(default_factory=VLLMConfig)


@dataclass
class VerifierConfig:
    extractors: list[str] = field(default_factory=lambda: ["boxed"])
    timeout_s: float = 2.0
    workers: int = 0  # 0 = one per core
    rule: VerifierRule = VerifierRule.equivalence


@dataclass
class WandbConfig:
    mode: WandbMode = WandbMode.auto
    project: str = "sppo-runner"
    entity: Optional[str] = None
    group: Optional[str] = None
    name: Optional[str] = None  # the run's display name; None: W&B picks one
    tags: list[str] = field(default_factory=list)
    init_timeout_s: float = 30.0


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)
    progress: bool = True
    samples_per_step: int = 4  # rows of samples.jsonl per step


@dataclass
class TrainerConfig:
    """Loop length, budgets (first one reached stops the run), cadence, device."""

    steps: int = 100
    max_prompts: int = 0  # 0 = no budget
    max_samples: int = 0
    max_tokens: int = 0
    max_seconds: float = 0.0
    eval_every: int = 0  # 0 = only before and after training
    # Also evaluate each time training time crosses a multiple of this (equal-wall-clock sweeps).
    eval_every_seconds: float = 0.0
    checkpoint_every: int = 0  # 0 = only at the end
    keep_checkpoints: int = 2
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # bf16 with model.dtype=float32 keeps float32 master weights and computes in bfloat16:
    # at lr 1e-6 an AdamW step on bfloat16 weights rounds away for most of them.
    mixed_precision: MixedPrecision = MixedPrecision.none
    threads: int = 0  # torch intra-op threads on CPU; 0 = all cores
    deterministic: bool = True


@dataclass
class EvalConfig:
    n_problems: int = 256
    k: int = 4
    temperature: float = -1.0  # < 0: the rollout temperature
    greedy: bool = True
    batch_size: int = 256
    max_new_tokens: int = 0  # 0: the rollout value
    # Extra benchmarks, name -> verl-style file (relative to data.data_dir), each logged as
    # eval/<name>/...; the main held-out set stays eval/mean@k etc.
    benchmarks: dict[str, str] = field(default_factory=dict)
    max_problems: int = 0  # rows per benchmark; 0 = all (smoke tests)


class Fsdp(str, Enum):
    """When models are sharded with FSDP2 (``torch.distributed.fsdp.fully_shard``)."""

    auto = "auto"  # with more than one rank
    on = "on"  # also in one process (the sharded code path, e.g. to measure its memory on one GPU)


@dataclass
class DistributedConfig:
    """Data-parallel, sharded training under torchrun (``sppo_runner.distributed``).

    ``data.prompts_per_step`` stays the global batch: each of the N ranks rolls out,
    verifies and trains on 1/N of it, and losses are normalized by global counts.
    """

    fsdp: Fsdp = Fsdp.auto
    backend: str = "auto"  # auto (nccl on CUDA, gloo on CPU) | nccl | gloo
    timeout_s: float = 1800.0  # a collective waiting longer (a hung or dead rank) stops the job
    reshard_after_forward: bool = True  # ZeRO-3; false keeps gathered weights until backward (ZeRO-2-like)
    shard_size: int = 0  # ranks per shard group; 0 = all ranks (FSDP), else HSDP (e.g. GPUs per node)
    cpu_offload: bool = False  # FSDP2 CPUOffloadPolicy: sharded weights, grads and Adam states in host memory
    # `sppo-run distributed.nproc_per_node=4 ...` starts its ranks under torchrun itself (also for
    # each job of a submitit sweep); 0 = one process, or the submitit launcher's gpus_per_node.
    nproc_per_node: int = 0
    nnodes: int = 0  # 0 = 1, or the submitit launcher's nodes
    rdzv_port: int = 0  # multi-node rendezvous port; 0 = derived from the SLURM job id
    gpu_memory_gb: float = 0.0  # memory plan: per-GPU memory; 0 = the device's own (not checked on CPU)
    memory_check: bool = True  # refuse to load models whose states alone cannot fit (memory plan)


@dataclass
class Config:
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    seed: int = 0
    resume: Optional[str] = None
    run_dir: Optional[str] = None  # set by the CLI (Hydra's run folder)


def register_configs() -> None:
    """Stores the root schema; ``conf/config.yaml`` lists it first, which types every group.

    Group schemas are deliberately not stored under the groups: they would show up
    as choices in ``Available options`` messages.
    """
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="config_schema", node=Config)


class ConfigError(UserError, ValueError):
    """A configuration value is out of range or inconsistent; the message names the key."""


def _check(ok: bool, key: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"config error at '{key}': {msg}")


def _choice(value: Any, key: str, allowed: list[str]) -> None:
    _check(value in allowed, key, f"got {value!r}; allowed values: {', '.join(sorted(allowed))}")


def validate(cfg: Config | DictConfig) -> None:
    """Cross-field, range and registry checks that the schema types cannot express.

    Raises:
        ConfigError: naming the key, the bad value and what is allowed.
    """
    from sppo_runner.algorithms import ALGORITHMS
    from sppo_runner.config_checks import check_ranges, get
    from sppo_runner.rollout import BACKENDS
    from sppo_runner.verifier import EXTRACTORS

    a = cfg.algorithm
    _choice(a.name, "algorithm.name", list(ALGORITHMS))
    spec = ALGORITHMS[a.name]
    _check(
        a.samples_per_prompt >= spec.min_samples_per_prompt,
        "algorithm.samples_per_prompt",
        f"{a.name} needs at least {spec.min_samples_per_prompt} samples per prompt, got {a.samples_per_prompt}",
    )
    _choice(a.loss_agg, "algorithm.loss_agg", list(LOSS_AGG_MODES))
    check_ranges(cfg)
    _choice(cfg.rollout.backend, "rollout.backend", list(BACKENDS))
    if cfg.rollout.backend == "vllm":
        from sppo_runner.rollout.vllm_engine import config_problems

        for key, msg in config_problems(cfg, world_size=int(os.environ.get("WORLD_SIZE", 1))):
            _check(False, key, msg)
    for i, name in enumerate(cfg.verifier.extractors):
        _choice(name, f"verifier.extractors[{i}]", list(EXTRACTORS))
    _check(cfg.verifier.rule != VerifierRule.reference or list(cfg.verifier.extractors) == ["boxed"],
           "verifier.extractors", "verifier.rule=reference extracts as the reference code does (the last "
           "\\boxed or \\fbox after </think>, else the whole text); leave extractors at [boxed]")
    _check(
        cfg.data.prompts_per_step * a.samples_per_prompt >= a.mini_batches,
        "algorithm.mini_batches",
        "cannot exceed the number of samples per step",
    )
    src = cfg.data.source.value if hasattr(cfg.data.source, "value") else cfg.data.source
    _check(src != "file" or bool(cfg.data.path), "data.path", "data.source=file needs data.path")
    _check(src != "hub" or bool(cfg.data.name), "data.name", "data.source=hub needs data.name (a dataset id)")
    dev = cfg.trainer.device
    _check(
        dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit()),
        "trainer.device",
        f"got {dev!r}; allowed values: auto, cpu, cuda, cuda:N",
    )
    for key, value in (("model.dtype", cfg.model.dtype), ("critic.dtype", cfg.critic.dtype)):
        _choice(value, key, ["bfloat16", "float16", "float32"])
    for key in ("model.betas", "critic.betas"):
        betas = get(cfg, key)
        ok = len(betas) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)
        _check(ok, key, f"got {list(betas)}; allowed: two numbers in [0, 1), e.g. [0.9, 0.999]")
    d = cfg.distributed
    _choice(d.backend, "distributed.backend", ["auto", "gloo", "nccl"])
    _check(d.timeout_s > 0, "distributed.timeout_s", f"must be > 0, got {d.timeout_s}")
    _check(min(d.shard_size, d.nproc_per_node, d.nnodes) >= 0, "distributed.shard_size/nproc_per_node/nnodes",
           "must be >= 0")


def to_object(cfg: DictConfig) -> Config:
    """Converts a composed DictConfig to the typed :class:`Config` (and validates it).

    Raises:
        ConfigError: An unknown key or a bad value (see :func:`validate`).
    """
    from sppo_runner.config_checks import check_known_keys

    check_known_keys(cfg)
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, Config), type(obj)
    validate(obj)
    return obj
