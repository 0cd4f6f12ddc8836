"""Range checks of every numeric setting, and refusal of keys the schema does not have.

Split from :mod:`sppo_runner.config` (which calls these from ``validate`` / ``to_object``) to
keep the schema file readable. Every message names the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sppo_runner.config import _check


def _ge0(v: Any) -> bool:
    return v >= 0


def _ge1(v: Any) -> bool:
    return v >= 1


def _gt0(v: Any) -> bool:
    return v > 0


def _unit(v: Any) -> bool:
    return 0 <= v <= 1


# key, test, what is allowed. NaN fails every comparison, so it is refused everywhere.
RANGES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("algorithm.samples_per_prompt", _ge1, ">= 1"),
    ("algorithm.clip_ratio_low", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("algorithm.clip_ratio_high", _ge0, ">= 0"),
    ("algorithm.dual_clip", math.isfinite, "a number (<= 1 disables dual-clip)"),
    ("algorithm.ppo_epochs", _ge1, ">= 1"),
    ("algorithm.mini_batches", _ge1, ">= 1"),
    ("algorithm.loss_micro_batch", _ge0, ">= 0 (0 = the whole mini-batch)"),
    ("algorithm.critic_loss_micro_batch", _ge0, ">= 0 (0 = the whole mini-batch)"),
    ("algorithm.gamma", _unit, "in [0, 1]"),
    ("algorithm.lam", _unit, "in [0, 1]"),
    ("algorithm.adv_eps", _ge0, ">= 0"),
    ("algorithm.value_clip", _ge0, ">= 0 (0 = off)"),
    ("algorithm.critic_warmup_steps", _ge0, ">= 0"),
    ("algorithm.critic_epochs", _ge1, ">= 1"),
    ("algorithm.kl_coef", _ge0, ">= 0 (0 = off)"),
    ("algorithm.kl_in_reward_coef", _ge0, ">= 0 (0 = off)"),
    ("algorithm.entropy_coef", math.isfinite, "a number (0 = off)"),
    *[(f"{m}.{k}", test, allowed) for m in ("model", "critic") for k, test, allowed in (
        ("lr", _ge0, ">= 0"), ("weight_decay", _ge0, ">= 0"), ("grad_clip", _ge0, ">= 0 (0 = no clipping)"),
        ("micro_batch_size", _ge0, ">= 0 (0 = the whole mini-batch)"))],
    ("data.difficulty", lambda v: 1 <= v <= 5, "1..5"),
    ("data.horizon", lambda v: v == 0 or 2 <= v <= 32, "0 (off) or 2..32"),
    ("data.train_size", _ge1, ">= 1"),
    ("data.max_rows", _ge0, ">= 0 (0 = all rows)"),
    ("data.heldout_size", _ge0, ">= 0"),
    ("data.max_prompt_tokens", _ge0, ">= 0 (0 = no limit)"),
    ("data.prompts_per_step", _ge1, ">= 1"),
    ("rollout.temperature", _gt0, "> 0 (training samples need temperature > 0)"),
    ("rollout.top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("rollout.top_k", _ge0, ">= 0 (0 = off)"),
    ("rollout.max_new_tokens", _ge1, ">= 1"),
    ("rollout.micro_batch_size", _ge0, ">= 0 (0 = all rows at once)"),
    ("rollout.workers", _ge0, ">= 0 (0 = torch's thread count)"),
    ("verifier.timeout_s", _gt0, "> 0 seconds"),
    ("verifier.workers", _ge0, ">= 0 (0 = one per core)"),
    ("logger.samples_per_step", _ge0, ">= 0"),
    ("logger.wandb.init_timeout_s", _gt0, "> 0 seconds"),
    ("trainer.steps", _ge0, ">= 0"),
    *[(f"trainer.{k}", _ge0, ">= 0 (0 = no budget)") for k in ("max_prompts", "max_samples", "max_tokens", "max_seconds")],
    ("trainer.eval_every", _ge0, ">= 0 (0 = only before and after training)"),
    ("trainer.eval_every_seconds", _ge0, ">= 0 (0 = off)"),
    ("trainer.checkpoint_every", _ge0, ">= 0 (0 = only at the end)"),
    ("trainer.keep_checkpoints", _ge1, ">= 1"),
    ("trainer.threads", _ge0, ">= 0 (0 = all cores)"),
    ("eval.n_problems", _ge1, ">= 1"),
    ("eval.k", _ge1, ">= 1"),
    ("eval.temperature", math.isfinite, "a number (< 0: the rollout temperature)"),
    ("eval.batch_size", _ge1, ">= 1"),
    ("eval.max_new_tokens", _ge0, ">= 0 (0 = rollout.max_new_tokens)"),
    ("eval.max_problems", _ge0, ">= 0 (0 = all)"),
]


def get(cfg: Any, key: str) -> Any:
    """``cfg.a.b`` for ``"a.b"``."""
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def check_known_keys(cfg: DictConfig, where: str = "") -> None:
    """Refuses keys that the typed schema does not have (a ``+trainer.stepz=5`` would be ignored).

    Raises:
        ConfigError: Naming the key, its group's schema and the closest known keys.
    """
    schema = OmegaConf.get_type(cfg)
    if dataclasses.is_dataclass(schema):
        known = [f.name for f in dataclasses.fields(schema)]
        for key in cfg.keys():
            if key not in known:
                full = f"{where}{key}"
                near = difflib.get_close_matches(str(key), known, n=3)
                hint = f"did you mean {', '.join(repr(where + k) for k in near)}? " if near else ""
                _check(False, full, f"not a setting of {schema.__name__}; {hint}known keys: {', '.join(known)}")
    for key in cfg.keys():
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not node._is_missing() and not node._is_none():
            check_known_keys(node, f"{where}{key}.")


def check_ranges(cfg: Any) -> None:
    """Checks every entry of :data:`RANGES`.

    Raises:
        ConfigError: ``config error at '<key>': got <value>; allowed: <range>``.
    """
    for key, test, allowed in RANGES:
        value = get(cfg, key)
        _check(test(value), key, f"got {value!r}; allowed: {allowed}")
