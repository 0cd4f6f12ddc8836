"""What ``resume=`` may continue: a checkpoint exists, the run is not finished, it is the same run.

A checkpoint holds weights, optimizer moments and data positions that mean something only
for the algorithm, models and problem set that wrote them. :data:`IDENTITY_KEYS` are those
settings: a resume that changes one is refused with the keys named (start a new run
instead). Everything else (learning rates, budgets, cadence, logging) may change on resume.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from sppo_runner import checkpoint
from sppo_runner.checkpoint import Counters
from sppo_runner.errors import ResumeError

IDENTITY_KEYS = (
    "algorithm.name", "seed", "model.path", "model.dtype", "critic.path", "critic.dtype",
    "data.source", "data.path", "data.name", "data.subset", "data.split", "data.seed", "data.difficulty",
    "data.train_size", "data.max_rows", "data.prompt_key", "data.answer_key", "data.answer_format",
    "data.heldout_path", "data.heldout_split", "data.heldout_size", "data.chat_template", "data.suffix",
    "data.max_prompt_tokens", "data.long_prompts", "eval.n_problems",
)
_PATH_KEYS = ("model.path", "critic.path", "data.path", "data.heldout_path")


def _plain(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def _same(key: str, old: Any, new: Any) -> bool:
    old, new = _plain(old), _plain(new)
    if old == new:
        return True
    if key in _PATH_KEYS and isinstance(old, str) and isinstance(new, str) and os.path.exists(old) \
            and os.path.exists(new):
        return Path(old).resolve() == Path(new).resolve()
    return str(old) == str(new)


def changed_identity(saved: Any, cfg: Any) -> list[str]:
    """``key: old -> new`` for each identity key that differs between two configs."""
    from omegaconf import OmegaConf

    from sppo_runner.algorithms import ALGORITHMS

    new = OmegaConf.structured(cfg)
    spec = ALGORITHMS.get(_plain(OmegaConf.select(new, "algorithm.name")))
    has_critic = spec is None or spec.critic != "none"
    out = []
    for key in IDENTITY_KEYS:
        if key.startswith("critic.") and not has_critic:
            continue  # a critic-free run saves no critic: its settings do not matter
        old_v, new_v = OmegaConf.select(saved, key, default=None), OmegaConf.select(new, key, default=None)
        if not _same(key, old_v, new_v):
            out.append(f"{key}: {_plain(old_v)!r} -> {_plain(new_v)!r}")
    return out


def _finished(run_dir: Path, step: int, trainer: Any) -> Optional[tuple[str, Any]]:
    """(budget name, its limit) when ``summary.json`` says the run ended at ``step`` by a budget
    that the (possibly changed) trainer settings still count as reached."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("steps") != step:
        return None
    counters = Counters(step=step, prompts=int(summary.get("prompts") or 0), samples=int(summary.get("samples") or 0),
                        tokens=int(summary.get("generated_tokens") or 0),
                        train_seconds=float(summary.get("train_seconds") or 0.0))
    reason = counters.budget_reached(trainer)
    return (reason, getattr(trainer, reason)) if reason else None


def check_resume(cfg: Any, run_dir: Path) -> None:
    """Refuses a ``resume=`` that cannot continue ``run_dir``.

    Raises:
        ResumeError: No checkpoint (a run killed before its first one, or not a run folder),
            a finished run, or a changed identity key; the message says what to do instead.
    """
    from omegaconf import OmegaConf

    run_dir = Path(run_dir)
    ckpt = checkpoint.latest(run_dir)
    saved_path = run_dir / "config.yaml"
    if ckpt is None:
        if not saved_path.exists():
            raise ResumeError(f"resume={run_dir}: not a sppo-run folder (no config.yaml and no checkpoints/ there)")
        raise ResumeError(
            f"resume={run_dir}: the run stopped before its first checkpoint, so there is nothing to resume; "
            f"start it again without resume= (trainer.checkpoint_every=N writes a checkpoint every N steps)"
        )
    if saved_path.exists():
        changed = changed_identity(OmegaConf.load(saved_path), cfg)
        if changed:
            raise ResumeError(
                f"resume={run_dir}: its checkpoint belongs to other settings ({'; '.join(changed)}); "
                f"a resume keeps the algorithm, models, seed and data. Start a new run for these settings"
            )
    step = int(ckpt.name.split("_")[-1])
    done = _finished(run_dir, step, cfg.trainer)
    if done:
        reason, limit = done
        more = f"{2 * step}" if reason == "steps" else "<a larger value>"
        raise ResumeError(
            f"{run_dir} is a finished run ({step} steps; its trainer.{reason} budget of {limit} is reached). "
            f"To train it further, raise the budget: sppo-run resume={run_dir} trainer.{reason}={more}"
        )
