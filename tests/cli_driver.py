"""Runs ``sppo-run`` in this process with one timing or fault patched in, for subprocess tests.

    python tests/cli_driver.py PATCH [sppo-run arguments ...]

PATCH is one of:

* ``stamp=<date>/<time>``: default folders are named as if the run started at that second, so
  that two processes really race for one name;
* ``sigint-in-eval=<n>``: the process sends itself ``n`` SIGINTs as its first evaluation starts
  (the way Ctrl-C reaches it from a terminal, at a moment a test can count on);
* ``none``: nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _sigint_in_eval(n: int) -> None:
    from sppo_runner import run

    real, sent = run.evaluate, []

    def evaluate(*args, **kwargs):
        if not sent:
            sent.append(n)
            for _ in range(n):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # let the handler run before the next one
        return real(*args, **kwargs)

    run.evaluate = evaluate


def main() -> None:
    patch, *args = sys.argv[1:]
    name, _, value = patch.partition("=")
    if name == "stamp":
        from sppo_runner import rundir

        rundir._stamp = lambda: value
    elif name == "sigint-in-eval":
        _sigint_in_eval(int(value))
    elif name != "none":
        raise SystemExit(f"unknown patch {patch!r}")
    from sppo_runner.cli import train_main

    sys.argv = ["sppo-run", *args]
    train_main()


if __name__ == "__main__":
    main()
