"""Memory plan: expected per-GPU memory of a run, from model configs alone (no weights).

Exact parts: parameters, gradients and AdamW states per model (counted on a meta-device
instance of the model, so tied embeddings and biases are right), divided by the shard group
size. Estimates: the rollout's full policy copy and KV cache, FSDP's gathered units, and
the largest micro-batch's activations (see :func:`plan`). ``sppo-plan`` prints it for any
config and world size; a run prints it at start (sharded or on a GPU) and refuses to load
weights whose states alone cannot fit (``distributed.memory_check``).

Model shapes come from, in order: a local folder's ``config.json``, the Hugging Face cache
(never downloaded here), or :data:`KNOWN_CONFIGS` (the published configs of the models the
paper presets use, typed in from their numbers).
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

GB = 1e9
USABLE = 0.92  # share of a GPU's memory the plan may fill (CUDA context, allocator slack)

_QWEN2 = dict(model_type="qwen2", hidden_act="silu", rms_norm_eps=1e-6, max_position_embeddings=131072)
# config.json numbers of the hub models in conf/model and conf/critic (parameter counts they
# give, checked in tests: 7.62 B, 1.78 B, 1.54 B, 0.49 B).
KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": dict(
        _QWEN2, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": dict(
        _QWEN2, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=False),
    "Qwen/Qwen2.5-Math-1.5B": dict(
        _QWEN2, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "Qwen/Qwen2.5-0.5B-Instruct": dict(
        _QWEN2, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
}
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Shape:
    """What the plan needs of one model (counted on the meta device)."""

    n_params: int
    largest_block: int  # parameters of the largest decoder block
    root: int  # parameters outside the blocks (embeddings, head, final norm)
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    kv_width: int  # key/value heads x head dim


def model_config(path: str, kind: str, trust_remote_code: bool = False) -> Any:
    """The transformers config of ``path`` without downloading anything."""
    from transformers import AutoConfig, Qwen2Config

    from sppo_runner.models import resolve_path

    local = resolve_path(path, kind)
    try:
        return AutoConfig.from_pretrained(local, local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        if path in KNOWN_CONFIGS:
            return Qwen2Config(**KNOWN_CONFIGS[path])
    raise FileNotFoundError(f"no config.json for {path!r} (not a folder, not in the Hugging Face cache, not one of "
                            f"{sorted(KNOWN_CONFIGS)}); fetch it with: hf download {path} config.json")


def shape_of(config: Any, kind: str) -> Shape:
    """Counts ``config``'s parameters as a causal LM (policy) or a one-output critic."""
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    with torch.device("meta"):
        if kind == "critic":
            config = copy.deepcopy(config)
            config.num_labels = 1
            model = AutoModelForTokenClassification.from_config(config)
        else:
            model = AutoModelForCausalLM.from_config(config)
    names = set(getattr(model, "_no_split_modules", None) or ())
    blocks = [sum(p.numel() for p in m.parameters()) for m in model.modules() if type(m).__name__ in names]
    total = sum(p.numel() for p in model.parameters())
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return Shape(total, max(blocks, default=total), total - sum(blocks), config.num_hidden_layers, config.hidden_size,
                 config.intermediate_size, config.vocab_size,
                 getattr(config, "num_key_value_heads", heads) * head_dim)


@dataclass
class MemoryPlan:
    """Per-GPU bytes of a run; :meth:`text` is what gets printed."""

    world: int
    shard: int
    gpu_bytes: Optional[float]
    header: str
    models: list[tuple[str, Shape, float, float, float]] = field(default_factory=list)  # name, shape, w, g, opt
    phases: dict[str, tuple[float, str]] = field(default_factory=dict)  # phase -> (bytes, how)
    offloaded: float = 0.0  # host bytes per rank under CPU offload

    @property
    def states(self) -> float:
        return sum(w + g + o for _, _, w, g, o in self.models)

    @property
    def peak(self) -> float:
        """The largest phase (each phase's bytes include the states)."""
        return max([self.states, *(b for b, _ in self.phases.values())])

    @property
    def fits(self) -> Optional[bool]:
        return None if not self.gpu_bytes else self.peak <= USABLE * self.gpu_bytes

    @property
    def states_fit(self) -> bool:
        return not self.gpu_bytes or self.states <= self.gpu_bytes

    def text(self) -> str:
        lines = [self.header, f"  {'model':<10}{'params':>9}{'weights':>10}{'grads':>9}{'AdamW':>9}{'per GPU':>10} GB"]
        for name, shape, w, g, o in self.models:
            adam = "-" if name == "reference" else f"{o / GB:.2f}"
            grads = "-" if name == "reference" else f"{g / GB:.2f}"
            count = f"{shape.n_params / 1e9:.2f}B" if shape.n_params >= 1e8 else f"{shape.n_params / 1e6:.2f}M"
            lines.append(f"  {name:<10}{count:>9}{w / GB:>10.2f}{grads:>9}{adam:>9}{(w + g + o) / GB:>10.2f}")
        host = f" (+ {self.offloaded / GB:.2f} GB host memory per rank: cpu_offload)" if self.offloaded else ""
        lines.append(f"  sharded states: {self.states / GB:.2f} GB per GPU{host}")
        for phase, (b, how) in self.phases.items():
            lines.append(f"  {phase}: {b / GB:.2f} GB = states + {how}")
        if self.gpu_bytes:
            verdict = "fits" if self.fits else "does NOT fit"
            lines.append(f"  peak {self.peak / GB:.2f} GB of {self.gpu_bytes / GB:.1f} GB per GPU "
                         f"({USABLE:.0%} usable): {verdict}. Activations and KV cache are estimates; "
                         "the measured peak follows the first step.")
            if not self.fits:
                lines.append("  to fit: more GPUs (sharding divides the states), distributed.cpu_offload=true "
                             "(states in host memory), smaller rollout.micro_batch_size (KV cache) or "
                             "rollout.max_new_tokens (activations)")
        return "\n".join(lines)

    def measured_line(self, metrics: dict[str, float]) -> str:
        """The first step's measured peak (max over ranks) beside the plan's."""
        if "perf/cuda_peak_allocated_mb" in metrics:
            got = metrics["perf/cuda_peak_allocated_mb"] * 2**20 / GB
            return (f"memory: measured peak after the first step {got:.2f} GB allocated per GPU "
                    f"(plan: {self.peak / GB:.2f} GB)")
        rss = metrics["perf/peak_rss_mb"]
        return f"memory: peak RSS after the first step {rss:.0f} MiB per rank (CPU run; the plan is for GPUs)"


def _phase_terms(cfg: Any, policy: Shape, critic: Optional[Shape], world: int) -> dict[str, tuple[float, str]]:
    """Transient memory per phase beyond the sharded states (estimates; see module docstring)."""
    mp = str(getattr(cfg.trainer.mixed_precision, "value", cfg.trainer.mixed_precision))
    compute = 2 if mp in ("bf16", "fp16") else _BYTES[cfg.model.dtype]
    length = cfg.data.max_prompt_tokens + cfg.rollout.max_new_tokens
    local_rows = max(1, cfg.data.prompts_per_step // world) * cfg.algorithm.samples_per_prompt
    mini_rows = math.ceil(local_rows / cfg.algorithm.mini_batches)

    def gathered(s: Shape) -> float:  # root + current and prefetched block, and one unit's float32 grads
        return (s.root + 2 * s.largest_block) * compute + max(s.root, s.largest_block) * 4

    def activations(s: Shape, rows: int, tokens: int, checkpointing: bool, logits: bool) -> float:
        t = rows * tokens
        per_layer = t * s.hidden * compute if checkpointing else t * (6 * s.hidden + 3 * s.intermediate) * compute
        work = t * (4 * s.hidden + 3 * s.intermediate) * compute
        return s.layers * per_layer + work + (4 * 4 * t * s.vocab if logits else 0)

    rows = cfg.rollout.micro_batch_size or local_rows
    copy = policy.n_params * compute
    kv = rows * length * policy.layers * 2 * policy.kv_width * compute
    out = {"rollout": (copy + kv, f"full policy copy {copy / GB:.2f} + KV cache {kv / GB:.2f} "
                                   f"({rows} row(s) x {length} tokens)")}
    if critic is not None:
        c_rows = cfg.critic.micro_batch_size or mini_rows
        c_tokens = cfg.data.max_prompt_tokens if cfg.algorithm.name == "sppo" else length
        act = activations(critic, c_rows, c_tokens, cfg.critic.gradient_checkpointing, logits=False)
        g = gathered(critic)
        out["critic update"] = (copy + g + act, f"policy copy {copy / GB:.2f} + gathered units {g / GB:.2f} + "
                                                f"activations {act / GB:.2f} ({c_rows} row(s) x {c_tokens} tokens)")
    a_rows = cfg.model.micro_batch_size or mini_rows
    act = activations(policy, a_rows, length, cfg.model.gradient_checkpointing, logits=True)
    g = gathered(policy)
    logits = 4 * 4 * a_rows * length * policy.vocab
    out["actor update"] = (g + act, f"gathered units {g / GB:.2f} + activations {act / GB:.2f} ({a_rows} row(s) x "
                                    f"{length} tokens, of which 4 float32 copies of the logits {logits / GB:.2f})")
    return out


def plan(cfg: Any, world: int, gpu_bytes: Optional[float]) -> MemoryPlan:
    """The memory plan of ``cfg`` on ``world`` ranks with ``gpu_bytes`` per GPU (None: no verdict)."""
    from sppo_runner.algorithms import ALGORITHMS

    d = cfg.distributed
    shard = d.shard_size or world
    spec = ALGORITHMS[cfg.algorithm.name]
    policy = shape_of(model_config(cfg.model.path, "policy", cfg.model.trust_remote_code), "policy")
    critic = None
    if spec.critic != "none":
        critic = shape_of(model_config(cfg.critic.path, "critic", cfg.critic.trust_remote_code), "critic")
    mp = str(getattr(cfg.trainer.mixed_precision, "value", cfg.trainer.mixed_precision))
    kind = "HSDP" if shard < world else "FSDP2 full shard"
    header = (f"memory plan per GPU: {world} rank(s), {kind} over {shard}, compute {mp}, "
              f"weights {cfg.model.dtype} (policy) / {cfg.critic.dtype} (critic) + AdamW")
    p = MemoryPlan(world, shard, gpu_bytes, header)
    trained = [("policy", policy, _BYTES[cfg.model.dtype])]
    if critic is not None:
        trained.append(("critic", critic, _BYTES[cfg.critic.dtype]))
    for name, shape, b in trained:
        p.models.append((name, shape, shape.n_params * b / shard, shape.n_params * b / shard,
                         2 * shape.n_params * b / shard))
    if cfg.algorithm.kl_coef > 0 or cfg.algorithm.kl_in_reward_coef > 0:
        p.models.append(("reference", policy, policy.n_params * _BYTES[cfg.model.dtype] / shard, 0.0, 0.0))
    if d.cpu_offload:
        p.offloaded = p.states
        p.models = [(n, s, 0.0, 0.0, 0.0) for n, s, *_ in p.models]
    p.phases = {k: (p.states + b, how) for k, (b, how) in _phase_terms(cfg, policy, critic, world).items()}
    return p


def main(argv: Optional[list[str]] = None) -> int:
    """``sppo-plan [overrides]``: the memory plan of a config, e.g.

    ``sppo-plan experiment=paper_7b/sppo_small_critic distributed.nproc_per_node=4 distributed.gpu_memory_gb=80``
    """
    from hydra import compose, initialize_config_dir

    from sppo_runner.cli import CONF_DIR, _register
    from sppo_runner.config import to_object

    _register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = to_object(compose("config", overrides=list(sys.argv[1:] if argv is None else argv)))
    d = cfg.distributed
    world = max(1, d.nproc_per_node) * max(1, d.nnodes)
    p = plan(cfg, world, d.gpu_memory_gb * GB if d.gpu_memory_gb else None)
    print(p.text())
    if not d.gpu_memory_gb:
        print("  (no verdict: set distributed.gpu_memory_gb, e.g. 80)")
    return 0 if p.fits is not False else 1
