"""The embedded default models shipped inside the package.

``policy/``: a tiny char-level ``Qwen2ForCausalLM`` warm-started on the synthetic
arithmetic task (see ``policy/card.json``); ``critic/``: a smaller
``Qwen2ForTokenClassification`` (one label) on its own backbone.  Both folders
hold the char-level tokenizer and load offline with the transformers Auto
classes.  Rebuild them with ``python scripts/make_starter_policy.py``.

``horizon/h<H>/policy`` and ``horizon/h<H>/critic``: the horizon benchmark's
starters, one pair per chain length H (``data.horizon``), each with its card
(``horizon/card.json`` sums them up); see :func:`horizon_path`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["HORIZON_REGENERATE", "NAMES", "REGENERATE", "horizon_levels", "horizon_path", "path"]

NAMES = ("policy", "critic")
REGENERATE = "python scripts/make_starter_policy.py"
HORIZON_REGENERATE = "make horizon-kit"
_ROOT = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """Returns the folder of the embedded ``"policy"`` or ``"critic"``.

    Raises:
        ValueError: ``name`` is not one of :data:`NAMES`.
        FileNotFoundError: the folder (or its weights) is missing.
    """
    if name not in NAMES:
        raise ValueError(f"unknown embedded asset {name!r}; expected one of {NAMES}")
    folder = _ROOT / name
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(
            f"embedded {name} is missing at {folder}; regenerate it from the repository root "
            f"with: {REGENERATE}"
        )
    return folder


def horizon_levels() -> list[int]:
    """The chain lengths H with a shipped starter in ``horizon/h<H>``, ascending."""
    root = _ROOT / "horizon"
    found = [p.name[1:] for p in root.glob("h*") if (p / "policy" / "card.json").is_file()] if root.is_dir() else []
    return sorted(int(h) for h in found if h.isdigit())


def horizon_path(horizon: int, name: str) -> Path:
    """The folder of the horizon starter's ``"policy"`` or ``"critic"`` for chains of ``horizon`` steps.

    Raises:
        ValueError: ``name`` is not one of :data:`NAMES`.
        FileNotFoundError: no starter for this horizon; the message names the levels
            shipped and the command that builds them.
    """
    if name not in NAMES:
        raise ValueError(f"unknown embedded asset {name!r}; expected one of {NAMES}")
    folder = _ROOT / "horizon" / f"h{horizon}" / name
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(
            f"no horizon starter {name} for H={horizon} at {folder} (shipped levels: {horizon_levels()}); "
            f"build levels from the repository root with: {HORIZON_REGENERATE}"
        )
    return folder
