"""Peak memory of the current run: process RSS on CPU, allocated and reserved on CUDA.

The kernel's ``ru_maxrss`` is the peak of the whole process, so in a ``-m`` sweep (jobs run one
after another in one process) every job after a big one would report the big one's peak.
:func:`reset_peak_memory` starts a new peak at the start of each run: on Linux it resets the
process's high-water mark (``/proc/self/clear_refs``, Linux >= 4.0) and CUDA's peak counters.
Where the high-water mark cannot be reset, the run's peak is the process peak when the run
raised it, else the largest resident size sampled when metrics are logged (a lower bound; without
/proc, as on macOS, the process peak).
Rollout and verifier worker processes are not included: this is the trainer process.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
# Process-wide by nature (the kernel's counters are per process): the state of the current run.
_RUN = {"reset": False, "start_peak": 0.0, "sampled": 0.0}


def _status_mb(field: str) -> float | None:
    """A ``kB`` field of /proc/self/status in MiB (None where there is no /proc)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _process_peak_mb() -> float:
    """Peak resident set size in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def reset_peak_memory() -> bool:
    """Starts this run's peak; returns whether the RSS high-water mark could be reset."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS
        _RUN["reset"] = True
    except OSError:
        _RUN["reset"] = False
    _RUN["start_peak"] = _process_peak_mb()
    _RUN["sampled"] = _status_mb("VmRSS") or 0.0
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(i)
    return _RUN["reset"]


def peak_rss_mb() -> float:
    """Peak resident set size of this process since :func:`reset_peak_memory`, in MiB."""
    peak = _process_peak_mb()
    if _RUN["reset"] or peak > _RUN["start_peak"]:
        return peak
    _RUN["sampled"] = max(_RUN["sampled"], _status_mb("VmRSS") or 0.0)
    return _RUN["sampled"] or peak


def memory_metrics(device: torch.device) -> dict[str, float]:
    """``perf/peak_rss_mb`` always; ``perf/cuda_peak_allocated_mb`` and ``..._reserved_mb`` on CUDA."""
    m = {"perf/peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        m["perf/cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        m["perf/cuda_peak_reserved_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
    return m
