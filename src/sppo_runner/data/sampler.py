"""Resumable, rank-aware prompt sampling."""

from __future__ import annotations

from typing import Any

import torch


class PromptSampler:
    """Yields batches of prompt indices, reshuffled every epoch.

    The permutation of epoch ``e`` is a pure function of ``(seed, e)``, so the
    whole sampler state is two integers: checkpoints stay tiny and resume is exact.
    With ``world > 1`` every rank draws the same global batch and keeps the rows
    ``rank, rank + world, ...`` of it.

    Args:
        n: Dataset size.
        batch_size: Global prompts per step.
        seed: Shuffling seed.
        rank: This process's rank.
        world: Number of data-parallel ranks.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        if n < 1:
            raise ValueError("the training set is empty")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.pos = 0, 0

    def _perm(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def next_batch(self) -> list[int]:
        """Returns this rank's indices for the next global batch (wrapping epochs)."""
        out: list[int] = []
        while len(out) < self.batch_size:
            perm = self._perm(self.epoch)
            take = min(self.batch_size - len(out), self.n - self.pos)
            out.extend(perm[self.pos : self.pos + take])
            self.pos += take
            if self.pos >= self.n:
                self.epoch, self.pos = self.epoch + 1, 0
        return out[self.rank :: self.world]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
