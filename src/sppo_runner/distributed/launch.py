"""Starting a job's ranks, one run folder for all of them, and what a dead or hung rank says.

* :func:`torchrun_args` / :func:`relaunch`: ``sppo-run distributed.nproc_per_node=N ...``,
  and each job of a submitit sweep (``hydra/launcher=slurm``: ``gpus_per_node`` x ``nodes``),
  runs its ranks under ``torchrun`` in the job's own folder (multi-node: c10d rendezvous on
  the job's first node).
* :func:`agree_across_ranks`: the run folder of a job started directly under ``torchrun`` is
  claimed by rank 0 and shared through torchrun's own store, so every rank writes one folder.
* :func:`explain_failures`: a collective that fails because another rank died (its
  connection closed) or hung (``distributed.timeout_s`` passed) becomes one clear message
  naming the last complete checkpoint and the resume command.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from sppo_runner.errors import UserError

# Words of the errors a collective raises when a peer died (its connection closed) or hung (timeout).
_PEER_HINTS = ("gloo", "nccl", "connection closed by peer", "connection reset by peer", "broken pipe",
               "timed out waiting", "watchdog")


class RankFailure(UserError):
    """Another rank of the job died or hung; this rank stops (one line, exit status 2)."""


def under_launcher() -> bool:
    """This process is one rank of a launched job (torchrun, or a launcher that sets the env)."""
    return "LOCAL_RANK" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", 1)) > 1


def agree_across_ranks(key: str, make: Callable[[], str]) -> str:
    """``make()`` on rank 0 of a torchrun job, and the same value on every other rank.

    Rank 0 publishes the value in torchrun's own store, which the other ranks read (waiting for
    it up to two minutes): a run folder is claimed once (``rundir.new_folder``), not once per rank.

    Raises:
        RuntimeError: Several ranks without torchrun's store (a launcher that only sets the env).
    """
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return make()
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() != "true":
        raise RuntimeError("several ranks without torchrun: pass hydra.run.dir=<folder> (the same on every rank), "
                           "or start the job with torchrun")
    from torch.distributed import TCPStore

    store = TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                     timeout=_dt.timedelta(seconds=120))
    key = f"sppo/{key}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    if int(os.environ.get("RANK", 0)) == 0:
        value = make()
        store.set(key, value)
        return value
    return store.get(key).decode()


def _launcher_resources(hc: Any) -> tuple[int, int]:
    """(gpus per node, nodes) of a submitit launcher; (0, 0) for any other launcher."""
    launcher = hc.launcher
    if "submitit" not in str(launcher.get("_target_", "")):
        return 0, 0
    return int(launcher.get("gpus_per_node") or 0), int(launcher.get("nodes") or 0)


def torchrun_args(cfg: Any, hc: Any) -> Optional[list[str]]:
    """torchrun's arguments for this job's ranks, or None when this process is the only rank.

    Ranks per node: ``distributed.nproc_per_node``, else a submitit launcher's
    ``gpus_per_node``; nodes: ``distributed.nnodes``, else the launcher's ``nodes``.
    """
    if under_launcher():
        return None
    gpus, nodes = _launcher_resources(hc)
    nproc = cfg.distributed.nproc_per_node or gpus or 1
    nnodes = cfg.distributed.nnodes or nodes or 1
    if nproc * nnodes == 1:
        return None
    if nnodes == 1:
        return ["--standalone", f"--nproc_per_node={nproc}"]
    try:
        import submitit

        env = submitit.JobEnvironment()
        head, job = env.hostnames[0], str(env.job_id).split("_")[0]
    except RuntimeError as err:
        raise RuntimeError("distributed.nnodes > 1 starts ranks only inside a SLURM job of the submitit launcher "
                           "(hydra/launcher=slurm); elsewhere run torchrun on each node yourself") from err
    port = cfg.distributed.rdzv_port or 20000 + int("".join(c for c in job if c.isdigit()) or 0) % 20000
    return [f"--nnodes={nnodes}", f"--nproc_per_node={nproc}", "--rdzv-backend=c10d",
            f"--rdzv-endpoint={head}:{port}", f"--rdzv-id={job}"]


def job_overrides(hc: Any, cfg: Any) -> list[str]:
    """This job's command-line overrides, its Hydra job name (one log file) and a sweep's W&B group."""
    out = [*hc.overrides.task, f"hydra.job.name={hc.job.name}"]
    group = cfg.logger.wandb.group
    if getattr(hc.mode, "name", hc.mode) == "MULTIRUN" and group and not any(o.startswith("logger.wandb.group=") for o in out):
        out.append(f"logger.wandb.group={group}")
    return out


def relaunch(args: list[str], overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """Runs this job's command under torchrun in ``run_dir`` and waits; returns its summary.

    Signals (SIGTERM from a scheduler, SIGINT) are passed on to torchrun, which passes them
    to the ranks: they checkpoint at the next step boundary and stop.

    Raises:
        RankFailure: When torchrun exits non-zero (its report names the rank that failed).
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", *args, "-m", "sppo_runner", *overrides,
           f"hydra.run.dir={run_dir}"]
    print(f"starting ranks: torchrun {' '.join(args)} ... in {run_dir}", flush=True)
    proc = subprocess.Popen(cmd)
    signalled: list[int] = []

    def forward(sig: int, _: Any) -> None:
        signalled.append(sig)
        proc.send_signal(sig)

    old = {}
    if threading.current_thread() is threading.main_thread():
        old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        rc = proc.wait()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    summary = Path(run_dir) / "summary.json"
    if rc != 0 and signalled:
        return {"stop_reason": "interrupted"}  # the ranks checkpointed and stopped (exit 130 each)
    if rc != 0:
        raise RankFailure(f"torchrun exited with status {rc} (its report above names the failed rank); "
                          f"resume with: sppo-run resume={run_dir}")
    return json.loads(summary.read_text()) if summary.exists() else {}


def _is_peer_failure(err: BaseException) -> bool:
    import torch.distributed as tdist

    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:  # (the group itself is already closed by now)
        return False
    if isinstance(err, getattr(tdist, "DistError", ())):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(h in text for h in _PEER_HINTS)


def _finish_first(signum: int, _: Any) -> None:
    """SIGTERM outside the training loop of a multi-rank job: finish tearing down, then exit.

    torchrun sends SIGTERM to every rank as soon as one has died; the default action would
    kill a surviving rank before it can say why it stopped. torchrun (and SLURM) still send
    SIGKILL after their grace period (30 s), so nothing can hang on this.
    """
    logging.getLogger(__name__).warning("signal %d outside the training loop: finishing shutdown first", signum)


@contextmanager
def explain_failures(run_dir: Path, timeout_s: float) -> Iterator[None]:
    """Turns a collective's failure (a rank died or hung) into a :class:`RankFailure` message.

    In a multi-rank job SIGTERM is deferred while this block runs (the loop's own handler,
    which checkpoints and stops at the next step, replaces it during training).
    """
    old = None
    if threading.current_thread() is threading.main_thread() and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        old = signal.signal(signal.SIGTERM, _finish_first)
    try:
        yield
    except Exception as err:  # noqa: BLE001 - only collective failures are rewritten
        if not _is_peer_failure(err):
            raise
        from sppo_runner.checkpoint import latest

        rank, world = int(os.environ.get("RANK", 0)), int(os.environ["WORLD_SIZE"])
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        ckpt = latest(run_dir)
        raise RankFailure(
            f"rank {rank} of {world}: another rank stopped answering ({first}). A rank died, or hung for more "
            f"than distributed.timeout_s={timeout_s:g} s; the job stops. Last complete checkpoint: "
            f"{ckpt or 'none yet'}. Continue with the same launcher and: sppo-run resume={run_dir}"
        ) from err
    if old is not None:  # (left deferred on failure: the process is on its way out)
        signal.signal(signal.SIGTERM, old)
