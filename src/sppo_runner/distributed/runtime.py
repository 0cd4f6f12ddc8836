"""The process group, this rank's device, and the few collectives the runner needs.

:class:`Dist` is the one object the rest of the runner asks about data parallelism. In one
process every method is the identity (no process group is needed), so the training loop is
the same code for 1 and N ranks. Under ``torchrun`` (or any launcher that sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``) :func:`setup` joins the
process group with a bounded timeout: a dead or hung rank makes the others' next collective
fail after at most ``distributed.timeout_s`` (see :mod:`sppo_runner.distributed.launch`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.distributed as tdist

from sppo_runner.distributed.reduce import NORMALIZER_OPS, reduce_eval_dicts, reduce_metric_dicts

log = logging.getLogger(__name__)
T = TypeVar("T")
# Seeds of rank r > 0 are offset by r times this prime; rank 0 keeps the single-process seed.
_RANK_SEED_STRIDE = 1_000_003


def env_rank() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the launcher's environment; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


@dataclass
class Dist:
    """This process's place in the job, and reductions over every rank.

    Attributes:
        rank: Global rank (0 writes files, logs and talks to W&B).
        world: Number of ranks.
        local_rank: Rank on this node (picks the GPU).
        device: Where this rank's models and batches live.
        sharded: Models are wrapped with FSDP2 (``distributed.fsdp``).
        mesh: The FSDP device mesh (1-D; 2-D ``(replicate, shard)`` for HSDP), or None.
        write: Prints a line on rank 0 (the Tracker's ``write`` once it exists).
        plan: The :class:`~sppo_runner.distributed.memory.MemoryPlan` printed at start, or None.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    sharded: bool = False
    mesh: Any = None
    write: Callable[[str], None] = print
    plan: Any = None
    _peak_reported: bool = False

    # ---- basics --------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """A process group exists and has more than one rank."""
        return self.world > 1 and tdist.is_available() and tdist.is_initialized()

    @property
    def _comm_device(self) -> torch.device:
        """Tensors for collectives: NCCL needs them on the GPU, gloo on the CPU."""
        nccl = self.active and tdist.get_backend() == "nccl"
        return self.device if nccl else torch.device("cpu")

    def rank_seed(self, seed: int) -> int:
        """A seed of this rank's own sampling stream (rank 0 keeps ``seed``)."""
        return seed + _RANK_SEED_STRIDE * self.rank

    def barrier(self) -> None:
        if self.active:
            tdist.barrier()

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share ``items[rank::world]`` (all of it in one process)."""
        return list(items[self.rank :: self.world])

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        tdist.all_gather_object(out, obj)
        return out

    def _gather_rows(self, values: Sequence[float]) -> torch.Tensor:
        """``[world, len(values)]`` float64: every rank's values (one small collective)."""
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._comm_device)
        if not self.active:
            return t[None].cpu()
        parts = [torch.empty_like(t) for _ in range(self.world)]
        tdist.all_gather(parts, t)
        return torch.stack(parts).cpu()

    # ---- what the loop and the learner ask -----------------------------------------------
    def any(self, flag: bool) -> bool:
        """True when ``flag`` is true on any rank (e.g. a stop signal reached one of them)."""
        return bool(self._gather_rows([float(flag)]).max() > 0)

    def all(self, flag: bool) -> bool:
        """True when ``flag`` is true on every rank (choices that change collectives must agree)."""
        return bool(self._gather_rows([float(flag)]).min() > 0)

    def step_totals(self, prompts: int, samples: int, tokens: int, seconds: float) -> tuple[int, int, int, float]:
        """Global counts of one step and the slowest rank's seconds (budgets see the same numbers)."""
        rows = self._gather_rows([prompts, samples, tokens, seconds])
        p, s, t = (int(round(float(x))) for x in rows[:, :3].sum(0))
        return p, s, t, float(rows[:, 3].max())

    def global_normalizer(self, norm: T) -> T:
        """A loss normalizer whose counts cover every rank's share of the mini-batch.

        Each field reduces as :data:`~sppo_runner.distributed.reduce.NORMALIZER_OPS` says
        (token and sequence counts add up, a padded length is the longest), so that N ranks
        compute shares of the one global loss. The identity in one process.
        """
        if not self.active:
            return norm
        names = [f.name for f in fields(norm)]
        unknown = [n for n in names if n not in NORMALIZER_OPS]
        names = [n for n in names if NORMALIZER_OPS.get(n) != "local"]
        if unknown:
            raise TypeError(f"Normalizer fields {unknown} have no cross-rank reduction: add them to "
                            "sppo_runner.distributed.reduce.NORMALIZER_OPS")
        rows = self._gather_rows([getattr(norm, n) for n in names])
        reduced = {n: float(rows[:, i].sum() if NORMALIZER_OPS[n] == "sum" else rows[:, i].max())
                   for i, n in enumerate(names)}
        return replace(norm, **reduced)

    def reduce_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Step metrics over every rank (sums, maxima or means by name; see ``reduce.py``)."""
        return metrics if not self.active else reduce_metric_dicts(self.gather(metrics))

    def reduce_eval(self, metrics: dict[str, float]) -> dict[str, float]:
        """Held-out metrics of the ranks' shards, combined as if one rank had scored every problem."""
        return metrics if not self.active else reduce_eval_dicts(self.gather(metrics))

    def memory_metrics(self) -> dict[str, float]:
        """Peak memory, the largest over ranks; the first call also prints it beside the plan."""
        from sppo_runner.telemetry import memory_metrics

        m = self.reduce_metrics(memory_metrics(self.device))
        if not self._peak_reported and self.plan is not None:
            self._peak_reported = True
            if self.rank == 0:
                self.write(self.plan.measured_line(m))
        return m

    def close(self) -> None:
        """Leaves the process group this object joined (a no-op in one process)."""
        if tdist.is_available() and tdist.is_initialized():
            tdist.destroy_process_group()


def resolve_device(name: str, local_rank: int) -> torch.device:
    """``auto``/``cuda`` give this rank's GPU (``cuda:<LOCAL_RANK>``) when CUDA exists, else the CPU.

    Raises:
        ConfigError: ``trainer.device`` names a CUDA device this machine does not have.
    """
    from sppo_runner.models import resolve_device as checked_device

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and torch.cuda.is_available():
        name = f"cuda:{local_rank}"
    return checked_device(name)


def init_process_group(backend: str, device: torch.device, world: int, rank: int, timeout_s: float) -> None:
    """Joins (or, with one rank and no launcher, creates) the default process group."""
    if tdist.is_initialized():
        return
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    kwargs: dict[str, Any] = {"timeout": timedelta(seconds=timeout_s)}
    if "MASTER_ADDR" not in os.environ:  # one process, no launcher: an in-memory store is enough
        kwargs.update(store=tdist.HashStore(), rank=rank, world_size=world)
    tdist.init_process_group(backend, **kwargs)


def quiet_other_ranks(rank: int) -> None:
    """Ranks > 0 log warnings and errors only, each line tagged with the rank."""
    if rank == 0:
        return
    root = logging.getLogger()
    root.setLevel(logging.WARNING)

    def tag(record: logging.LogRecord) -> bool:
        record.msg = f"[rank {rank}] {record.msg}"
        return True

    for handler in root.handlers:
        handler.addFilter(tag)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
