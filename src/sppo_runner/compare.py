"""``sppo-compare``: one report comparing finished runs, grouped by algorithm.

A run folder is any folder holding ``summary.json`` and ``metrics.jsonl`` (what
``sppo-run`` writes; ``config.yaml`` beside them is read when present). Folders
are found recursively, so a multirun folder works as well as a list of runs.
The report (``comparison.md``, ``comparison.json`` and three PNG plots) gives,
per algorithm and over seeds: final held-out accuracy mean ± sample std
(ddof=1; 0 for one seed), accuracy before training, budgets used, time to reach
a target accuracy, peak memory (max over seeds) and parameter counts.

Time to target is the ``perf/wall_seconds`` of the first eval line of
``metrics.jsonl`` whose ``eval/mean@k`` reaches the target, averaged over the
seeds that reach it.

Usage::

    sppo-compare outputs/multirun/2025-01-01/12-00-00 [--target 0.4] [--out DIR]

The report goes into the multirun folder when one is given, else into a new
``outputs/compare/<date>/<time>`` (``--out`` picks another).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sppo_runner.rundir import new_stamped_folder

ACC = "eval/mean@k"
# x-axis name -> (metrics.jsonl key, axis label); every eval line carries all three.
AXES = {
    "wall": ("perf/wall_seconds", "wall time (s)"),
    "samples": ("perf/total_samples", "samples generated"),
    "tokens": ("perf/total_tokens", "tokens generated"),
}
# Means of equal floats can exceed each of them by an ulp; a seed at the target must count as reaching it.
_TOL = 1e-9
# Config keys expected to differ between the seeds of one algorithm.
_PER_RUN_KEYS = ("seed", "run_dir", "resume", "logger")


@dataclass
class Run:
    """One finished run as the report needs it.

    Attributes:
        path: The run folder.
        algorithm: ``algorithm.name``.
        seed: The run seed.
        summary: ``summary.json``.
        config: ``config.yaml`` as a dict (empty when absent).
        evals: Eval lines, in order: ``{"step", "acc", "wall", "samples", "tokens"}``.
    """

    path: Path
    algorithm: str
    seed: int
    summary: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    evals: list[dict[str, float]] = field(default_factory=list)
    logged_params: dict[str, float] = field(default_factory=dict)  # perf/*_params of metrics.jsonl

    def params(self) -> dict[str, int]:
        """Policy and critic parameter counts (summary first, else the step-0 metrics line)."""
        n = self.summary.get("n_params") or {}
        return {k: int(n.get(k) or self.logged_params.get(f"perf/{k}_params") or 0) for k in ("policy", "critic")}

    def memory(self, key: str) -> float | None:
        return (self.summary.get("peak_memory") or {}).get(key)


def find_run_dirs(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Finished run folders under ``paths``, and unfinished ones (metrics but no summary)."""
    done, unfinished = set(), set()
    for root in map(Path, paths):
        for metrics in root.rglob("metrics.jsonl"):  # rglob includes root's own files
            if metrics.is_file():
                (done if (metrics.parent / "summary.json").is_file() else unfinished).add(metrics.parent)
    return sorted(done), sorted(unfinished)


def _read_metrics(metrics_path: Path) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Eval points (accuracy with the three x-axis counters) and the logged parameter counts."""
    points, params = [], {}
    for line in metrics_path.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        params.update({k: v for k, v in row.items() if k.endswith("_params") and v is not None})
        if row.get(ACC) is None:
            continue
        point = {"step": row.get("step", 0), "acc": float(row[ACC])}
        point.update({axis: float(row.get(key) or 0.0) for axis, (key, _) in AXES.items()})
        points.append(point)
    return points, params


def read_run(path: Path) -> Run:
    """Reads one run folder (see :class:`Run`)."""
    import yaml

    path = Path(path)
    summary = json.loads((path / "summary.json").read_text())
    cfg_path = path / "config.yaml"
    config = (yaml.safe_load(cfg_path.read_text()) or {}) if cfg_path.is_file() else {}
    algorithm = summary.get("algorithm") or config.get("algorithm", {}).get("name") or path.name
    seed = summary.get("seed", config.get("seed", 0))
    return Run(path, str(algorithm), int(seed), summary, config, *_read_metrics(path / "metrics.jsonl"))


def load_runs(paths: Sequence[Path | str]) -> list[Run]:
    """Every finished run under ``paths`` (folders searched recursively), sorted by algorithm and seed."""
    done, _ = find_run_dirs([Path(p) for p in paths])
    return sorted((read_run(p) for p in done), key=lambda r: (r.algorithm, r.seed, str(r.path)))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value); missing values are skipped."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else 0.0)


def time_to_target(evals: Sequence[dict[str, float]], target: float) -> float | None:
    """Wall seconds of the first eval point whose accuracy reaches ``target``; None if none does."""
    for p in evals:
        if p["acc"] >= target - _TOL:
            return p["wall"]
    return None


def default_target(groups: dict[str, list[Run]]) -> tuple[float, str]:
    """GRPO's mean final accuracy when GRPO ran, else the best algorithm's; with where it came from."""
    means = {a: mean_std([r.summary["heldout_accuracy_after"] for r in rs])[0] for a, rs in groups.items()}
    name = "grpo" if "grpo" in means else max(means, key=lambda a: (means[a], a))
    return means[name], f"mean final accuracy of {name}"


def config_differences(runs: Sequence[Run]) -> list[str]:
    """Config keys (dotted) whose values differ between ``runs``, ignoring per-run keys like the seed."""
    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(d, dict):
            return {prefix: d}
        out: dict[str, Any] = {}
        for k, v in d.items():
            if not prefix and k in _PER_RUN_KEYS:
                continue
            out.update(flat(v, f"{prefix}{k}."))
        return out

    flats = [{k.rstrip("."): v for k, v in flat(r.config).items()} for r in runs if r.config]
    keys = set().union(*flats) if flats else set()
    return sorted(k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1)


def _algo_stats(runs: list[Run], target: float) -> dict[str, Any]:
    s = [r.summary for r in runs]
    after, before = mean_std([x["heldout_accuracy_after"] for x in s]), mean_std([x["heldout_accuracy_before"] for x in s])
    times = [time_to_target(r.evals, target) for r in runs]
    reached = [t for t in times if t is not None]
    cuda = [m for r in runs if (m := r.memory("perf/cuda_peak_allocated_mb")) is not None]
    rss = [m for r in runs if (m := r.memory("perf/peak_rss_mb")) is not None]
    seeds = [r.seed for r in runs]
    stats = {
        "n_seeds": len(runs), "seeds": seeds, "runs": [str(r.path) for r in runs],
        "accuracy_after_mean": after[0], "accuracy_after_std": after[1],
        "accuracy_before_mean": before[0], "accuracy_before_std": before[1],
        "accuracy_after_per_seed": [x["heldout_accuracy_after"] for x in s],
        "time_to_target_mean": float(np.mean(reached)) if reached else None,
        "time_to_target_per_seed": times, "n_reached_target": len(reached),
        "peak_rss_mb": max(rss) if rss else None, "peak_cuda_allocated_mb": max(cuda) if cuda else None,
        "policy_params": max(r.params()["policy"] for r in runs),
        "critic_params": max(r.params()["critic"] for r in runs),
        "config_differences": config_differences(runs),
        "duplicate_seeds": sorted({x for x in seeds if seeds.count(x) > 1}),
    }
    for key in ("steps", "samples", "generated_tokens", "train_seconds", "wall_seconds"):
        stats[f"{key}_mean"], stats[f"{key}_std"] = mean_std([x.get(key) or 0.0 for x in s])
    return stats


def curves(runs: Sequence[Run], axis: str, n_grid: int = 101) -> dict[str, list[float]]:
    """Accuracy of each seed interpolated on a common grid of ``axis``; mean, std, min and max over seeds.

    The grid spans [0, the smallest of the seeds' last x], where every seed has data,
    so the band never mixes measured points with extrapolated ones.
    """
    seeds = []
    for r in runs:
        pts = sorted((p[axis], p["acc"]) for p in r.evals)
        if pts:
            seeds.append((np.array([x for x, _ in pts]), np.array([y for _, y in pts])))
    if not seeds:
        return {"x": [], "mean": [], "std": [], "min": [], "max": []}
    hi = min(float(x[-1]) for x, _ in seeds)
    grid = np.linspace(0.0, hi, n_grid) if hi > 0 else np.array([0.0])
    ys = np.stack([np.interp(grid, x, y) for x, y in seeds])
    std = ys.std(0, ddof=1) if len(seeds) > 1 else np.zeros_like(grid)
    return {"x": grid.tolist(), "mean": ys.mean(0).tolist(), "std": std.tolist(),
            "min": ys.min(0).tolist(), "max": ys.max(0).tolist()}


def summarize(runs: Sequence[Run], target: float | None = None) -> dict[str, Any]:
    """All figures of the report, as a JSON-ready dict.

    Args:
        runs: Finished runs (see :func:`load_runs`).
        target: Accuracy (fraction) for time-to-target; default :func:`default_target`.

    Returns:
        ``{"target", "target_source", "k", "n_heldout_problems", "algorithms": {name: stats},
        "curves": {name: {axis: curve}}, "warnings": [...]}``; algorithms ordered by final
        accuracy, best first.

    Raises:
        ValueError: When ``runs`` is empty.
    """
    if not runs:
        raise ValueError("no finished runs to compare")
    groups: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        groups[r.algorithm].append(r)
    source = "--target"
    if target is None:
        target, source = default_target(groups)
    stats = {a: _algo_stats(rs, target) for a, rs in groups.items()}
    order = sorted(stats, key=lambda a: (-stats[a]["accuracy_after_mean"], a))
    warnings = []
    for key in ("k", "n_heldout_problems"):
        if len(values := {r.summary.get(key) for r in runs}) > 1:
            warnings.append(f"runs differ in {key} ({sorted(map(str, values))}): accuracies are not comparable")
    for a in order:
        if diff := stats[a]["config_differences"]:
            warnings.append(f"{a} runs differ in config beyond the seed: {', '.join(diff[:8])}")
        if dup := stats[a]["duplicate_seeds"]:
            warnings.append(f"{a} has several runs with seed(s) {dup}; all are averaged")
    return {
        "target": target, "target_source": source,
        "k": runs[0].summary.get("k"), "n_heldout_problems": runs[0].summary.get("n_heldout_problems"),
        "algorithms": {a: stats[a] for a in order},
        "curves": {a: {axis: curves(groups[a], axis) for axis in AXES} for a in order},
        "warnings": warnings,
    }


def _pct(m: float, s: float | None = None) -> str:
    return f"{100 * m:.1f}%" if s is None else f"{100 * m:.1f} ± {100 * s:.1f}%"


def _num(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "–"
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            return f"{x / div:.{digits}f}{unit}"
    return f"{x:.{digits}f}" if x != int(x) else str(int(x))


def _secs(m: float, s: float | None = None) -> str:
    fmt = ".2f" if abs(m) < 10 else ".1f"  # short runs still show a difference
    return f"{m:{fmt}}" if s is None else f"{m:{fmt}} ± {s:{fmt}}"


def _time_cell(st: dict[str, Any]) -> str:
    n, k = st["n_seeds"], st["n_reached_target"]
    if k == 0:
        return f"n/a (0 of {n} seeds)"
    cell = _secs(st["time_to_target_mean"])
    return cell if k == n else f"{cell} ({k} of {n} seeds)"


def markdown(summary: dict[str, Any]) -> str:
    """The report's Markdown: a header, one table row per algorithm, and warnings."""
    algos = summary["algorithms"]
    cuda = any(st["peak_cuda_allocated_mb"] is not None for st in algos.values())
    head = ["algorithm", "seeds", "held-out after", "before", "samples", "gen. tokens", "train s", "wall s",
            f"time to {_pct(summary['target'])} (s)", "peak RSS MB", *(["peak CUDA MB"] if cuda else []),
            "policy params", "critic params"]
    rows = []
    for a, st in algos.items():
        rows.append([
            a, str(st["n_seeds"]), _pct(st["accuracy_after_mean"], st["accuracy_after_std"]),
            _pct(st["accuracy_before_mean"], st["accuracy_before_std"]), _num(st["samples_mean"]),
            _num(st["generated_tokens_mean"]), _secs(st["train_seconds_mean"], st["train_seconds_std"]),
            _secs(st["wall_seconds_mean"], st["wall_seconds_std"]), _time_cell(st),
            _num(st["peak_rss_mb"], 0), *([_num(st["peak_cuda_allocated_mb"], 0)] if cuda else []),
            _num(st["policy_params"]), _num(st["critic_params"]) if st["critic_params"] else "–",
        ])
    lines = [
        "# Comparison", "",
        (f"Held-out mean@{summary['k']} on {summary['n_heldout_problems']} problems; mean ± std over seeds. "
        f"Target {_pct(summary['target'])} ({summary['target_source']}); time to target is the mean wall time "
        "over the seeds that reach it."), "",
        "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    if summary["warnings"]:
        lines += ["", *(f"- Warning: {w}" for w in summary["warnings"])]
    return "\n".join(lines) + "\n"


def plot_curves(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """One PNG per x-axis: each algorithm's mean accuracy with a min–max band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    colors = plt.get_cmap("tab10").colors
    for axis, (_, label) in AXES.items():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for i, (algo, by_axis) in enumerate(summary["curves"].items()):
            c, n = by_axis[axis], summary["algorithms"][algo]["n_seeds"]
            color = colors[i % len(colors)]
            marker = "o" if len(c["x"]) == 1 else None
            ax.plot(c["x"], c["mean"], color=color, marker=marker, label=f"{algo} (n={n})")
            if n > 1:
                ax.fill_between(c["x"], c["min"], c["max"], color=color, alpha=0.2, linewidth=0)
        ax.axhline(summary["target"], color="grey", linestyle="--", linewidth=1, label="target")
        ax.set_xlabel(label)
        ax.set_ylabel(f"held-out mean@{summary['k']}")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        ax.set_title("held-out accuracy: mean over seeds, band = min–max")
        fig.tight_layout()
        paths.append(out_dir / f"accuracy_vs_{axis}.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def write_report(runs: Sequence[Run], out_dir: Path | str, target: float | None = None) -> dict[str, Any]:
    """Writes comparison.md, comparison.json and the plots to ``out_dir``; returns the summary.

    The summary gains ``"files"``: the written paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(runs, target)
    md = out_dir / "comparison.md"
    md.write_text(markdown(summary))
    plots = plot_curves(summary, out_dir)
    summary["files"] = [str(p) for p in (md, out_dir / "comparison.json", *plots)]
    clean = json.loads(json.dumps(summary), parse_constant=lambda _: None)  # NaN -> null for strict readers
    (out_dir / "comparison.json").write_text(json.dumps(clean, indent=2) + "\n")
    return summary


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sppo-compare", description="One report comparing finished runs, by algorithm.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", type=Path, help="a multirun folder, or run folders (searched recursively)")
    p.add_argument("--target", type=float, default=None,
                   help="accuracy for time-to-target, a fraction in [0, 1] (default: GRPO's mean final "
                        "accuracy when GRPO ran, else the best algorithm's)")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default: the multirun folder when one is given, else a new "
                        "outputs/compare/<date>/<time>)")
    args = p.parse_args(argv)
    if args.target is not None and not 0.0 <= args.target <= 1.0:  # NaN fails the comparison too
        p.error(f"--target must be a fraction in [0, 1], got {args.target}")
    args.error = p.error
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """``sppo-compare``: writes the report and prints its Markdown. Exits with 2 when no run is found."""
    args = _parse(argv)
    missing = [str(p) for p in args.paths if not p.is_dir()]
    if missing:
        args.error(f"not a folder: {', '.join(missing)}")
    done, unfinished = find_run_dirs(args.paths)
    if not done:
        hint = f" ({len(unfinished)} unfinished: metrics.jsonl without summary.json)" if unfinished else ""
        args.error(f"no finished runs (summary.json + metrics.jsonl) under {', '.join(map(str, args.paths))}{hint}")
    out = args.out
    if out is None:
        single = args.paths[0]
        # Several runs: a new folder under outputs/ (ignored by git), never one in the working tree.
        out = single if len(args.paths) == 1 and not (single / "summary.json").is_file() else \
            new_stamped_folder("outputs/compare")
    summary = write_report(load_runs(done), out, args.target)
    print(markdown(summary), end="")
    if unfinished:
        print(f"\nskipped {len(unfinished)} unfinished run(s): {', '.join(map(str, unfinished))}", file=sys.stderr)
    print(f"\nwrote {', '.join(summary['files'])}")
    return 0
