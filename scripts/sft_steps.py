"""Supervised fine-tuning steps shared by the starter-policy scripts.

``make_starter_policy.py`` (the embedded starter) and ``horizon_starters.py``
(the horizon kit) train with the same batching, optimizer and step; the batch
of a step depends on (seed, step) only, which is what makes their rewinds and
re-runs reproduce the same weights.
"""

from __future__ import annotations

import torch

from sppo_runner.data.problem import Problem


# --------------------------------------------------------------------------- #
# data
# --------------------------------------------------------------------------- #
def tokenize_pairs(tok, problems: list[Problem]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, solution ids + EOS) for every problem."""
    prompts = tok([p.prompt for p in problems], add_special_tokens=False)["input_ids"]
    sols = tok([p.extra["solution"] for p in problems], add_special_tokens=False)["input_ids"]
    return [(list(p), list(s) + [tok.eos_token_id]) for p, s in zip(prompts, sols)]


def collate(pairs: list[tuple[list[int], list[int]]], pad_id: int, loss_on_prompt: bool) -> dict:
    """Right-padded batch; labels are -100 on padding (and on the prompt unless asked)."""
    width = max(len(p) + len(s) for p, s in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    labels = torch.full((len(pairs), width), -100, dtype=torch.long)
    for i, (p, s) in enumerate(pairs):
        seq = p + s
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        start = 0 if loss_on_prompt else len(p)
        labels[i, start : len(seq)] = torch.tensor(seq[start:])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batch_indices(seed: int, step: int, pool: int, bs: int) -> list[int]:
    """Indices of the batch of ``step``: a function of (seed, step) only, so rewinds replay."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, pool, (bs,), generator=g).tolist()


# --------------------------------------------------------------------------- #
# training
# --------------------------------------------------------------------------- #
def make_optimizer(model, lr: float, wd: float) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.98), eps=1e-8,
    )


def rewind(snapshot: tuple, policy, opt, eval_every: int, min_eval_every: int) -> tuple[int, int]:
    """Restores ``snapshot`` (step, policy state, optimizer state); returns its step and a 4x denser interval.

    Batches depend on the step only, so replaying from the snapshot is exact.
    """
    step, sd, osd = snapshot
    policy.load_state_dict(sd)
    opt.load_state_dict(osd)
    return step, max(min_eval_every, eval_every // 4)


def train_step(model, opt, batch: dict, lr: float) -> float:
    model.train()
    for group in opt.param_groups:
        group["lr"] = lr
    loss = model(**batch).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.detach().item()
