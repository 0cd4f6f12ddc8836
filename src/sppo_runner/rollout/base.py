"""The rollout-engine interface every backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from sppo_runner.batch import RolloutBatch


@dataclass(frozen=True)
class SamplingParams:
    """How to sample responses.

    Attributes:
        n: Samples per prompt (rows of the same prompt are adjacent in the batch).
        temperature: Softmax temperature; 0 means greedy decoding.
        top_p: Nucleus threshold in (0, 1]; 1 disables it.
        top_k: Keep the k most likely tokens; 0 disables it.
        max_new_tokens: Hard cap on generated tokens per response.
        stop: Strings that end a response (the stop string is kept in the text).
        ignore_eos: Keep sampling past EOS (EOS is masked out of sampling) so every
            row has ``max_new_tokens`` tokens; for benchmarks.
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    stop: tuple[str, ...] = field(default_factory=tuple)
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


class RolloutEngine(Protocol):
    """Generates responses for a list of tokenized prompts.

    Implementations must:
      * left-pad prompts with position ids counted from the first real token;
      * return ``logprobs`` of the sampled tokens under ``softmax(logits / T)``
        (untruncated by top-p / top-k), computed exactly as the learner does, so
        that a recomputation matches within 1e-4 in float32;
      * be deterministic given ``generator`` (same seed, same machine, same tokens);
      * stop a row at EOS (EOS is kept and masked in) or at a stop string.
    """

    def generate(
        self,
        model: torch.nn.Module,
        prompts: list[list[int]],
        params: SamplingParams,
        generator: torch.Generator,
    ) -> RolloutBatch:
        """Samples ``params.n`` responses for every prompt.

        Args:
            model: A transformers causal LM (in eval mode during the call).
            prompts: Token ids of each prompt, unpadded.
            params: Sampling parameters.
            generator: Seeded CPU generator that drives all randomness.

        Returns:
            A RolloutBatch of ``len(prompts) * params.n`` rows, the samples of
            prompt i in rows ``i*n .. i*n+n-1``.
        """
        ...

    def close(self) -> None:
        """Releases worker processes or other resources (the engine stays usable)."""
        ...
