"""FSDP2 sharding of the policy, critic and reference, and the full copy the rollout engine reads.

Each decoder block (``model._no_split_modules``) and then the whole model become
``fully_shard`` units over the device mesh: parameters, gradients and AdamW states are split
over the ranks of a shard group. Under ``trainer.mixed_precision=bf16`` a
``MixedPrecisionPolicy`` gathers weights in bfloat16 for compute and reduces gradients in
float32 into float32 master shards. Gradients are *summed* over ranks, not averaged: each
rank's loss is already its share of the global loss (global normalizers, see ``runtime.py``).

Rollout engines read whole weight tensors (and decode a different number of tokens on
each rank, which sharded forwards cannot do without matching collectives). They get an
unsharded copy instead (:class:`RolloutCopy`), refilled from the shards after each
optimizer step, right before the next rollout.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Optional

import torch
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from sppo_runner.config import ConfigError
from sppo_runner.models import DTYPES

log = logging.getLogger(__name__)
# The runner's code reads model outputs out of place (slices, then .float() / gather / sigmoid).
warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")

_COMPUTE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _value(x: Any) -> str:
    return str(getattr(x, "value", x))


def make_mesh(device: torch.device, world: int, shard_size: int) -> DeviceMesh:
    """A 1-D mesh over all ranks (FSDP), or ``(world / shard_size, shard_size)`` for HSDP."""
    if shard_size in (0, world):
        return init_device_mesh(device.type, (world,), mesh_dim_names=("shard",))
    if world % shard_size:
        raise ConfigError(f"config error at 'distributed.shard_size': {world} ranks cannot be split into "
                          f"shard groups of {shard_size}; use a divisor of {world} (or 0 for all ranks)")
    return init_device_mesh(device.type, (world // shard_size, shard_size), mesh_dim_names=("replicate", "shard"))


def mixed_precision_policy(mixed_precision: Any) -> MixedPrecisionPolicy:
    """bf16/fp16 compute with float32 gradient reduction; ``none`` keeps the weights' dtype."""
    compute = _COMPUTE_DTYPES.get(_value(mixed_precision))
    return MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=torch.float32 if compute else None)


def rollout_dtype(cfg: Any) -> torch.dtype:
    """The rollout copy's dtype: the compute dtype under mixed precision, else the policy's dtype."""
    return _COMPUTE_DTYPES.get(_value(cfg.trainer.mixed_precision), DTYPES[cfg.model.dtype])


def shard(model: torch.nn.Module, mesh: DeviceMesh, cfg: Any) -> torch.nn.Module:
    """Wraps every decoder block and then the root with ``fully_shard`` (in place; returns it).

    Args:
        model: A transformers model (policy, critic or frozen reference), on the CPU or the device.
        mesh: From :func:`make_mesh`.
        cfg: The run config (``distributed.*``, ``trainer.mixed_precision``).
    """
    d = cfg.distributed
    kwargs: dict[str, Any] = dict(mesh=mesh, mp_policy=mixed_precision_policy(cfg.trainer.mixed_precision),
                                  reshard_after_forward=d.reshard_after_forward)
    if d.cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    block_names = set(getattr(model, "_no_split_modules", None) or ())
    blocks = [m for m in model.modules() if type(m).__name__ in block_names]
    if not blocks:
        log.warning("%s names no decoder blocks (_no_split_modules): sharded as one unit", type(model).__name__)
    for block in blocks:
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
    for m in model.modules():
        if isinstance(m, FSDPModule):
            # Sum, do not average: the loss is already normalized by global counts. Plain SUM
            # collectives also work on gloo, which lacks NCCL's pre-multiplied sum.
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)
    return model


def full_tensor(p: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a (possibly sharded, possibly CPU-offloaded) parameter; collective."""
    if not isinstance(p, DTensor):
        return p
    local = p.to_local()
    if local.device.type != p.device_mesh.device_type:  # CPU offload: gather on the mesh's device
        local = local.to(p.device_mesh.device_type)
        p = DTensor.from_local(local, p.device_mesh, p.placements, shape=p.shape, stride=p.stride())
    return p.full_tensor()


class RolloutCopy:
    """An unsharded, gradient-free copy of the policy in the rollout dtype.

    Built on the meta device before the policy is sharded (no memory until the first
    :meth:`fill`). On CUDA it is released again as soon as the sharded policy runs a forward
    (the actor update), so its memory is free while activations need it.

    Args:
        model: The policy, before ``fully_shard``.
        dtype: The copy's dtype (:func:`rollout_dtype`).
        device: This rank's device.
    """

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype, device: torch.device) -> None:
        with torch.device("meta"):
            self.model = type(model)._from_config(model.config, dtype=dtype)
        if getattr(model, "generation_config", None) is not None:
            self.model.generation_config = model.generation_config
        self.model.requires_grad_(False).eval()
        self.device = device
        self.filled = False

    @torch.no_grad()
    def fill(self, source: torch.nn.Module) -> torch.nn.Module:
        """Copies the current weights of the sharded ``source`` in (every rank calls this)."""
        if self.model.device.type == "meta":
            self.model.to_empty(device=self.device)
            if hasattr(self.model, "tie_weights"):
                self.model.tie_weights()  # to_empty replaced the shared embedding/head parameter
        mine = dict(self.model.named_parameters())
        theirs = list(source.named_parameters())
        missing = set(mine) - {name for name, _ in theirs}
        if missing:
            raise RuntimeError(f"rollout copy has parameters the policy lacks: {sorted(missing)[:5]}")
        for name, p in theirs:
            mine[name].copy_(full_tensor(p))
        buffers = dict(self.model.named_buffers())
        for name, b in source.named_buffers():  # rotary tables etc. are not sharded
            buffers[name].copy_(b)
        self.filled = True
        return self.model

    def release(self) -> None:
        """Frees the copy's memory (it is refilled before the next rollout)."""
        if self.filled:
            self.model.to("meta")
            self.filled = False


class ShardedRollout:
    """A rollout engine that samples from the full :class:`RolloutCopy` of a sharded policy.

    ``generate(policy, ...)`` refills the copy when the policy changed (an optimizer step
    happened since the last fill) and runs the wrapped engine on it; any other model passes
    through. Everything else is the wrapped engine's.

    Args:
        engine: The backend engine (``rollout.backend``).
        policy: The sharded policy.
        copy: Its rollout copy.
        optimizer: The policy's optimizer; each step marks the copy stale.
        release: Free the copy whenever the sharded policy runs a forward (GPU memory).
    """

    def __init__(self, engine: Any, policy: torch.nn.Module, copy: RolloutCopy, optimizer: torch.optim.Optimizer,
                 release: bool) -> None:
        self.engine, self.policy, self.copy = engine, policy, copy
        self.stale = True
        optimizer.register_step_post_hook(self._mark_stale)
        if release:
            policy.register_forward_pre_hook(lambda *_: self.copy.release())

    def _mark_stale(self, *_: Any) -> None:
        self.stale = True

    def generate(self, model: torch.nn.Module, prompts: list[list[int]], params: Any,
                 generator: torch.Generator) -> Any:
        if model is self.policy:
            if self.stale or not self.copy.filled:
                self.copy.fill(self.policy)
                self.stale = False
            model = self.copy.model
        return self.engine.generate(model, prompts, params, generator)

    def close(self) -> None:
        self.engine.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


def full_state_dict(model: torch.nn.Module, sharded: bool) -> Optional[dict[str, torch.Tensor]]:
    """The whole state dict on rank 0's CPU (empty on other ranks; collective); None unsharded."""
    if not sharded:
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
