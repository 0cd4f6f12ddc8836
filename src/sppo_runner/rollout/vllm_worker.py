"""Code that runs inside vLLM's worker: loading the live policy's weights (a worker extension).

vLLM imports this module by name in its worker (``LLM(worker_extension_cls=...)``) and mixes
:class:`WeightSyncExtension` into the worker class, so ``llm.collective_rpc("sppo_load_weights",
...)`` runs :meth:`WeightSyncExtension.sppo_load_weights` on every worker. Keep it free of
imports from the rest of the package: it must import cheaply wherever vLLM puts its worker.
"""

from __future__ import annotations

from typing import Iterable, Union

import torch

Weights = Union[Iterable[tuple[str, torch.Tensor]], bytes]


def decode_weights(weights: Weights) -> Iterable[tuple[str, torch.Tensor]]:
    """Named tensors from either an iterable of them or safetensors bytes.

    Bytes are what crosses a process boundary: vLLM's RPC serializer turns tensor arguments
    into nested lists, so a worker in another process gets the state dict as one
    ``safetensors.torch.save`` blob instead.
    """
    if isinstance(weights, (bytes, bytearray)):
        from safetensors.torch import load

        return load(bytes(weights)).items()
    return weights


def refresh_tied_head(model: torch.nn.Module) -> bool:
    """Re-processes an ``lm_head`` that shares the input embedding's weight.

    Some platforms (vLLM's CPU backend) keep a pre-packed copy of each linear weight, made when
    weights are loaded. A tied head has no checkpoint entry of its own, so an in-place reload
    refreshes the embedding but leaves the head's packed copy stale: the model would embed with
    the new weights and score logits with the old ones.

    Returns:
        True when a tied head was found and re-processed.
    """
    head = getattr(model, "lm_head", None)
    weight = getattr(head, "weight", None)
    if weight is None:
        return False
    tied = any(m is not head and getattr(m, "weight", None) is weight for m in model.modules())
    if not tied:
        return False
    method = getattr(head, "quant_method", None)
    if method is not None:
        method.process_weights_after_loading(head)
    return True


class WeightSyncExtension:
    """Mixed into vLLM's worker class: methods callable through ``llm.collective_rpc``."""

    def sppo_load_weights(self, weights: Weights) -> int:
        """Loads checkpoint-format weights in place (HF names; vLLM shards and fuses them).

        Args:
            weights: ``(name, tensor)`` pairs, or safetensors bytes from another process.

        Returns:
            How many tensors were loaded.
        """
        count = 0

        def counted(items):
            nonlocal count
            for item in items:
                count += 1
                yield item

        # reload_weights (not model.load_weights): it also re-runs the per-layer
        # post-load processing (weight pre-packing on CPU), which plain loading skips.
        self.reload_weights(weights_iterator=counted(decode_weights(weights)))
        refresh_tied_head(self.model_runner.get_model())
        return count
