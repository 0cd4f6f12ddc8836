"""Several benchmarks at once: loading, evaluating, and the results table (Markdown + JSON).

Used by the training loop's validation (``eval.benchmarks``, every ``trainer.eval_every``
steps) and by ``sppo-eval``. Per benchmark the metrics are those of
:func:`sppo_runner.evaluation.evaluate` under ``eval/<name>/``: mean@k (the paper's
Avg@k), unbiased pass@k, maj@k, greedy accuracy, response length, verifier statuses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sppo_runner.data.prompts import EncodedProblems, encode
from sppo_runner.data.sources import load_benchmark
from sppo_runner.evaluation import evaluate
from sppo_runner.rollout.base import SamplingParams

log = logging.getLogger(__name__)

METRICS = ("mean@k", "pass@k", "maj@k", "greedy_acc", "response_len")


def load_benchmarks(cfg: Any, tokenizer: Any) -> dict[str, EncodedProblems]:
    """Reads and encodes every ``eval.benchmarks`` file, rendered like the training prompts.

    Args:
        cfg: The full Config (``eval.benchmarks``, ``eval.max_problems`` and ``data.*`` rendering).
        tokenizer: The policy's tokenizer.

    Returns:
        Benchmark name -> encoded problems, in config order.
    """
    out: dict[str, EncodedProblems] = {}
    for name, path in cfg.eval.benchmarks.items():
        enc = encode(load_benchmark(path, cfg.data, cfg.eval.max_problems), tokenizer, cfg.data)
        if enc.n_filtered:
            log.warning("benchmark %s: %d prompts over data.max_prompt_tokens dropped", name, enc.n_filtered)
        out[name] = enc
    return out


def eval_sampling(cfg: Any) -> SamplingParams:
    """Sampling for evaluation: ``eval.temperature`` / ``eval.max_new_tokens`` or the rollout's."""
    e, r = cfg.eval, cfg.rollout
    return SamplingParams(temperature=e.temperature if e.temperature >= 0 else r.temperature, top_p=r.top_p,
                          top_k=r.top_k, max_new_tokens=e.max_new_tokens or r.max_new_tokens, stop=tuple(r.stop))


def evaluate_sets(policy: Any, engine: Any, verifier: Any, sets: Mapping[str, EncodedProblems], cfg: Any,
                  params: SamplingParams, generator: torch.Generator) -> dict[str, float]:
    """Evaluates each set under ``eval/<name>/``.

    Args:
        policy: The causal LM.
        engine: A RolloutEngine.
        verifier: Grades responses.
        sets: Name -> encoded problems.
        cfg: An EvalConfig.
        params: Sampling parameters (``n`` is ``cfg.k``).
        generator: Drives sampling; sets are evaluated in order, so results are reproducible.
    """
    m: dict[str, float] = {}
    for name, enc in sets.items():
        answers = [p.answer for p in enc.problems]
        m.update(evaluate(policy, engine, enc.token_ids, answers, verifier, cfg, params, generator,
                          prefix=f"eval/{name}"))
    return m


def table_rows(metrics: Mapping[str, float], prefixes: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per set (``prefixes``: display name -> metric prefix), then the unweighted mean.

    The mean row averages over benchmarks like the paper's "mean" column (not over problems).
    """
    rows = []
    for name, prefix in prefixes.items():
        row: dict[str, Any] = {"benchmark": name, "n": int(metrics.get(f"{prefix}/n_problems", 0))}
        for key in METRICS:
            row[key] = metrics.get(f"{prefix}/{key}")
        row["status"] = {k.rsplit("/", 1)[1]: int(v) for k, v in metrics.items() if k.startswith(f"{prefix}/status/")}
        rows.append(row)
    if len(rows) > 1:
        mean: dict[str, Any] = {"benchmark": "mean", "n": sum(r["n"] for r in rows), "status": {}}
        for key in METRICS:
            vals = [r[key] for r in rows if r[key] is not None]
            mean[key] = sum(vals) / len(vals) if len(vals) == len(rows) else None
        rows.append(mean)
    return rows


def markdown_table(rows: list[dict[str, Any]], k: int) -> str:
    """A Markdown table of :func:`table_rows` (accuracies in percent, as the paper reports them)."""
    head = f"| benchmark | n | mean@{k} % | pass@{k} % | maj@{k} % | greedy % | response len | statuses |"
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        pct = [("-" if r[key] is None else f"{100 * r[key]:.2f}") for key in METRICS[:4]]
        length = "-" if r["response_len"] is None else f"{r['response_len']:.1f}"
        status = " ".join(f"{s}={c}" for s, c in sorted(r["status"].items()))
        lines.append(f"| {r['benchmark']} | {r['n']} | " + " | ".join(pct) + f" | {length} | {status} |")
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, stem: str, metrics: Mapping[str, float], prefixes: Mapping[str, str], k: int,
                 meta: Mapping[str, Any] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Writes ``<stem>.md`` and ``<stem>.json`` under ``out_dir``; returns the Markdown and the rows."""
    rows = table_rows(metrics, prefixes)
    text = markdown_table(rows, k)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.md").write_text(text)
    payload = {"k": k, **(meta or {}), "rows": rows, "metrics": dict(metrics)}
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")
    return text, rows
