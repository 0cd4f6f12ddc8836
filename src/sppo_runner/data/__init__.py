"""Data sources. Each yields :class:`Problem` records; the loop never sees where they came from."""

from __future__ import annotations

from typing import Any

from sppo_runner.data.problem import Problem


def _synthetic(cfg: Any):
    from sppo_runner.data.synthetic import SyntheticTask

    return SyntheticTask(seed=cfg.seed, difficulty=cfg.difficulty)


def load_train_problems(cfg: Any) -> list[Problem]:
    """Training problems for DataConfig ``cfg``."""
    source = cfg.source.value if hasattr(cfg.source, "value") else cfg.source
    if source == "synthetic":
        return _synthetic(cfg).train(cfg.train_size)
    from sppo_runner.data.sources import load_problems

    return load_problems(cfg)


def load_eval_problems(cfg: Any, n: int) -> list[Problem]:
    """Held-out problems used for in-training evaluation (disjoint from training)."""
    source = cfg.source.value if hasattr(cfg.source, "value") else cfg.source
    if source == "synthetic":
        return _synthetic(cfg).heldout(n)
    from sppo_runner.data.sources import load_heldout

    return load_heldout(cfg, n)


__all__ = ["Problem", "load_train_problems", "load_eval_problems"]
