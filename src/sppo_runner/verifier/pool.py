"""Worker processes for symbolic comparisons, killed and replaced on timeout.

Workers are fresh interpreters (``python -m sppo_runner.verifier._worker``),
i.e. spawn semantics: nothing is forked from a parent that may be running
torch threads, and, unlike multiprocessing's spawn, the trainer's ``__main__``
is not re-imported, so workers stay small and start fast. They also work from
daemonic processes (e.g. DataLoader workers), where multiprocessing refuses to
start children. Timeouts are enforced by the parent with ``select`` deadlines,
not signals, so grading works from any thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import wait
from pathlib import Path

from ._protocol import encode_frame

_HEADER_SIZE = 4
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
MAX_STARTUP_FAILURES = 3
_WORKER_MODULE = "sppo_runner.verifier._worker"


def default_workers() -> int:
    """``min(4, cpu_count)``: symbolic answers are a minority of a batch."""
    return max(1, min(4, os.cpu_count() or 1))


class _Worker:
    """One worker process and the parent's end of its pipes."""

    def __init__(self, memory_mb: int) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
        env["SPPO_VERIFIER_WORKER_MB"] = str(memory_mb)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", _WORKER_MODULE],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
            close_fds=True, start_new_session=True,  # no terminal SIGINT storms
        )
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.started = time.monotonic()
        self.ready = False
        self._buf = bytearray()

    def fileno(self) -> int:
        return self.proc.stdout.fileno()

    def send(self, answer: str, gold: str, kind: str = "") -> None:
        message = {"a": answer, "g": gold, "k": kind} if kind else {"a": answer, "g": gold}
        self.proc.stdin.write(encode_frame(message))
        self.proc.stdin.flush()

    def read(self) -> list[dict] | None:
        """Returns the complete messages available now; ``None`` at EOF."""
        import json

        try:
            chunk = os.read(self.fileno(), 1 << 16)
        except BlockingIOError:
            return []
        except OSError:
            return None
        if not chunk:
            return None
        self._buf += chunk
        out = []
        while len(self._buf) >= _HEADER_SIZE:
            size = int.from_bytes(self._buf[:_HEADER_SIZE], "big")
            if len(self._buf) < _HEADER_SIZE + size:
                break
            body = bytes(self._buf[_HEADER_SIZE:_HEADER_SIZE + size])
            del self._buf[:_HEADER_SIZE + size]
            out.append(json.loads(body))
        return out

    def kill(self) -> None:
        """Kills the process (SIGKILL: a stuck sympy call ignores anything softer)."""
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class _State:
    """Everything the finalizer needs, kept apart from the pool object."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.idle: list[_Worker] = []
        self.live = 0


def _shutdown(state: _State) -> None:
    if state.pid != os.getpid():
        return  # a forked child must not kill its parent's workers
    while state.idle:
        state.idle.pop().kill()
    state.live = 0


class WorkerPool:
    """A lazily started pool of comparison workers.

    Args:
        workers: number of processes; ``None`` for :func:`default_workers`;
            ``0`` compares in-process with no timeout (debugging only).
        timeout_s: hard wall-clock limit per comparison.
        memory_mb: address-space cap per worker.
        startup_timeout_s: how long a new worker may take to become ready.
    """

    def __init__(self, workers: int | None, *, timeout_s: float, memory_mb: int,
                 startup_timeout_s: float = 60.0) -> None:
        self.size = default_workers() if workers is None else int(workers)
        if self.size < 0:
            raise ValueError("workers must be >= 0")
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.startup_timeout_s = startup_timeout_s
        self._cond = threading.Condition()
        self._state = _State()
        self._finalizer = weakref.finalize(self, _shutdown, self._state)

    def compare(self, pairs: Sequence[tuple[str, ...]]) -> list[str]:
        """Compares ``(answer, gold)`` pairs; returns one status per pair.

        A third item names another comparison (``"reference"``: the symbolic step
        of :mod:`reference_rule`).
        """
        if not pairs:
            return []
        if self.size == 0:
            from ._worker import compare_request

            return [compare_request(*p) for p in pairs]
        workers = self._checkout(min(len(pairs), self.size))
        try:
            return _Run(self, workers, pairs).run()
        finally:
            self._checkin(workers)

    def warm_up(self) -> None:
        """Starts all workers now and waits until they are ready."""
        if self.size:
            self.compare([("1", "1")] * self.size)

    def close(self) -> None:
        """Kills idle workers; the pool starts new ones if used again."""
        with self._cond:
            self._reset_after_fork()
            _shutdown(self._state)
            self._cond.notify_all()

    # -- checkout -------------------------------------------------------------
    def _reset_after_fork(self) -> None:
        if self._state.pid != os.getpid():
            self._state = _State()
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _shutdown, self._state)

    def _checkout(self, n: int) -> list[_Worker]:
        with self._cond:
            self._reset_after_fork()
            state = self._state
            while not state.idle and state.live >= self.size:
                self._cond.wait()
            taken = [state.idle.pop() for _ in range(min(n, len(state.idle)))]
            while len(taken) < n and state.live < self.size:
                taken.append(_Worker(self.memory_mb))
                state.live += 1
            return taken

    def _checkin(self, workers: list[_Worker]) -> None:
        with self._cond:
            if self._state.pid != os.getpid():
                return
            for w in workers:
                if w.proc.poll() is None:
                    self._state.idle.append(w)
                else:
                    w.kill()
                    self._state.live -= 1
            self._cond.notify_all()

    def _replace(self, workers: list[_Worker], old: _Worker) -> _Worker:
        old.kill()
        new = _Worker(self.memory_mb)
        workers[workers.index(old)] = new
        return new


class _Run:
    """One batch of comparisons over a set of checked-out workers."""

    def __init__(self, pool: WorkerPool, workers: list[_Worker],
                 pairs: Sequence[tuple[str, str]]) -> None:
        self.pool = pool
        self.workers = workers
        self.pairs = pairs
        self.results: list[str | None] = [None] * len(pairs)
        self.pending = deque(range(len(pairs)))
        self.busy: dict[_Worker, tuple[int, float]] = {}
        self.startup_failures = 0

    def run(self) -> list[str]:
        while self.pending or self.busy:
            self._dispatch()
            if not self.busy and not any(not w.ready for w in self.workers):
                break  # no worker can make progress
            for w in wait(self.workers, timeout=self._wait_s()):
                self._on_readable(w)
            self._enforce_deadlines()
        return [r if r is not None else "error" for r in self.results]

    def _dispatch(self) -> None:
        for w in list(self.workers):
            if not self.pending or not w.ready or w in self.busy:
                continue
            i = self.pending.popleft()
            try:
                w.send(*self.pairs[i])
            except OSError:
                self.results[i] = "error"
                self._restart(w)
                continue
            self.busy[w] = (i, time.monotonic() + self.pool.timeout_s)

    def _wait_s(self) -> float:
        now = time.monotonic()
        deadlines = [d for _, d in self.busy.values()]
        deadlines += [w.started + self.pool.startup_timeout_s
                      for w in self.workers if not w.ready]
        return max(0.0, min(deadlines) - now) if deadlines else 0.0

    def _on_readable(self, w: _Worker) -> None:
        messages = w.read()
        if messages is None:  # the worker died (crash, OOM kill)
            if w in self.busy:
                i, _ = self.busy.pop(w)
                self.results[i] = "error"
            elif not w.ready:
                self.startup_failures += 1
            self._restart(w)
            return
        for msg in messages:
            if msg.get("ready"):
                w.ready = True
            elif w in self.busy:
                i, _ = self.busy.pop(w)
                self.results[i] = str(msg.get("s", "error"))

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for w, (i, deadline) in list(self.busy.items()):
            if now >= deadline:
                del self.busy[w]
                self.results[i] = "timeout"
                self._restart(w)
        for w in list(self.workers):
            if not w.ready and now >= w.started + self.pool.startup_timeout_s:
                self.startup_failures += 1
                self._restart(w)

    def _restart(self, w: _Worker) -> None:
        """Replaces a worker, or retires it after repeated startup failures."""
        self.busy.pop(w, None)
        if self.startup_failures >= MAX_STARTUP_FAILURES:
            w.kill()
            self.workers.remove(w)
            with self.pool._cond:
                self.pool._state.live -= 1
            return
        self.pool._replace(self.workers, w)
