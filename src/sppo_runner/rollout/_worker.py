"""Entry point of a CPU rollout worker process (see :mod:`sppo_runner.rollout.workers`)."""

import os
import sys

from sppo_runner.rollout.workers import serve

if __name__ == "__main__":
    serve(int(sys.argv[1]))
    # Nothing to flush: skip the interpreter's teardown (about a second with torch loaded).
    os._exit(0)
