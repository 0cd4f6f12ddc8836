"""Loading the policy, the critic (a scalar head on its own backbone) and a frozen reference."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from sppo_runner.errors import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelNotFoundError(UserError, FileNotFoundError):
    """A model could not be found locally and could not (or may not) be downloaded."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU.

    Raises:
        ConfigError: ``trainer.device`` names a CUDA device this machine does not have.
    """
    from sppo_runner.config import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(f"config error at 'trainer.device': got {name!r}, but this machine has no CUDA device "
                              f"(torch {torch.__version__}); allowed here: auto, cpu")
        if device.index is not None and device.index >= n:
            raise ConfigError(f"config error at 'trainer.device': got {name!r}, but this machine has {n} CUDA "
                              f"device(s); allowed here: auto, cpu, cuda, cuda:0..cuda:{n - 1}")
    return device


def _wrong_folder_hint(folder: Path, kind: str, key: str) -> str | None:
    """What to use instead when ``folder`` is a run or checkpoint folder, or the other model."""
    for sub in (f"final/{kind}", kind):
        if (folder / sub / "config.json").is_file():
            return f"{key}={folder} is a run or checkpoint folder, not a model; use {key}={folder / sub}"
    try:
        arch = " ".join(json.loads((folder / "config.json").read_text()).get("architectures") or [])
    except (OSError, ValueError):
        return None
    if kind == "policy" and "ForTokenClassification" in arch:
        other = folder.parent / "policy"
        use = f"; the policy beside it is {other}" if (other / "config.json").is_file() else ""
        return f"{key}={folder} is a critic ({arch}), not a causal LM policy{use}"
    return None


def resolve_path(path: str, kind: str) -> str:
    """Maps ``embedded`` to the shipped tiny model of ``kind`` (policy or critic).

    Raises:
        ModelNotFoundError: ``path`` is a run or checkpoint folder, or a critic given as the
            policy; the message names the folder to use.
    """
    if path == "embedded":
        from sppo_runner import assets

        return str(assets.path(kind))
    folder = Path(os.path.expanduser(path))
    if folder.is_dir():
        hint = _wrong_folder_hint(folder, kind, "model.path" if kind == "policy" else "critic.path")
        if hint:
            raise ModelNotFoundError(hint)
    return str(folder)


def context_length(model: torch.nn.Module) -> int | None:
    """The number of positions a model was built for (None when its config does not say)."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        n = getattr(getattr(model, "config", None), name, None)
        if isinstance(n, int) and n > 0:
            return n
    return None


def check_context(cfg: Any, critic_kind: str, policy: torch.nn.Module, critic: torch.nn.Module | None,
                  longest_prompt: int = 0) -> None:
    """Refuses settings whose prompts plus responses do not fit the models' positions.

    The policy reads prompt + response; a token-level critic too; a prompt critic (SPPO) only
    the prompt. Prompts are at most ``data.max_prompt_tokens`` (or, with no limit, the longest
    prompt actually loaded: ``longest_prompt``).

    Raises:
        ConfigError: Naming both numbers and the keys to change.
    """
    from sppo_runner.config import ConfigError

    r, e, d = cfg.rollout, cfg.eval, cfg.data
    new_key, new = max((("rollout.max_new_tokens", r.max_new_tokens), ("eval.max_new_tokens", e.max_new_tokens)),
                       key=lambda kv: kv[1])
    prompt_key, prompt = ("data.max_prompt_tokens", d.max_prompt_tokens) if d.max_prompt_tokens else \
        ("the longest prompt (data.max_prompt_tokens=0: no limit)", longest_prompt)
    needs = [("policy", policy, cfg.model.path, True)]
    if critic is not None:
        needs.append(("critic", critic, cfg.critic.path, critic_kind == "token"))
    for role, model, path, reads_response in needs:
        limit = context_length(model)
        total = prompt + (new if reads_response else 0)
        if limit is not None and total > limit:
            parts = f"{prompt_key} ({prompt})" + (f" + {new_key} ({new})" if reads_response else "")
            keys = "data.max_prompt_tokens" + (f" or {new_key}" if reads_response else "")
            raise ConfigError(
                f"config error at 'data.max_prompt_tokens': {parts} = {total} tokens exceed the {role}'s "
                f"{limit} positions (max_position_embeddings of {role} {path}); lower {keys}, or use a "
                f"{role} with a longer context"
            )


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


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Turns on activation checkpointing under its current transformers name (renamed in 5.x)."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()


def checkpointing_on(model: torch.nn.Module) -> bool:
    """Whether activation checkpointing is on, asked without transformers' deprecation warning."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if hasattr(type(model), name):
            return bool(getattr(model, name))
    return False


def load_policy(cfg: Any, device: torch.device) -> torch.nn.Module:
    """Loads the causal LM policy (``cfg``: a ModelConfig)."""
    from transformers import AutoModelForCausalLM

    model = _from_pretrained(
        AutoModelForCausalLM, resolve_path(cfg.path, "policy"),
        dtype=DTYPES[cfg.dtype], trust_remote_code=cfg.trust_remote_code,
    )
    if cfg.gradient_checkpointing:
        enable_checkpointing(model)
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
        enable_checkpointing(model)
    return model.to(device)


def load_reference(cfg: Any, device: torch.device) -> torch.nn.Module:
    """A frozen copy of the initial policy, for KL penalties."""
    ref = load_policy(cfg, device)
    ref.requires_grad_(False)
    return ref.eval()


def n_params(model: torch.nn.Module | None) -> int:
    """Number of parameters (0 for None)."""
    return 0 if model is None else sum(p.numel() for p in model.parameters())
