"""The embedded default models shipped inside the package.

``policy/``: a tiny char-level ``Qwen2ForCausalLM`` warm-started on the synthetic
arithmetic task (see ``policy/card.json``); ``critic/``: a smaller
``Qwen2ForTokenClassification`` (one label) on its own backbone.  Both folders
hold the char-level tokenizer and load offline with the transformers Auto
classes.  Rebuild them with ``python scripts/make_starter_policy.py``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["NAMES", "REGENERATE", "path"]

NAMES = ("policy", "critic")
REGENERATE = "python scripts/make_starter_policy.py"
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
