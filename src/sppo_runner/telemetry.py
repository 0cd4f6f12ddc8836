"""Peak memory: process RSS on CPU, allocated and reserved on CUDA."""

from __future__ import annotations

import resource
import sys

import torch


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def memory_metrics(device: torch.device) -> dict[str, float]:
    """``perf/peak_rss_mb`` always; ``perf/cuda_peak_allocated_mb`` and ``..._reserved_mb`` on CUDA."""
    m = {"perf/peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        m["perf/cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        m["perf/cuda_peak_reserved_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
    return m
