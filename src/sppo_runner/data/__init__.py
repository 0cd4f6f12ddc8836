"""Data sources. Each yields :class:`Problem` records; the loop never sees where they came from."""

from __future__ import annotations

from typing import Any

from sppo_runner.data.problem import Problem


def _synthetic(cfg: Any):
    from sppo_runner.data.synthetic import SyntheticTask

    return SyntheticTask(seed=cfg.seed, difficulty=cfg.difficulty, horizon=getattr(cfg, "horizon", 0))


def load_train_problems(cfg: Any) -> list[Problem]:
    """Training problems for DataConfig ``cfg``."""
    if cfg.source == "synthetic":
        return _synthetic(cfg).train(cfg.train_size)
    from sppo_runner.data.sources import load_problems

    return load_problems(cfg)


def load_eval_problems(cfg: Any, n: int) -> list[Problem]:
    """Held-out problems used for in-training evaluation (disjoint from training)."""
    if cfg.source == "synthetic":
        return _synthetic(cfg).heldout(n)
    from sppo_runner.data.sources import load_heldout

    return load_heldout(cfg, n)


def load_datasets(cfg: Any, n_heldout: int) -> tuple[list[Problem], list[Problem]]:
    """Training and held-out problems at once; a file or hub source is read only once."""
    if cfg.source == "synthetic":
        task = _synthetic(cfg)
        return task.train(cfg.train_size), task.heldout(n_heldout)
    from sppo_runner.data.sources import load_split

    return load_split(cfg, n_heldout)


__all__ = ["Problem", "load_datasets", "load_train_problems", "load_eval_problems"]
