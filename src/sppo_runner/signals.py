"""Stop requests: SIGTERM, SIGHUP and a first Ctrl-C end the run cleanly after the current step.

The first signal sets a flag (and says so on stderr); the loop checks it between steps (an
evaluation in progress finishes first), writes a checkpoint and returns; ``sppo-run`` then
exits with ``128 + signal number`` (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP) so that
shells, schedulers and ``-m`` sweeps see the interruption. A second signal stops at once
(``KeyboardInterrupt``; the last checkpoint stays the one to resume).

SIGHUP is what a closed terminal or a dropped SSH session sends: it is treated like SIGTERM,
and the terminal's file descriptors are pointed at ``/dev/null`` so that the progress bar's
next write does not fail on the vanished terminal (the run's log file keeps logging).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Optional

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))


def _say(text: str) -> None:
    try:
        os.write(2, text.encode())
    except OSError:
        pass  # no terminal any more


def _detach_terminal() -> None:
    """Points stdout/stderr at /dev/null where they are a terminal (that is gone after SIGHUP)."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            try:
                if os.isatty(fd):
                    os.dup2(null, fd)
            except OSError:
                os.dup2(null, fd)  # the terminal is already unusable
    finally:
        os.close(null)


class StopFlag:
    """Signal handler and flag: ``requested`` after a first signal; ``signum`` says which."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum
        name = signal.Signals(signum).name
        if signum == getattr(signal, "SIGHUP", None):
            _detach_terminal()
        again = "press Ctrl-C again to stop at once" if signum == signal.SIGINT else "a second signal stops at once"
        _say(f"\nsppo-run: received {name}: stopping after the current step (or evaluation) and writing a "
             f"checkpoint; {again}\n")

    def install(self) -> dict[int, Any]:
        """Installs the handler for :data:`STOP_SIGNALS`; returns the old handlers.

        Handlers can only be installed from the main thread (not from a notebook's worker
        thread, say): elsewhere nothing is installed.
        """
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self) for sig in STOP_SIGNALS}

    @staticmethod
    def restore(old: dict[int, Any]) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)
