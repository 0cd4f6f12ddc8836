"""Worker processes for CPU rollouts: one core each, no GIL shared between them.

Threads decoding separate chunks hand the GIL back and forth at every op; with
small chunks the Python between kernels of one thread holds up the other (about
12% of a 32-row decode step on a 2-core machine, measured). Processes do not
share a GIL. The policy's parameters are moved to shared memory once
(``Module.share_memory``) and sent to every worker, so the optimizer's in-place
updates in the trainer reach the workers without copying weights per call.

Workers are fresh interpreters (``python -m sppo_runner.rollout._worker``), as
the verifier's: nothing is forked from a parent running torch threads, and,
unlike multiprocessing's spawn, the caller's ``__main__`` is not re-imported,
so scripts and notebooks need no ``if __name__ == "__main__"`` guard. Each one
talks to the parent over a socket pair with multiprocessing's pickler, which
passes shared tensors as file descriptors (the worker gets the parent's
authkey to fetch them).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import traceback
import weakref
from multiprocessing.connection import Connection, wait
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing  # noqa: F401 - registers tensor sharing with the pickler

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_AUTHKEY_ENV = "SPPO_ROLLOUT_AUTHKEY"


def _fingerprint(model: torch.nn.Module) -> tuple:
    """Identity of the model's tensor storage; changes when any tensor is replaced."""
    tensors = list(model.parameters()) + list(model.buffers())
    return (id(model),) + tuple(t.data_ptr() for t in tensors)


class _Worker:
    """One worker process and the parent's end of its connection."""

    def __init__(self, index: int) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
        env[_AUTHKEY_ENV] = bytes(multiprocessing.current_process().authkey).hex()
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = "1"
        # glibc: keep freed memory instead of unmapping it; decoding reallocates
        # the same multi-MB buffers every call, and fresh pages fault on first use.
        env.update(MALLOC_MMAP_THRESHOLD_="1073741824", MALLOC_TRIM_THRESHOLD_="4294967296")
        self.name = f"rollout worker {index}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sppo_runner.rollout._worker", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), env=env, start_new_session=True,  # no terminal SIGINT storms
        )
        theirs.close()
        self.conn = Connection(ours.detach())

    def ask_to_stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass  # already gone

    def join(self) -> None:
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5.0)
        self.conn.close()


class ProcessPool:
    """Persistent worker processes that generate chunks on shared-memory weights.

    Args:
        workers: Processes (each runs torch with one intra-op thread).
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._procs: list[_Worker] = []
        self._sent: tuple | None = None
        self._finalizer = None
        self._calls = 0  # lets a worker build the fused weights once per call, not per job

    def _send_model(self, model: torch.nn.Module, tokenizer) -> None:
        if self._sent == _fingerprint(model):
            return
        model.share_memory()  # in place: the trainer keeps the same Parameter objects
        for w in self._procs:
            w.conn.send(("model", model, tokenizer))
        self._sent = _fingerprint(model)

    def run(self, model: torch.nn.Module, tokenizer, jobs: list[dict]) -> list[tuple]:
        """Runs ``jobs`` (see :func:`run_job`) across the workers, results in job order.

        Raises:
            RuntimeError: A job raised (the worker's traceback is included) or a
                worker died; the pool is closed and restarts on the next call.
        """
        if not self._procs:
            self._procs = [_Worker(i) for i in range(self.workers)]
            self._finalizer = weakref.finalize(self, _shutdown, self._procs)
        try:
            self._send_model(model, tokenizer)
            self._calls += 1
            pending = {i: job for i, job in enumerate(jobs)}
            busy: dict[_Worker, int] = {}
            out: dict[int, tuple] = {}
            while pending or busy:
                for w in self._procs:
                    if w not in busy and pending:
                        i = min(pending)
                        w.conn.send(("run", self._calls, pending.pop(i)))
                        busy[w] = i
                for conn in wait([w.conn for w in busy], timeout=1.0):
                    w = next(w for w in busy if w.conn is conn)
                    error, result = w.conn.recv()
                    if error is not None:
                        raise RuntimeError(f"{w.name} failed:\n{error}")
                    out[busy.pop(w)] = result
                dead = [w for w in busy if w.proc.poll() is not None]
                if dead:
                    raise RuntimeError(f"{dead[0].name} exited with code {dead[0].proc.returncode}")
        except (RuntimeError, OSError, EOFError) as err:
            self.close()
            raise RuntimeError(f"CPU rollout failed: {err}; the workers restart on the next call") from err
        except BaseException:
            self.close()  # e.g. Ctrl-C: results still in flight must not reach a later call
            raise
        return [out[i] for i in range(len(jobs))]

    def close(self) -> None:
        """Stops the workers (idempotent); a later :meth:`run` starts new ones."""
        if self._finalizer is not None:
            self._finalizer()
        self._procs, self._sent, self._finalizer = [], None, None


def _shutdown(procs: list[_Worker]) -> None:
    for w in procs:
        w.ask_to_stop()
    for w in procs:
        w.join()


def serve(fd: int) -> None:
    """Worker main loop over the connection on ``fd``: keeps the latest model, runs jobs."""
    key = os.environ.get(_AUTHKEY_ENV)
    if key:  # fetching the parent's shared tensors is authenticated with its key
        multiprocessing.current_process().authkey = bytes.fromhex(key)
    torch.set_num_threads(1)
    conn = Connection(fd)
    model = tokenizer = None
    cache: dict = {}  # stop-string checkers; the fused weights of the current call
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if msg is None:
            return
        if msg[0] == "model":
            _, model, tokenizer = msg
            model.eval()
            cache = {}
            continue
        _, call, job = msg
        try:
            conn.send((None, run_job(model, tokenizer, job, call, cache)))
        except Exception:  # noqa: BLE001 - reported to the parent, which raises it
            conn.send((traceback.format_exc(), None))


def run_job(model: torch.nn.Module, tokenizer, job: dict, call: int, cache: dict) -> tuple:
    """Generates one chunk described by plain data (see ``NativeEngine._job``).

    The fused weights are copies of the parameters, so they are rebuilt once
    per pool call (the trainer updates the parameters between calls) and
    shared by that call's jobs, as the in-process path does.

    Returns:
        ``tokens [b, max_new]``, ``logprobs [b, max_new]`` and ``lengths [b]``
        as numpy arrays.
    """
    from sppo_runner.rollout.chunk import forward_only, generate_chunk, make_decoder
    from sppo_runner.rollout.decoders import FusedWeights
    from sppo_runner.rollout.sampling import StopChecker

    stops = None
    if job["params"].stop:
        key = (job["params"].stop, job["vocab"])
        if key not in cache:
            cache[key] = StopChecker(tokenizer, job["params"].stop, job["vocab"], torch.device("cpu"))
        stops = cache[key]
    with torch.inference_mode():
        if job["fused"] and cache.get("weights_call") != call:
            cache["weights"], cache["weights_call"] = FusedWeights(model), call
        decoder = make_decoder(model, cache["weights"] if job["fused"] else None)
        ids, mask = torch.from_numpy(job["ids"]), torch.from_numpy(job["mask"])
        if job.get("bare"):
            forward_only(decoder, ids, mask, job["params"].max_new_tokens)
            return ()
        out = generate_chunk(
            decoder,
            ids,
            mask,
            job["repeat"],
            job["params"],
            torch.Generator().manual_seed(job["seed"]),
            job["eos_ids"],
            stops,
            job["pad_id"],
            job["compact_ratio"],
        )
    return tuple(np.ascontiguousarray(t.numpy()) for t in out)


def as_tensors(result: tuple) -> tuple[torch.Tensor, ...]:
    """A worker's numpy result as tensors."""
    return tuple(torch.from_numpy(a) for a in result)
