"""What a run needs to continue exactly: models, optimizers, RNG and data positions, counters.

A checkpoint is a folder ``checkpoints/step_<N>/`` with ``policy/`` and ``critic/``
(``save_pretrained``) and ``trainer_state.pt``. It is written to a temporary
folder and renamed, so a process killed mid-save never leaves a torn checkpoint; a write that
fails (a full disk) removes the temporary folder and raises one clear error naming the
complete checkpoint that is left.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from sppo_runner.errors import DiskFullError, UserError, is_disk_full

_STEP = re.compile(r"^step_(\d+)$")


class CheckpointError(UserError):
    """A checkpoint could not be written or read; the message names it and what is left."""


@dataclass
class Counters:
    """Cumulative quantities every metric line carries (curves can use any as x-axis)."""

    step: int = 0
    prompts: int = 0
    samples: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    wall_seconds: float = 0.0

    def budget_reached(self, t: Any) -> Optional[str]:
        """Returns the name of the first exhausted budget of TrainerConfig ``t``, else None."""
        checks = [
            ("steps", t.steps, self.step),
            ("max_prompts", t.max_prompts, self.prompts),
            ("max_samples", t.max_samples, self.samples),
            ("max_tokens", t.max_tokens, self.tokens),
            ("max_seconds", t.max_seconds, self.train_seconds),
        ]
        for name, limit, value in checks:
            if (name == "steps" or limit > 0) and value >= limit:
                return name
        return None

    def as_metrics(self) -> dict[str, float]:
        return {
            "perf/total_prompts": float(self.prompts),
            "perf/total_samples": float(self.samples),
            "perf/total_tokens": float(self.tokens),
            "perf/train_seconds": self.train_seconds,
            "perf/wall_seconds": self.wall_seconds,
        }


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name)) and (p / "trainer_state.pt").exists()]
    return [p for _, p in sorted(found)]


def latest(run_dir: Path) -> Optional[Path]:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def save(run_dir: Path, counters: Counters, models: dict[str, Any], tokenizer: Any, state: dict[str, Any],
         keep: int) -> Path:
    """Writes ``checkpoints/step_<N>`` atomically and prunes all but the newest ``keep``.

    Args:
        run_dir: The run folder.
        counters: Cumulative counters (their step names the folder).
        models: ``{"policy": model, "critic": model or None}``.
        tokenizer: Saved beside the policy so the folder is a usable model.
        state: Everything else (optimizers, RNG and sampler states, ...).
        keep: Number of checkpoints to keep (>= 1).
    """
    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{counters.step}"
    tmp = root / f".tmp_step_{counters.step}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        for name, model in models.items():
            if model is not None:
                model.save_pretrained(tmp / name)
        tokenizer.save_pretrained(tmp / "policy")
        torch.save({**state, "counters": asdict(counters)}, tmp / "trainer_state.pt")
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)  # a partial checkpoint only takes space
        clear = _write_error(run_dir, final, err)
        if clear is None:
            raise
        raise clear from err
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in list_checkpoints(run_dir)[: -max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write_error(run_dir: Path, final: Path, err: BaseException) -> Optional[UserError]:
    """A full disk (or another OS error) while writing a checkpoint as one clear error.

    The raw error (safetensors' ``SafetensorError``, ``OSError`` from ``torch.save``) names
    neither the checkpoint nor what is left; anything else (a bug, Ctrl-C) is passed on as is.
    """
    if not (is_disk_full(err) or isinstance(err, OSError)):
        return None
    full, prev = is_disk_full(err), latest(run_dir)
    left = "there is no earlier checkpoint: the run has to start again"
    if prev:
        then = "free some space, then continue" if full else "continue"
        left = f"the latest complete checkpoint, {prev.name}, is intact: {then} with: sppo-run resume={run_dir}"
    if full:
        return DiskFullError(f"could not write checkpoint {final}: the disk is full; {left}")
    return CheckpointError(f"could not write checkpoint {final} ({err}); {left}")


def load_state(ckpt: Path) -> dict[str, Any]:
    """Reads ``trainer_state.pt`` (trusted: written by this program)."""
    return torch.load(Path(ckpt) / "trainer_state.pt", map_location="cpu", weights_only=False)


def load_weights(model: torch.nn.Module, folder: Path) -> None:
    """Loads safetensors weights saved by ``save_pretrained`` into an existing model."""
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        state.update(load_file(str(f)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied embeddings are saved once; anything else missing means a wrong folder.
    real_missing = [k for k in missing if "lm_head" not in k]
    if real_missing or unexpected:
        raise RuntimeError(f"checkpoint {folder} does not match the model: missing={real_missing[:5]} "
                           f"unexpected={unexpected[:5]}")
