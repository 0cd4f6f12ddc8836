"""The one record shape every data source produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """A math problem with a verifiable answer.

    Attributes:
        prompt: The user-facing question text (no chat template applied yet).
        answer: Ground-truth answer string, as the verifier compares it (often LaTeX).
        source: Data-source tag, e.g. ``"synthetic/arith-d2"`` or ``"math__math_500"``.
        uid: Stable identifier, unique within a dataset.
        extra: Free-form metadata (reference solution, original index, ...).
    """

    prompt: str
    answer: str
    source: str
    uid: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_row(self) -> dict[str, Any]:
        """Returns a verl-style row (the format of ``../shared/data/*.parquet``)."""
        return {
            "data_source": self.source,
            "prompt": [{"role": "user", "content": self.prompt}],
            "reward_model": {"ground_truth": self.answer, "style": "rule"},
            "extra_info": {"uid": self.uid, **self.extra},
        }
