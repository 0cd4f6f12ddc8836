"""How per-rank numbers combine into the one number a single process would have logged.

Pure Python over lists of dicts (one per rank), so the rules are unit-tested without a
process group. Ranks hold equal shares of every step (``data.prompts_per_step`` is split
evenly), which makes the mean of per-sample means the global mean.
"""

from __future__ import annotations

import math
from typing import Iterable

SUM, MAX, MEAN, LOCAL = "sum", "max", "mean", "local"

# How each field of sppo_runner.algorithms.losses.Normalizer combines over ranks. Every field
# must be listed: a normalizer field without a rule is an error at the first step, not a
# silently rank-local loss.
# Loss groups never span ranks, so the per-row group counts stay local; only their number adds up.
NORMALIZER_OPS = {"n_tokens": SUM, "n_seqs": SUM, "norm_len": MAX, "n_groups": SUM,
                  "group_tokens": LOCAL, "group_seqs": LOCAL}


def metric_op(key: str) -> str:
    """The reduction of one step metric, by name.

    Loss shares add up (each rank's loss is its share of the global loss), verifier status
    counts and throughput add up, maxima, timings (the slowest rank sets the pace) and
    memory take the maximum; everything else is a mean over equal shares (rates,
    per-sample means, gradient norms that are already global and equal on every rank).
    """
    if key.endswith("loss") or key.startswith("reward/status/") or key == "perf/tokens_per_s":
        return SUM
    if key.endswith("_max") or key.endswith("_seconds") or key.endswith("_mb"):
        return MAX
    return MEAN


def _ordered_keys(dicts: Iterable[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for d in dicts:
        seen.update(dict.fromkeys(d))
    return list(seen)


def _combine(op: str, values: list[float]) -> float:
    if any(isinstance(v, float) and math.isnan(v) for v in values):
        return float("nan")
    if op == SUM:
        return float(sum(values))  # a rank without the key (no such status this step) adds 0
    if op == MAX:
        return float(max(values))
    if all(v == values[0] for v in values):
        return float(values[0])  # replicated values stay bit-exact
    return float(sum(values) / len(values))


def reduce_metric_dicts(dicts: list[dict[str, float]]) -> dict[str, float]:
    """Combines one metrics dict per rank by :func:`metric_op`; keys missing on a rank are skipped."""
    return {k: _combine(metric_op(k), [d[k] for d in dicts if k in d]) for k in _ordered_keys(dicts)}


def _prefix(key: str) -> str:
    """``eval/aime/mean@k`` -> ``eval/aime``; ``eval/status/ok`` -> ``eval``."""
    head, sep, _ = key.partition("/status/")
    return head if sep else key.rsplit("/", 1)[0]


def reduce_eval_dicts(dicts: list[dict[str, float]]) -> dict[str, float]:
    """Held-out metrics of disjoint shards, combined as one evaluation of all the problems.

    ``<prefix>/n_problems`` and ``<prefix>/status/*`` counts add up, ``<prefix>/k`` is shared,
    and every other metric (per-problem means: mean@k, pass@k, maj@k, greedy accuracy, and
    the per-sample response length, k samples per problem) is weighted by each shard's
    ``<prefix>/n_problems``.
    """
    out: dict[str, float] = {}
    for key in _ordered_keys(dicts):
        values = [(d[key], d.get(f"{_prefix(key)}/n_problems", 0.0)) for d in dicts if key in d]
        if key.endswith("/n_problems") or "/status/" in key:
            out[key] = float(sum(v for v, _ in values))
        elif key.endswith("/k"):
            out[key] = float(values[0][0])
        else:
            weight = sum(w for _, w in values)
            out[key] = float(sum(v * w for v, w in values) / weight) if weight else float(values[0][0])
    return out
