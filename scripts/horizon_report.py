"""The horizon benchmark's report: figures from run folders, a Markdown table, one plot.

Used by ``bench_horizon.py``; every figure is read back from the runs' ``summary.json``
and ``metrics.jsonl``, so ``analyse`` can be rerun on a finished benchmark folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

ACC, GREEDY = "eval/mean@k", "eval/greedy_acc"
# Critic diagnostics, averaged over the second half of each run's training steps.
DIAGNOSTICS = ("critic/value_reward_corr", "critic/explained_var", "critic/explained_var_q1",
               "critic/explained_var_q2", "critic/explained_var_q3", "critic/explained_var_q4")
_TOL = 1e-9


def mean_std(xs: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1; 0 for one value); ``(None, None)`` for none."""
    v = [x for x in xs if x is not None and not math.isnan(x)]
    if not v:
        return None, None
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def read_run(run_dir: Path) -> dict[str, Any] | None:
    """Summary, eval points and late-run critic diagnostics of one finished run (None if unfinished)."""
    if not (run_dir / "summary.json").is_file():
        return None
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    evals = [{"acc": r[ACC], "greedy": r.get(GREEDY), "seconds": r.get("perf/train_seconds", 0.0),
              "tokens": r.get("perf/total_tokens", 0.0)} for r in rows if r.get(ACC) is not None]
    steps = [r for r in rows if "reward/mean" in r]
    late = steps[len(steps) // 2:]
    diag = {k: mean_std([r[k] for r in late if k in r])[0] for k in DIAGNOSTICS}
    return {"summary": summary, "evals": evals, "diagnostics": {k: v for k, v in diag.items() if v is not None}}


def first_reach(evals: list[dict], target: float) -> dict | None:
    """The first eval point at or above ``target`` (training seconds and tokens), or None."""
    return next(({"seconds": e["seconds"], "tokens": e["tokens"]} for e in evals if e["acc"] >= target - _TOL), None)


def _cell(runs: list[dict], target: float | None) -> dict[str, Any]:
    s = [r["summary"] for r in runs]
    out: dict[str, Any] = {"n_seeds": len(runs), "final_per_seed": [x["heldout_accuracy_after"] for x in s]}
    for key, name in (("heldout_accuracy_after", "final"), ("heldout_greedy_after", "greedy"),
                      ("heldout_accuracy_before", "before"), ("steps", "steps"),
                      ("generated_tokens", "tokens"), ("train_seconds", "train_seconds"),
                      ("wall_seconds", "wall_seconds")):
        out[f"{name}_mean"], out[f"{name}_std"] = mean_std([x.get(key) for x in s])
    if target is not None:
        hits = [first_reach(r["evals"], target) for r in runs]
        got = [x for x in hits if x is not None]
        out["n_reached_target"] = len(got)
        out["seconds_to_target_mean"] = mean_std([x["seconds"] for x in got])[0]
        out["tokens_to_target_mean"] = mean_std([x["tokens"] for x in got])[0]
    out["diagnostics"] = {k: mean_std([r["diagnostics"].get(k) for r in runs])[0] for k in DIAGNOSTICS}
    out["diagnostics"] = {k: v for k, v in out["diagnostics"].items() if v is not None}
    return out


def gap_trend(per_h: dict[int, list[float]]) -> dict[str, Any]:
    """Least-squares slope of per-seed gaps against log2(H), with its standard error and a verdict."""
    xs = [math.log2(h) for h, gs in per_h.items() for _ in gs]
    ys = [g for gs in per_h.values() for g in gs]
    if len(set(xs)) < 2:
        return {"slope_per_doubling": None, "se": None, "verdict": "needs two horizons or more"}
    x, y = np.array(xs), np.array(ys)
    slope, icpt = np.polyfit(x, y, 1)
    resid = y - (slope * x + icpt)
    dof = len(x) - 2
    se = float(np.sqrt(resid @ resid / dof / ((x - x.mean()) @ (x - x.mean())))) if dof > 0 else float("nan")
    if math.isnan(se):
        verdict = "too few runs for a standard error"
    elif slope - 2 * se > 0:
        verdict = "grows with the horizon (slope > 2 standard errors)"
    elif slope + 2 * se < 0:
        verdict = "shrinks with the horizon (slope < -2 standard errors)"
    else:
        verdict = "no trend beyond 2 standard errors"
    return {"slope_per_doubling": float(slope), "se": se, "verdict": verdict}


def analyse(runs_root: Path, args: Any, cards: dict[int, dict], budgets: dict[str, dict]) -> dict[str, Any]:
    """Every figure of the report as a JSON-ready dict (fractions, seconds, tokens)."""
    report: dict[str, Any] = {
        "settings": {"horizons": args.horizons, "algorithms": args.algorithms, "seeds": args.seeds,
                     "samples": args.samples, "samples_per_step": args.samples_per_step,
                     "same_prompts": args.same_prompts, "problems": args.problems, "k": args.k,
                     "evals": args.evals, "temperature": args.temperature, "greedy": args.greedy,
                     "jobs": args.jobs, "extra": list(args.extra)},
        "starters": {h: {k: c.get(k) for k in ("heldout_greedy_accuracy", "heldout_sampled_mean_accuracy",
                                               "solution_tokens_mean_with_eos", "max_new_tokens")}
                     for h, c in cards.items()},
        "budgets": budgets, "modes": {}, "final_accuracy": {}, "ppo_gap_to_sppo": {},
    }
    for mode in budgets:
        table: dict[int, dict[str, Any]] = {}
        gaps: dict[int, list[float]] = {}
        for h in args.horizons:
            runs = {a: [r for s in args.seeds if (r := read_run(runs_root / mode / f"h{h}" / f"{a}-seed{s}"))]
                    for a in args.algorithms}
            runs = {a: rs for a, rs in runs.items() if rs}
            finals = {a: mean_std([r["summary"]["heldout_accuracy_after"] for r in rs])[0] for a, rs in runs.items()}
            ref = "grpo" if "grpo" in finals else max(finals, key=finals.get) if finals else None
            target = finals.get(ref)
            table[h] = {"target": target, "target_source": ref,
                        "algorithms": {a: _cell(rs, target) for a, rs in runs.items()}}
            if "sppo" in runs and "ppo" in runs:
                by_seed = {r["summary"]["seed"]: r["summary"]["heldout_accuracy_after"] for r in runs["ppo"]}
                gaps[h] = [r["summary"]["heldout_accuracy_after"] - by_seed[r["summary"]["seed"]]
                           for r in runs["sppo"] if r["summary"]["seed"] in by_seed]
        report["modes"][mode] = table
        report["final_accuracy"][mode] = {h: {a: [round(c["final_mean"], 4), round(c["final_std"], 4)]
                                              for a, c in t["algorithms"].items()} for h, t in table.items()}
        if gaps:
            report["ppo_gap_to_sppo"][mode] = {
                "per_horizon": {h: dict(zip(("mean", "std"), mean_std(g))) for h, g in gaps.items()},
                "trend": gap_trend(gaps)}
    return report


# --------------------------------------------------------------------------- #
def _pct(m: float | None, s: float | None = None) -> str:
    if m is None:
        return "–"
    return f"{100 * m:.1f}%" if s is None else f"{100 * m:.1f} ± {100 * s:.1f}%"


def _num(x: float | None, fmt: str = ".0f") -> str:
    return "–" if x is None else f"{x:{fmt}}"


def _diag(d: dict[str, float]) -> str:
    if "critic/explained_var_q1" in d or "critic/explained_var" in d:
        qs = " / ".join(_num(d.get(f"critic/explained_var_q{q}"), "+.2f") for q in range(1, 5))
        return f"EV q1-q4 {qs}"
    if "critic/value_reward_corr" in d:
        return f"corr(V, R) {d['critic/value_reward_corr']:+.2f}"
    return "–"


def markdown(report: dict[str, Any]) -> str:
    """Per mode one table (rows: horizon x algorithm), then SPPO's lead over token PPO per horizon."""
    st = report["settings"]
    greedy = st.get("greedy", True)
    lines = ["# Horizon benchmark", "",
             f"Held-out mean@{st['k']}{' and greedy accuracy' if greedy else ''} at temperature "
             f"{st.get('temperature', 1.0)} on {st['problems']} problems per horizon, mean ± std over seeds "
             f"{st['seeds']}; {st['samples_per_step']} samples per update"
             f"{' (same prompts per step)' if st['same_prompts'] else ' for every algorithm'}. "
             "Time and tokens to target: training seconds and generated tokens at the first evaluation "
             "reaching GRPO's mean final accuracy, mean over the seeds that reach it. Critic diagnostics: "
             "second half of each run (token PPO: explained variance of its values per quarter of the "
             "response; SPPO: correlation of sigmoid(V(prompt)) with the reward).", ""]
    head = ["H", "resp. tokens", "algorithm", f"held-out mean@{st['k']}", *(["greedy"] if greedy else []), "start",
            "steps", "gen. tokens", "train s", "target", "s to target", "tokens to target", "critic"]
    for mode, table in report["modes"].items():
        b = report["budgets"][mode]
        what = ("equal generated tokens" if mode == "tokens" else "equal wall clock (training seconds)")
        lines += [f"## {what}", "", "Budgets: " + ", ".join(
            f"H={h}: {int(v['tokens']):,} tokens" if "tokens" in v else f"H={h}: {v['seconds']:.1f} s"
            for h, v in b.items()), "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for h, t in table.items():
            resp = report["starters"][h]["solution_tokens_mean_with_eos"]
            for a, c in t["algorithms"].items():
                reach = f"{c['n_reached_target']}/{c['n_seeds']}"
                lines.append("| " + " | ".join([
                    str(h), f"{resp:.0f}", a, _pct(c["final_mean"], c["final_std"]),
                    *([_pct(c["greedy_mean"], c["greedy_std"])] if greedy else []),
                    _pct(c["before_mean"]), _num(c["steps_mean"]), _num(c["tokens_mean"], ",.0f"),
                    _num(c["train_seconds_mean"], ".1f"), _pct(t["target"]),
                    f"{_num(c['seconds_to_target_mean'], '.1f')} ({reach})",
                    _num(c["tokens_to_target_mean"], ",.0f"), _diag(c["diagnostics"])]) + " |")
        lines.append("")
        gap = report["ppo_gap_to_sppo"].get(mode)
        if gap:
            per = ", ".join(f"H={h}: {100 * g['mean']:+.1f} ± {100 * g['std']:.1f} pts"
                            for h, g in gap["per_horizon"].items())
            tr = gap["trend"]
            slope = ("" if tr["slope_per_doubling"] is None else
                     f"; slope {100 * tr['slope_per_doubling']:+.2f} ± {100 * tr['se']:.2f} pts per doubling of H")
            lines += [f"SPPO minus token PPO (final mean@k, paired by seed, mean ± std): {per}{slope}: "
                      f"**{tr['verdict']}**.", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Final held-out accuracy against the horizon, one line per algorithm, min–max band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(report["modes"])
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.3), squeeze=False, sharey=True)
    colors = dict(zip(["sppo", "ppo", "grpo", "rloo", "remax", "ppo_bce"], plt.get_cmap("tab10").colors))
    for ax, mode in zip(axes[0], modes):
        table = report["modes"][mode]
        hs = list(table)
        start = [mean_std([c["before_mean"] for c in table[h]["algorithms"].values()])[0] for h in hs]
        ax.plot(hs, start, color="grey", linestyle="--", marker=".", label="starter")
        for a in report["settings"]["algorithms"]:
            pts = [(h, table[h]["algorithms"][a]) for h in hs if a in table[h]["algorithms"]]
            if not pts:
                continue
            x = [h for h, _ in pts]
            per_seed = [c["final_per_seed"] for _, c in pts]
            ax.plot(x, [c["final_mean"] for _, c in pts], marker="o", color=colors.get(a), label=a)
            ax.fill_between(x, [min(v) for v in per_seed], [max(v) for v in per_seed], color=colors.get(a),
                            alpha=0.2, linewidth=0)
        ax.set_ylim(bottom=0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(hs, [str(h) for h in hs])
        ax.set_xlabel("horizon H (chained steps)")
        ax.set_title("equal generated tokens" if mode == "tokens" else "equal wall clock")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"final held-out mean@{report['settings']['k']}")
    axes[0][0].legend(fontsize="small")
    fig.suptitle("accuracy vs horizon: mean over seeds, band = min–max")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


README_BEGIN, README_END = "<!-- bench_horizon:begin -->", "<!-- bench_horizon:end -->"


def verdict_sentence(report: dict[str, Any]) -> str:
    """What the figures say about SPPO's lead over token PPO as H grows, mode by mode (facts only)."""
    parts = []
    for mode, gap in report["ppo_gap_to_sppo"].items():
        tr = gap["trend"]
        what = "at equal generated tokens" if mode == "tokens" else "at equal wall clock"
        if tr["slope_per_doubling"] is None:
            parts.append(f"{what} there is one horizon only")
            continue
        parts.append(f"{what}, SPPO's lead over token PPO: {tr['verdict']} "
                     f"({100 * tr['slope_per_doubling']:+.1f} ± {100 * tr['se']:.1f} points per doubling of H)")
    return ("; ".join(parts) + ".") if parts else "Token PPO and SPPO were not both run."


def readme_block(report: dict[str, Any], command: str, plot_path: str) -> str:
    """The README's results block: command, time, tables, plot and the measured verdict."""
    body = markdown(report).split("\n", 2)[2].replace("## ", "#### ")
    minutes = report["bench_wall_seconds"] / 60
    jobs = report["settings"].get("jobs", 1)
    how = "all runs one after another" if jobs <= 1 else f"{jobs} runs at a time, one thread each"
    return "\n".join([
        README_BEGIN,
        f"`{command}` took {minutes:.0f} min on this machine ({report['bench_wall_seconds']:.0f} s, {how}).",
        "", body.strip(), "", f"![accuracy vs horizon]({plot_path})", "",
        f"Measured: {verdict_sentence(report)}", README_END])


def update_readme(readme: Path, block: str) -> None:
    """Replaces the text between the bench_horizon markers of ``readme`` with ``block``."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(f"{readme} has no {README_BEGIN} ... {README_END} markers")
    head, rest = text.split(README_BEGIN, 1)
    readme.write_text(head + block + rest.split(README_END, 1)[1])
