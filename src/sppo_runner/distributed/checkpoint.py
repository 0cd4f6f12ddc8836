"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP), and the final weights.

A sharded run's ``checkpoints/step_<N>/`` holds:

* ``sharded/``: models and optimizer states, one file per rank written by that rank
  (DCP's ``.metadata`` lets any world size read them back, resharded);
* ``rank_<r>.pt``: rank r's RNG states (its rollout generator, torch, Python, CUDA);
* ``trainer_state.pt``: what every rank shares (counters, sampler, history, the learner's
  shuffling state, the world size). Written last, by rank 0.

As in the single-process format (:mod:`sppo_runner.checkpoint`), everything is written
to ``.tmp_step_<N>/`` and renamed by rank 0 only after every rank has finished its files,
so a job killed mid-save leaves no folder that :func:`sppo_runner.checkpoint.list_checkpoints`
takes for complete (it requires ``trainer_state.pt`` in a ``step_<N>`` folder).
Multi-node runs need ``run_dir`` on a filesystem every node sees.
"""

from __future__ import annotations

import logging
import random
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from sppo_runner import checkpoint
from sppo_runner.checkpoint import Counters
from sppo_runner.distributed.fsdp import full_state_dict

log = logging.getLogger(__name__)

FORMAT = "dcp-1"


def _pairs(s: Any) -> list[tuple[str, torch.nn.Module, torch.optim.Optimizer]]:
    pairs = [("policy", s.policy, s.learner.actor_opt)]
    if s.critic is not None:
        pairs.append(("critic", s.critic, s.learner.critic_opt))
    return pairs


def _states(s: Any) -> dict[str, Any]:
    """Model and optimizer state dicts of this rank's shards, keyed for DCP."""
    out: dict[str, Any] = {}
    for name, model, opt in _pairs(s):
        out[name], out[f"{name}_optim"] = get_state_dict(model, opt)
    return out


def _rank_state(s: Any) -> dict[str, Any]:
    state = {"gen": s.gen.get_state(), "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}
    if s.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(s.device)
    return state


def save(s: Any) -> Optional[Path]:
    """Writes ``checkpoints/step_<N>`` from every rank (collective); returns the folder."""
    d = s.dist
    root = Path(s.run_dir) / "checkpoints"
    final, tmp = root / f"step_{s.counters.step}", root / f".tmp_step_{s.counters.step}"
    if d.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    d.barrier()
    dcp.save(_states(s), checkpoint_id=str(tmp / "sharded"))
    torch.save(_rank_state(s), tmp / f"rank_{d.rank:05d}.pt")
    d.barrier()  # every rank's files are on disk
    if d.rank == 0:
        shared = {
            "format": FORMAT, "world_size": d.world, "counters": asdict(s.counters),
            "sampler": s.sampler.state_dict(), "history": s.history, "wandb_id": s.tracker.wandb_id,
            "learner": {"shuffle": s.learner.shuffle.get_state(), "skipped": dict(s.learner.skipped)},
        }
        torch.save(shared, tmp / "trainer_state.pt")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in checkpoint.list_checkpoints(s.run_dir)[: -max(1, s.cfg.trainer.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)
    d.barrier()  # nobody reads or prunes before the rename
    return final


def is_sharded_checkpoint(state: dict[str, Any]) -> bool:
    return state.get("format") == FORMAT


def restore(s: Any, ckpt: Path, state: dict[str, Any]) -> None:
    """Loads a sharded checkpoint into the session (any world size; same size resumes exactly).

    Raises:
        RuntimeError: For a single-process checkpoint (``save_pretrained`` folders) under sharding.
    """
    if not is_sharded_checkpoint(state):
        raise RuntimeError(f"{ckpt} was written by a single-process run; resume it with one process "
                           "(distributed.fsdp=auto, no torchrun), or start a new sharded run")
    d = s.dist
    states = _states(s)
    dcp.load(states, checkpoint_id=str(Path(ckpt) / "sharded"))
    for name, model, opt in _pairs(s):
        set_state_dict(model, opt, model_state_dict=states[name], optim_state_dict=states[f"{name}_optim"])
    s.learner.shuffle.set_state(state["learner"]["shuffle"])
    s.learner.skipped = dict(state["learner"]["skipped"])
    s.sampler.load_state_dict(state["sampler"])
    s.history = state["history"]
    s.counters = Counters(**state["counters"])
    same_world = state["world_size"] == d.world
    own = Path(ckpt) / f"rank_{d.rank:05d}.pt"
    if same_world and own.exists():
        _set_rank_state(s, torch.load(own, map_location="cpu", weights_only=False), rollout=True)
        return
    # Another world size: weights and optimizer states are resharded exactly; sampling streams are not.
    _set_rank_state(s, torch.load(Path(ckpt) / "rank_00000.pt", map_location="cpu", weights_only=False),
                    rollout=False)
    s.gen.manual_seed(d.rank_seed(s.cfg.seed) + 7919 * s.counters.step)
    if d.rank == 0:
        log.warning("resumed a %d-rank checkpoint on %d ranks: weights and optimizer states are resharded, but "
                    "sampling randomness differs from an uninterrupted run", state["world_size"], d.world)


def _set_rank_state(s: Any, state: dict[str, Any], rollout: bool) -> None:
    if rollout:
        s.gen.set_state(state["gen"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    if "cuda_rng" in state and s.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], s.device)


def save_final(s: Any, folder: Path) -> None:
    """``folder/policy`` (with the tokenizer) and ``folder/critic`` as ``save_pretrained`` folders.

    Sharded weights are gathered to rank 0 first (every rank takes part); rank 0 writes.
    """
    for name, model in (("policy", s.policy), ("critic", s.critic)):
        if model is None:
            continue
        state = full_state_dict(model, s.dist.sharded)
        if s.dist.rank == 0:
            model.save_pretrained(Path(folder) / name, state_dict=state)
    if s.dist.rank == 0:
        s.tokenizer.save_pretrained(Path(folder) / "policy")
