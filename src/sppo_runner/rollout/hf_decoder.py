"""The generic incremental decoder: the model's own forward with a transformers cache."""

from __future__ import annotations

import inspect

import torch

from sppo_runner.logprobs import cache_kwarg, returned_cache


class HFDecoder:
    """The model's own forward with a transformers cache (any causal LM).

    Args:
        model: A transformers causal LM.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        params = inspect.signature(model.forward).parameters
        self.cache_arg = cache_kwarg(model)
        self.extra = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def _forward(self, **kw) -> torch.Tensor:
        out = self.model(**kw, use_cache=True, **self.extra)
        self.cache = returned_cache(out)
        return out.logits[:, -1].float()

    def prefill(
        self, ids: torch.Tensor, mask: torch.Tensor, max_new: int, repeat: int = 1
    ) -> torch.Tensor:
        """See :meth:`~sppo_runner.rollout.decoders.FusedDecoder.prefill`."""
        b = ids.shape[0]
        self.mask = torch.cat([mask, mask.new_ones(b, max_new)], 1)
        self.col = ids.shape[1]
        self.pos = mask.sum(1, keepdim=True)  # [b, 1]
        logits = self._forward(
            input_ids=ids,
            attention_mask=mask,
            position_ids=(mask.cumsum(1) - 1).clamp(min=0),
        )
        if repeat > 1:
            self.cache.batch_repeat_interleave(repeat)
            self.mask = self.mask.repeat_interleave(repeat, dim=0)
            self.pos = self.pos.repeat_interleave(repeat, dim=0)
            logits = logits.repeat_interleave(repeat, dim=0)
        return logits

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """See :meth:`~sppo_runner.rollout.decoders.FusedDecoder.step`."""
        kw = {self.cache_arg: self.cache}
        logits = self._forward(
            input_ids=tokens[:, None],
            attention_mask=self.mask[:, : self.col + 1],
            position_ids=self.pos,
            **kw,
        )
        self.col += 1
        self.pos = self.pos + 1
        return logits

    def keep(self, rows: torch.Tensor) -> None:
        """See :meth:`~sppo_runner.rollout.decoders.FusedDecoder.keep`."""
        self.cache.batch_select_indices(rows)
        self.mask, self.pos = self.mask[rows], self.pos[rows]
