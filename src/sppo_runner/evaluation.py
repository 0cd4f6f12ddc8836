"""Held-out evaluation: mean@k (the paper's Avg@k), unbiased pass@k, maj@k, greedy accuracy."""

from __future__ import annotations

from collections import Counter
from math import comb
from typing import Any, Sequence

import torch

from sppo_runner.rollout.base import SamplingParams


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: ``1 - C(n-c, k) / C(n, k)``."""
    if k > n:
        raise ValueError(f"pass@k needs k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def maj_at_k(answers: Sequence[str | None], correct: Sequence[bool]) -> float:
    """1.0 when the most frequent extracted answer is a correct one (ties: first seen wins)."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return 0.0
    top = votes.most_common(1)[0][0]
    return float(any(ok for a, ok in zip(answers, correct) if a == top))


def _generate_all(policy: Any, engine: Any, prompts: list[list[int]], params: SamplingParams,
                  batch_rows: int, generator: torch.Generator) -> tuple[list[str], list[int]]:
    """Generates ``params.n`` responses per prompt in chunks of about ``batch_rows`` rows."""
    per_chunk = max(1, batch_rows // params.n)
    texts: list[str] = []
    lengths: list[int] = []
    for start in range(0, len(prompts), per_chunk):
        out = engine.generate(policy, prompts[start : start + per_chunk], params, generator)
        texts.extend(out.texts)
        lengths.extend(out.response_mask.sum(-1).tolist())
    return texts, lengths


@torch.no_grad()
def evaluate(policy: Any, engine: Any, prompts: list[list[int]], answers: list[str], verifier: Any,
             cfg: Any, sampling: SamplingParams, generator: torch.Generator, prefix: str = "eval") -> dict[str, float]:
    """Scores the policy on held-out prompts.

    Args:
        policy: The causal LM.
        engine: A RolloutEngine.
        prompts: Token ids per problem.
        answers: Ground truths, aligned with ``prompts``.
        verifier: An object with ``grade_batch(responses, golds)``.
        cfg: An EvalConfig (``k``, ``greedy``, ``batch_size``).
        sampling: Sampling params for the k samples (``n`` is overridden by ``cfg.k``).
        generator: Seeded generator for the samples.
        prefix: Metric namespace.

    Returns:
        ``{prefix}/mean@k``, ``pass@k``, ``maj@k``, ``greedy_acc``, ``response_len``,
        ``status/<name>`` counts and ``n_problems``.
    """
    policy.eval()
    k = cfg.k
    params = SamplingParams(n=k, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
                            max_new_tokens=sampling.max_new_tokens, stop=sampling.stop)
    texts, lengths = _generate_all(policy, engine, prompts, params, cfg.batch_size, generator)
    golds = [a for a in answers for _ in range(k)]
    verdicts = verifier.grade_batch(texts, golds)
    m: dict[str, float] = {f"{prefix}/n_problems": float(len(prompts)), f"{prefix}/k": float(k)}
    acc, passk, majk = [], [], []
    for i in range(len(prompts)):
        vs = verdicts[i * k : (i + 1) * k]
        ok = [v.reward > 0 for v in vs]
        acc.append(sum(ok) / k)
        passk.append(pass_at_k(k, sum(ok), k))
        majk.append(maj_at_k([v.extracted for v in vs], ok))
    n = max(1, len(prompts))
    m[f"{prefix}/mean@k"] = sum(acc) / n
    m[f"{prefix}/pass@k"] = sum(passk) / n
    m[f"{prefix}/maj@k"] = sum(majk) / n
    m[f"{prefix}/response_len"] = sum(lengths) / max(1, len(lengths))
    for status, count in Counter(v.status for v in verdicts).items():
        m[f"{prefix}/status/{status}"] = float(count)
    if cfg.greedy:
        greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=sampling.max_new_tokens, stop=sampling.stop)
        gtexts, _ = _generate_all(policy, engine, prompts, greedy, cfg.batch_size, generator)
        m[f"{prefix}/greedy_acc"] = sum(v.reward for v in verifier.grade_batch(gtexts, list(answers))) / n
    return m
