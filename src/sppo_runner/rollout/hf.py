"""Rollout backend on top of transformers' ``model.generate`` (the reference backend)."""

from __future__ import annotations

import torch

from sppo_runner.batch import RolloutBatch
from sppo_runner.logprobs import token_logprobs
from sppo_runner.rollout.base import SamplingParams
from sppo_runner.rollout.common import (
    assemble,
    draw_seed,
    eos_id_list,
    eos_lengths,
    left_pad,
    stop_length,
)


class HFEngine:
    """Samples with ``model.generate`` on left-padded prompts.

    Log-probs come from the raw (unprocessed) logits ``generate`` returns, scored
    with the learner's :func:`token_logprobs`. Sampling uses torch's global RNG, so
    each call forks it and seeds it from the passed generator: the caller's global
    RNG state is left untouched and equal seeds give equal samples.

    Args:
        tokenizer: The policy's tokenizer (pad and EOS ids, decoding).
        micro_batch_size: Most rows per ``generate`` call (None or 0: all).
    """

    exact_logprobs = True  # log-probs computed as the learner computes them (to 1e-4 in float32)

    def __init__(self, tokenizer, micro_batch_size: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.micro_batch_size = micro_batch_size
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else tokenizer.eos_token_id)

    def close(self) -> None:
        """Nothing to release (``generate`` runs in this process)."""

    def generate(
        self,
        model: torch.nn.Module,
        prompts: list[list[int]],
        params: SamplingParams,
        generator: torch.Generator,
    ) -> RolloutBatch:
        """See :meth:`RolloutEngine.generate`."""
        device = next(model.parameters()).device
        prompt_ids, prompt_mask = left_pad(prompts, params.n, self.pad_id)
        eos_ids = eos_id_list(self.tokenizer, model)
        seed = draw_seed(generator)
        was_training = model.training
        model.eval()
        fork_devices = [device.index or 0] if device.type == "cuda" else []
        rows = self.micro_batch_size or prompt_ids.shape[0]
        tokens, logprobs = [], []
        try:
            with torch.random.fork_rng(devices=fork_devices), torch.inference_mode():
                torch.manual_seed(seed)
                for start in range(0, prompt_ids.shape[0], rows):
                    chunk = slice(start, start + rows)
                    out = model.generate(
                        input_ids=prompt_ids[chunk].to(device),
                        attention_mask=prompt_mask[chunk].to(device),
                        **self._generate_kwargs(params, eos_ids),
                    )
                    tok = out.sequences[:, prompt_ids.shape[1] :]
                    # Raw logits, one [b, V] per step: score them as the learner does.
                    lp = token_logprobs(
                        torch.stack(out.logits, dim=1), tok, params.temperature
                    )
                    tokens.append(tok)
                    logprobs.append(lp)
        finally:
            model.train(was_training)
        tokens, logprobs = (
            _cat_right_padded(tokens, self.pad_id),
            _cat_right_padded(logprobs, 0.0),
        )
        lengths = eos_lengths(tokens, [] if params.ignore_eos else eos_ids)
        lengths = self._apply_stops(tokens, lengths, params.stop)
        return assemble(
            self.tokenizer,
            prompt_ids,
            prompt_mask,
            tokens,
            logprobs,
            lengths,
            params.n,
            self.pad_id,
        )

    def _generate_kwargs(self, params: SamplingParams, eos_ids: list[int]) -> dict:
        """Every sampling option spelled out, so the model's generation config cannot add any."""
        kwargs = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": not params.greedy,
            "eos_token_id": eos_ids or None,
            "pad_token_id": self.pad_id,
            "output_logits": True,
            "return_dict_in_generate": True,
        }
        if not params.greedy:
            # Explicit neutral values: None would be filled from the model's config.
            kwargs.update(
                top_k=params.top_k, top_p=params.top_p, temperature=params.temperature
            )
        if params.ignore_eos:
            kwargs["min_new_tokens"] = params.max_new_tokens
        return kwargs

    def _apply_stops(
        self, tokens: torch.Tensor, lengths: torch.Tensor, stops: tuple[str, ...]
    ) -> torch.Tensor:
        """Cuts each row right after the token that completes a stop string."""
        if not stops:
            return lengths
        lengths = lengths.clone()
        for i, row in enumerate(tokens.tolist()):
            cut = stop_length(self.tokenizer, row[: int(lengths[i])], stops)
            if cut is not None:
                lengths[i] = cut
        return lengths


def _cat_right_padded(parts: list[torch.Tensor], fill) -> torch.Tensor:
    """Concatenates ``[b_i, T_i]`` chunks along rows, right-padding to the widest."""
    width = max(p.shape[1] for p in parts)
    padded = [
        torch.nn.functional.pad(p, (0, width - p.shape[1]), value=fill) for p in parts
    ]
    return torch.cat(padded)
