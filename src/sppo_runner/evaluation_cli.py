"""``sppo-eval``: evaluate a policy on several benchmarks and write the results table.

The Hydra app (:func:`eval_app`) only composes and validates; :func:`evaluate_policy`
does the work and is importable. It composes the same config tree as ``sppo-run``, so
``sppo-eval experiment=paper_7b/sppo eval=paper model.path=outputs/.../final/policy``
evaluates a trained policy with the run's own rendering and sampling settings.

Outputs (in Hydra's run folder, ``outputs/eval/<date>/<time>`` by default):
``eval.md`` (the table), ``eval.json`` (rows + every metric), ``summary.json``, and W&B
metrics ``eval/<benchmark>/...`` plus a table ``eval/table``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from sppo_runner.benchmarks import eval_sampling, evaluate_sets, load_benchmarks, write_report
from sppo_runner.data import load_eval_problems
from sppo_runner.data.prompts import encode, longest_prompt, require_prompts
from sppo_runner.models import check_context, load_policy, load_tokenizer, resolve_device
from sppo_runner.rollout import make_engine
from sppo_runner.session import engine_options
from sppo_runner.tracking import Tracker
from sppo_runner.verifier import Verifier

log = logging.getLogger(__name__)


def _sets(cfg: Any, tokenizer: Any) -> dict:
    """``eval.benchmarks`` when given, else the data config's held-out set under the name ``heldout``."""
    sets = load_benchmarks(cfg, tokenizer)
    if not sets:
        sets = {"heldout": encode(load_eval_problems(cfg.data, cfg.eval.n_problems), tokenizer, cfg.data)}
    return sets


def _log_wandb(cfg: Any, out_dir: Path, metrics: dict, rows: list[dict], summary: dict) -> None:
    """Sends the metrics and the table to W&B (mode per ``logger.wandb``; offline without a key)."""
    config = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    tracker = Tracker(out_dir, config, replace(cfg.logger, progress=False), total_steps=0)
    tracker.log(0, metrics)
    if tracker.wandb is not None:
        import wandb

        cols = ["benchmark", "n", "mean@k", "pass@k", "maj@k", "greedy_acc", "response_len"]
        tracker.wandb.log({"eval/table": wandb.Table(columns=cols, data=[[r[c] for c in cols] for r in rows])}, step=0)
    tracker.finish(summary)


def evaluate_policy(cfg: Any, out_dir: Path) -> dict[str, Any]:
    """Evaluates ``cfg.model.path`` on ``eval.benchmarks`` (or the data's held-out set).

    Args:
        cfg: A validated :class:`~sppo_runner.config.Config`.
        out_dir: Where the table, JSON and W&B files go.

    Returns:
        ``{"metrics": {...}, "rows": [...], "table": markdown}``.
    """
    out_dir = Path(out_dir)
    torch.manual_seed(cfg.seed)
    if cfg.trainer.threads > 0:
        torch.set_num_threads(cfg.trainer.threads)
    device = resolve_device(cfg.trainer.device)
    tokenizer = load_tokenizer(cfg.model.path, cfg.model.trust_remote_code)
    policy = load_policy(cfg.model, device)
    sets = _sets(cfg, tokenizer)
    require_prompts({f"benchmark {k}": v for k, v in sets.items()}, cfg.data)
    check_context(cfg, "none", policy, None, longest_prompt(*sets.values()))
    engine = make_engine(cfg.rollout.backend, tokenizer, **engine_options(cfg.rollout))
    verifier = Verifier(extractors=tuple(cfg.verifier.extractors), timeout_s=cfg.verifier.timeout_s,
                        workers=cfg.verifier.workers or None, rule=cfg.verifier.rule)
    params = eval_sampling(cfg)
    try:
        metrics = evaluate_sets(policy, engine, verifier, sets, cfg.eval, params, torch.Generator().manual_seed(cfg.seed))
    finally:
        verifier.close()
        engine.close()
    meta = {"model": cfg.model.path, "temperature": params.temperature, "top_p": params.top_p,
            "max_new_tokens": params.max_new_tokens, "seed": cfg.seed}
    text, rows = write_report(out_dir, "eval", metrics, {name: f"eval/{name}" for name in sets}, cfg.eval.k, meta)
    print(f"{cfg.model.path}: k={cfg.eval.k}, temperature={params.temperature}\n{text}", flush=True)
    summary = {**meta, "k": cfg.eval.k, **{f"{r['benchmark']}/mean@k": r["mean@k"] for r in rows}}
    _log_wandb(cfg, out_dir, metrics, rows, summary)
    return {"metrics": metrics, "rows": rows, "table": text}


def eval_app(cfg: Any) -> None:
    """Hydra entry point: compose -> typed, validated config -> :func:`evaluate_policy`."""
    from hydra.core.hydra_config import HydraConfig

    from sppo_runner.cli import reported
    from sppo_runner.config import to_object

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    with reported("sppo-eval", out_dir):  # one line and exit 2 for bad input, the traceback in the log
        evaluate_policy(to_object(cfg), out_dir)
