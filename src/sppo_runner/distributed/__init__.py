"""Everything about running one training job on many processes, in one place.

``sppo-run`` under ``torchrun --nproc_per_node=N`` (or ``distributed.nproc_per_node=N``,
which starts torchrun itself) trains data-parallel with FSDP2-sharded models; the training
loop (``run.py``) is the same code as in one process and never asks for a rank:

* :mod:`.runtime`: the process group, this rank's device, the collectives the loop and the
  learner call (global step counts, loss normalizers, metrics, stop flags);
* :mod:`.reduce`: how per-rank metrics and normalizer counts combine;
* :mod:`.fsdp`: ``fully_shard`` with a ``MixedPrecisionPolicy``, and the rollout engine's
  full copy of the sharded policy;
* :mod:`.checkpoint`: sharded ``torch.distributed.checkpoint`` saves, resume on any world
  size, the final ``save_pretrained`` folders;
* :mod:`.memory`: the per-GPU memory plan (``sppo-plan``);
* :mod:`.launch`: starting ranks under torchrun (also for submitit sweep jobs), a run folder
  shared by all ranks, and the message when a rank dies or hangs.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch

from sppo_runner.config import ConfigError
from sppo_runner.distributed.runtime import Dist, env_rank, init_process_group, quiet_other_ranks, resolve_device

log = logging.getLogger(__name__)

__all__ = ["Dist", "setup", "shard_models", "rollout_engine", "shard_problems"]


def _check_world(cfg: Any, world: int) -> None:
    """Batch settings that must split evenly over ``world`` ranks (each rank's share is equal)."""
    p = cfg.data.prompts_per_step
    if p % world:
        raise ConfigError(f"config error at 'data.prompts_per_step': {p} prompts cannot be split evenly over {world} "
                          f"ranks; use a multiple of {world}")
    local = p // world * cfg.algorithm.samples_per_prompt
    if local < cfg.algorithm.mini_batches:
        raise ConfigError(f"config error at 'algorithm.mini_batches': each of the {world} ranks has {local} samples "
                          f"per step, fewer than {cfg.algorithm.mini_batches} mini-batches")


def _print_plan(cfg: Any, dist: Dist) -> None:
    """Prints the memory plan on rank 0 and stops when the states alone cannot fit the GPU."""
    from sppo_runner.distributed import memory

    gpu = cfg.distributed.gpu_memory_gb * memory.GB or None
    if gpu is None and dist.device.type == "cuda":
        gpu = float(torch.cuda.get_device_properties(dist.device).total_memory)
    try:
        dist.plan = memory.plan(cfg, dist.world, gpu)
    except Exception as err:  # noqa: BLE001 - the plan is an aid; a model it cannot count must not stop a run
        if dist.rank == 0:
            log.warning("memory plan unavailable: %s", err)
        return
    if dist.rank == 0:
        print(dist.plan.text(), flush=True)
    if cfg.distributed.memory_check and not dist.plan.states_fit:
        raise ConfigError(f"config error at 'distributed': the sharded states alone need "
                          f"{dist.plan.states / memory.GB:.1f} GB per GPU, more than the GPU's "
                          f"{gpu / memory.GB:.1f} GB. Use more GPUs (torchrun --nproc_per_node / --nnodes), "
                          "distributed.cpu_offload=true, or a smaller critic; distributed.memory_check=false "
                          "tries anyway")


def setup(cfg: Any) -> Dist:
    """Joins the process group when there are several ranks (or ``distributed.fsdp=on``).

    Checks that the batch splits evenly, quiets logging on ranks > 0, and prints the memory
    plan (sharded runs and GPU runs) before any weights are loaded.
    """
    rank, world, local = env_rank()
    d = cfg.distributed
    device = resolve_device(cfg.trainer.device, local)
    sharded = world > 1 or str(getattr(d.fsdp, "value", d.fsdp)) == "on"
    _check_world(cfg, world)
    mesh = None
    if sharded:
        init_process_group(d.backend, device, world, rank, d.timeout_s)
        from sppo_runner.distributed.fsdp import make_mesh

        mesh = make_mesh(device, world, d.shard_size)
    quiet_other_ranks(rank)
    dist = Dist(rank=rank, world=world, local_rank=local, device=device, sharded=sharded, mesh=mesh)
    if sharded or device.type == "cuda":
        _print_plan(cfg, dist)
    return dist


def load_device(dist: Dist) -> torch.device:
    """Where models are loaded: the CPU when they will be sharded (shards then move to the device)."""
    return torch.device("cpu") if dist.sharded else dist.device


def shard_models(dist: Dist, cfg: Any, policy: torch.nn.Module, critic: Optional[torch.nn.Module],
                 ref: Optional[torch.nn.Module]) -> tuple[Any, Any, Any, Any]:
    """FSDP2-wraps the models (unchanged in an unsharded run); also returns the rollout copy or None."""
    if not dist.sharded:
        return policy, critic, ref, None
    from sppo_runner.distributed.fsdp import RolloutCopy, rollout_dtype, shard

    copy = RolloutCopy(policy, rollout_dtype(cfg), dist.device)
    wrapped = [None if m is None else shard(m, dist.mesh, cfg) for m in (policy, critic, ref)]
    return (*wrapped, copy)


def rollout_engine(dist: Dist, engine: Any, policy: torch.nn.Module, learner: Any, copy: Any) -> Any:
    """The engine itself, or (sharded) one that samples from the policy's full rollout copy."""
    if copy is None:
        return engine
    from sppo_runner.distributed.fsdp import ShardedRollout

    return ShardedRollout(engine, policy, copy, learner.actor_opt, release=dist.device.type == "cuda")


def shard_problems(dist: Dist, enc: Any, key: str) -> Any:
    """This rank's share of a held-out set (evaluation is sharded, metrics are combined)."""
    if dist.world == 1:
        return enc
    from dataclasses import replace

    if len(enc.problems) < dist.world:
        raise ConfigError(f"config error at '{key}': {len(enc.problems)} held-out problems cannot be shared by "
                          f"{dist.world} ranks; use at least {dist.world}")
    return replace(enc, problems=dist.shard(enc.problems), token_ids=dist.shard(enc.token_ids))
