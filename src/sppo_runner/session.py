"""Building everything a run holds, and saving / restoring it for exact resume.

:class:`Session` is the run's whole state: models, optimizers (in the learner),
data sampler, RNG, counters and tracker. Nothing lives in module globals, so a
checkpoint of a Session is a checkpoint of the run.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import OmegaConf

from sppo_runner import checkpoint, distributed
from sppo_runner.algorithms import ALGORITHMS, AlgorithmSpec
from sppo_runner.benchmarks import load_benchmarks
from sppo_runner.checkpoint import Counters
from sppo_runner.data import load_datasets
from sppo_runner.data.prompts import EncodedProblems, encode, longest_prompt, require_prompts
from sppo_runner.data.sampler import PromptSampler
from sppo_runner.distributed import checkpoint as sharded_checkpoint
from sppo_runner.learner import Learner
from sppo_runner.models import check_context, load_critic, load_policy, load_reference, load_tokenizer, n_params
from sppo_runner.rollout import make_engine
from sppo_runner.rollout.base import SamplingParams
from sppo_runner.tracking import Tracker
from sppo_runner.verifier import Verifier

log = logging.getLogger(__name__)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass
class Session:
    """The state of one run (see module docstring)."""

    cfg: Any
    spec: AlgorithmSpec
    run_dir: Path
    device: torch.device
    tokenizer: Any
    policy: torch.nn.Module
    critic: Optional[torch.nn.Module]
    engine: Any
    verifier: Verifier
    learner: Learner
    train: EncodedProblems
    heldout: EncodedProblems
    sampler: PromptSampler
    gen: torch.Generator
    tracker: Tracker
    sampling: SamplingParams
    counters: Counters = field(default_factory=Counters)
    history: dict[str, Any] = field(default_factory=dict)
    rank: int = 0
    benchmarks: dict[str, EncodedProblems] = field(default_factory=dict)  # eval.benchmarks, encoded
    dist: distributed.Dist = field(default_factory=distributed.Dist)  # ranks, collectives (identity in one process)

    def trainer_state(self) -> dict[str, Any]:
        return {
            "learner": self.learner.state_dict(),
            "sampler": self.sampler.state_dict(),
            "gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "history": self.history,
            "wandb_id": self.tracker.wandb_id,
        }

    def save_checkpoint(self) -> Optional[Path]:
        if self.dist.sharded:  # every rank writes its shards
            return sharded_checkpoint.save(self)
        if self.rank != 0:
            return None
        return checkpoint.save(self.run_dir, self.counters, {"policy": self.policy, "critic": self.critic},
                               self.tokenizer, self.trainer_state(), self.cfg.trainer.keep_checkpoints)

    def save_final(self) -> None:
        """``final/policy`` (+ tokenizer) and ``final/critic``, loadable with ``from_pretrained``."""
        sharded_checkpoint.save_final(self, self.run_dir / "final")

    def close(self) -> None:
        self.verifier.close()
        self.engine.close()
        self.dist.close()


def engine_options(r: Any) -> dict[str, Any]:
    """Rollout-engine constructor options from ``cfg.rollout``."""
    opts: dict[str, Any] = {"micro_batch_size": r.micro_batch_size} if r.micro_batch_size else {}
    if r.backend == "native":
        parallel = r.cpu_parallel.value if hasattr(r.cpu_parallel, "value") else str(r.cpu_parallel)
        opts.update(workers=r.workers or None, parallel=parallel)
    if r.backend == "vllm":
        v = r.vllm
        opts.update(dataclasses.asdict(v) if dataclasses.is_dataclass(v) else OmegaConf.to_container(v))
    return opts


def sampling_params(cfg: Any) -> SamplingParams:
    r = cfg.rollout
    return SamplingParams(n=cfg.algorithm.samples_per_prompt, temperature=r.temperature, top_p=r.top_p,
                          top_k=r.top_k, max_new_tokens=r.max_new_tokens, stop=tuple(r.stop))


def _restore(s: Session, ckpt: Path, state: dict[str, Any]) -> None:
    if s.dist.sharded or sharded_checkpoint.is_sharded_checkpoint(state):
        return sharded_checkpoint.restore(s, ckpt, state)
    checkpoint.load_weights(s.policy, ckpt / "policy")
    if s.critic is not None:
        checkpoint.load_weights(s.critic, ckpt / "critic")
    s.learner.load_state_dict(state["learner"])
    s.sampler.load_state_dict(state["sampler"])
    s.gen.set_state(state["gen"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    s.history = state["history"]
    s.counters = Counters(**state["counters"])


def build_session(cfg: Any, run_dir: Path) -> Session:
    """Loads models and data and, when ``cfg.resume`` is set, restores the latest checkpoint."""
    from transformers.utils import logging as hf_logging

    # Per-file load/save bars of transformers would bury the run's own progress bar.
    hf_logging.disable_progress_bar()
    ckpt = checkpoint.latest(run_dir) if cfg.resume else None
    if cfg.resume and ckpt is None:
        raise FileNotFoundError(f"resume={cfg.resume}: no checkpoint under {run_dir}/checkpoints")
    dist = distributed.setup(cfg)  # process group, batch split checks, memory plan (before any weights)
    seed_everything(cfg.seed, cfg.trainer.deterministic)
    if cfg.trainer.threads > 0:
        torch.set_num_threads(cfg.trainer.threads)
    spec = ALGORITHMS[cfg.algorithm.name]
    device, where = dist.device, distributed.load_device(dist)
    tokenizer = load_tokenizer(cfg.model.path, cfg.model.trust_remote_code)
    policy = load_policy(cfg.model, where)
    critic = load_critic(cfg.critic, where) if spec.critic != "none" else None
    uses_ref = cfg.algorithm.kl_coef > 0 or cfg.algorithm.kl_in_reward_coef > 0
    ref = load_reference(cfg.model, where) if uses_ref else None
    sizes = {"policy": n_params(policy), "critic": n_params(critic)}
    policy, critic, ref, rollout_copy = distributed.shard_models(dist, cfg, policy, critic, ref)
    train_problems, heldout_problems = load_datasets(cfg.data, cfg.eval.n_problems)
    train = encode(train_problems, tokenizer, cfg.data)
    heldout = encode(heldout_problems, tokenizer, cfg.data)
    benchmarks = load_benchmarks(cfg, tokenizer)
    require_prompts({"training set": train, "held-out set": heldout, **{f"benchmark {k}": v for k, v in benchmarks.items()}},
                    cfg.data)
    check_context(cfg, spec.critic, policy, critic, longest_prompt(train, heldout, *benchmarks.values()))
    # Each rank evaluates its share of every held-out set; the metrics are gathered.
    heldout = distributed.shard_problems(dist, heldout, "eval.n_problems")
    benchmarks = {name: distributed.shard_problems(dist, enc, f"eval.benchmarks.{name}") for name, enc in benchmarks.items()}
    learner = Learner(spec, cfg, policy, critic, ref, seed=cfg.seed)
    learner.dp = dist  # global loss normalizers and rank-consistent choices
    sampler = PromptSampler(len(train.problems), cfg.data.prompts_per_step, cfg.seed, dist.rank, dist.world)
    config_dict = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    state = checkpoint.load_state(ckpt) if ckpt else {}
    tracker = Tracker(run_dir, config_dict, cfg.logger, cfg.trainer.steps, dist.rank, state.get("wandb_id"),
                      state.get("counters", {}).get("step", 0))
    dist.write = tracker.write
    engine = make_engine(cfg.rollout.backend, tokenizer, **engine_options(cfg.rollout))
    engine = distributed.rollout_engine(dist, engine, policy, learner, rollout_copy)  # sharded: a full copy
    verifier = Verifier(extractors=tuple(cfg.verifier.extractors), timeout_s=cfg.verifier.timeout_s,
                        workers=cfg.verifier.workers or None, rule=cfg.verifier.rule)
    s = Session(cfg, spec, Path(run_dir), device, tokenizer, policy, critic, engine, verifier, learner, train,
                heldout, sampler, torch.Generator().manual_seed(dist.rank_seed(cfg.seed)), tracker,
                sampling_params(cfg), rank=dist.rank, benchmarks=benchmarks, dist=dist)
    s.history["n_params"] = sizes
    if ckpt is not None:
        _restore(s, ckpt, state)
        log.info("resumed from %s at step %d", ckpt, s.counters.step)
    return s
