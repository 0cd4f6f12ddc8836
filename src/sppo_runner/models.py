"""Loading the policy, the critic (a scalar head on its own backbone) and a frozen reference."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelNotFoundError(FileNotFoundError):
    """A model could not be found locally and could not (or may not) be downloaded."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_path(path: str, kind: str) -> str:
    """Maps ``embedded`` to the shipped tiny model of ``kind`` (policy or critic)."""
    if path == "embedded":
        from sppo_runner import assets

        return str(assets.path(kind))
    return os.path.expanduser(path)


def _from_pretrained(cls: Any, path: str, **kwargs: Any) -> Any:
    """Loads offline first; goes to the hub only for a hub id when not forced offline."""
    if Path(path).is_dir():
        return cls.from_pretrained(path, **kwargs)
    try:
        return cls.from_pretrained(path, local_files_only=True, **kwargs)
    except OSError as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        if offline:
            raise ModelNotFoundError(
                f"model {path!r} is not a local folder and is not in the Hugging Face cache, and "
                f"HF_HUB_OFFLINE is set. Download it first (hf download {path}) or "
                f"point the config at a local folder (model.path=/path/to/model)."
            ) from err
    try:
        return cls.from_pretrained(path, **kwargs)
    except OSError as err:
        raise ModelNotFoundError(
            f"model {path!r} could not be loaded: not a local folder, not cached, and the hub "
            f"did not serve it ({err.__class__.__name__}). Check the id or use a local path."
        ) from err


def load_tokenizer(path: str, trust_remote_code: bool = False) -> Any:
    """Loads the tokenizer, left-padding, with a pad token (EOS when the model has none)."""
    from transformers import AutoTokenizer

    tok = _from_pretrained(AutoTokenizer, resolve_path(path, "policy"), trust_remote_code=trust_remote_code)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_policy(cfg: Any, device: torch.device) -> torch.nn.Module:
    """Loads the causal LM policy (``cfg``: a ModelConfig)."""
    from transformers import AutoModelForCausalLM

    model = _from_pretrained(
        AutoModelForCausalLM, resolve_path(cfg.path, "policy"),
        dtype=DTYPES[cfg.dtype], trust_remote_code=cfg.trust_remote_code,
    )
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model.to(device)


def load_critic(cfg: Any, device: torch.device) -> torch.nn.Module:
    """Loads the critic: a token-classification head with one output on a backbone.

    Any causal-LM checkpoint works: transformers keeps the backbone weights and
    initializes the one-output ``score`` head. Dropout is off: transformers' head defaults
    to 0.1 when the config does not set ``classifier_dropout`` (Qwen2 configs do not), and
    the reference's critic sets 0, so that training values are those the advantages used.
    """
    from transformers import AutoModelForTokenClassification

    model = _from_pretrained(
        AutoModelForTokenClassification, resolve_path(cfg.path, "critic"),
        num_labels=1, dtype=DTYPES[cfg.dtype], trust_remote_code=cfg.trust_remote_code,
    )
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.config.classifier_dropout = 0.0  # saved with the critic
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model.to(device)


def load_reference(cfg: Any, device: torch.device) -> torch.nn.Module:
    """A frozen copy of the initial policy, for KL penalties."""
    ref = load_policy(cfg, device)
    ref.requires_grad_(False)
    return ref.eval()


def n_params(model: torch.nn.Module | None) -> int:
    """Number of parameters (0 for None)."""
    return 0 if model is None else sum(p.numel() for p in model.parameters())
