"""The training loop: the same for every algorithm. Importable without Hydra.

One step: sample prompts -> roll out -> verify -> (greedy baseline) -> critic
values, advantages -> critic update -> actor update -> log. The registered
:class:`AlgorithmSpec` decides what differs; this file never looks at a name.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from sppo_runner import rundir
from sppo_runner.batch import RolloutBatch, ScoredBatch
from sppo_runner.benchmarks import eval_sampling, evaluate_sets
from sppo_runner.evaluation import evaluate
from sppo_runner.rollout import sync_weights
from sppo_runner.rollout.base import SamplingParams
from sppo_runner.distributed import env_rank
from sppo_runner.session import Session, build_session
from sppo_runner.signals import StopFlag
from sppo_runner.telemetry import reset_peak_memory

log = logging.getLogger(__name__)


@dataclass
class Collected:
    """One step's scored samples before the learner sees them."""

    rollout: RolloutBatch
    rewards: torch.Tensor  # [B]
    verdicts: list
    prompt_idx: list[int]  # [n_prompts] indices into the training set
    baseline: Optional[torch.Tensor] = None  # [B] greedy-rollout rewards (ReMax)
    rollout_s: float = 0.0
    verify_s: float = 0.0


def collect(s: Session) -> Collected:
    """Samples a batch of prompts, generates, and grades (plus a greedy baseline if the spec asks)."""
    idx = s.sampler.next_batch()
    prompts = [s.train.token_ids[i] for i in idx]
    answers = [s.train.problems[i].answer for i in idx]
    t0 = time.perf_counter()
    with s.learner.autocast():
        rollout = s.engine.generate(s.policy, prompts, s.sampling, s.gen)
    t1 = time.perf_counter()
    golds = [answers[g] for g in rollout.group.tolist()]
    verdicts = s.verifier.grade_batch(rollout.texts, golds)
    rewards = torch.tensor([v.reward for v in verdicts], dtype=torch.float32)
    baseline = None
    if s.spec.greedy_baseline:
        greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=s.sampling.max_new_tokens, stop=s.sampling.stop)
        with s.learner.autocast():
            g = s.engine.generate(s.policy, prompts, greedy, s.gen)
        g_rewards = torch.tensor([v.reward for v in s.verifier.grade_batch(g.texts, answers)])
        baseline = g_rewards[rollout.group.cpu()]
    return Collected(rollout, rewards, verdicts, idx, baseline, t1 - t0, time.perf_counter() - t1)


def rollout_metrics(c: Collected, scored: ScoredBatch, n_per_prompt: int, max_new_tokens: int) -> dict[str, float]:
    """Reward, verifier-status, length and critic diagnostics of one step."""
    mask = scored.rollout.response_mask.float()  # on the learner's device, like every scored field
    lengths = mask.sum(-1)
    m = {
        "reward/mean": c.rewards.mean().item(),
        "rollout/response_len_mean": lengths.mean().item(),
        "rollout/response_len_max": lengths.max().item(),
        # Responses cut by the length cap never reached an answer: watch this when tuning max_new_tokens.
        "rollout/clipped_frac": (lengths >= max_new_tokens).float().mean().item(),
        "rollout/advantage_mean": (scored.advantages * mask).sum().item() / max(1.0, mask.sum().item()),
    }
    for status, count in Counter(v.status for v in c.verdicts).items():
        m[f"reward/status/{status}"] = float(count)
    if n_per_prompt > 1:
        groups = c.rewards.view(-1, n_per_prompt)
        m["rollout/group_all_equal_frac"] = (groups.max(1).values == groups.min(1).values).float().mean().item()
    if scored.values is not None and scored.values.dim() == 1:
        v = torch.sigmoid(scored.values)
        m["critic/value_mean"] = v.mean().item()
        m["critic/value_reward_corr"] = torch.corrcoef(torch.stack([v, scored.rewards]))[0, 1].nan_to_num().item()
    m.update(scored.extra.get("metrics", {}))  # rollout/logprob_abs_diff_* when old log-probs were recomputed
    return m


def sample_rows(s: Session, c: Collected, scored: ScoredBatch) -> list[dict]:
    """The first ``logger.samples_per_step`` samples of the step, for samples.jsonl."""
    rows = []
    n = s.sampling.n
    for i in range(min(s.cfg.logger.samples_per_step, c.rollout.size)):
        p = s.train.problems[c.prompt_idx[i // n]]
        v = scored.values
        rows.append({
            "prompt": p.prompt, "response": c.rollout.texts[i], "answer": p.answer,
            "extracted": c.verdicts[i].extracted, "status": c.verdicts[i].status, "reward": c.verdicts[i].reward,
            "value": None if v is None or v.dim() != 1 else torch.sigmoid(v[i]).item(),
            "advantage": scored.advantages[i, 0].item(),
        })
    return rows


def run_eval(s: Session) -> dict[str, float]:
    """Held-out evaluation with its own seeded generator, so it never shifts training randomness.

    The main held-out set gives ``eval/mean@k`` etc.; each ``eval.benchmarks`` entry adds
    ``eval/<name>/...``, and then a table is printed and written to ``eval/step<N>.md|json``.
    """
    e = s.cfg.eval
    params = eval_sampling(s.cfg)
    gen = torch.Generator().manual_seed(s.dist.rank_seed(s.cfg.seed + 7919 * (s.counters.step + 1)))
    answers = [p.answer for p in s.heldout.problems]  # this rank's share of the held-out set
    with s.learner.autocast():
        m = evaluate(s.policy, s.engine, s.heldout.token_ids, answers, s.verifier, e, params, gen)
        if s.benchmarks:
            m.update(evaluate_sets(s.policy, s.engine, s.verifier, s.benchmarks, e, params, gen))
    m = s.dist.reduce_eval(m)  # the shards' metrics, as one evaluation of the whole set
    prefixes = {"heldout": "eval", **{name: f"eval/{name}" for name in s.benchmarks}}
    text = s.tracker.report(s.run_dir / "eval", f"step{s.counters.step:06d}", m, prefixes, e.k)
    s.tracker.write(f"step {s.counters.step} validation:\n{text}")
    return m


def train_step(s: Session) -> dict[str, float]:
    """One step of the loop (the part that is the same for every algorithm)."""
    t0 = time.perf_counter()
    c = collect(s)
    t1 = time.perf_counter()
    scored = s.learner.score(c.rollout, c.rewards, c.baseline)
    metrics = s.learner.update_critic(scored)
    if s.counters.step >= s.cfg.algorithm.critic_warmup_steps:
        metrics.update(s.learner.update_actor(scored))
        metrics.update(sync_weights(s.engine, s.policy))  # engines with their own copy of the weights
    t2 = time.perf_counter()
    # Over every rank: budgets and eval cadence must see the same numbers everywhere.
    prompts, samples, tokens, seconds = s.dist.step_totals(len(c.prompt_idx), c.rollout.size, c.rollout.n_tokens,
                                                           t2 - t0)
    s.counters.step += 1
    s.counters.prompts += prompts
    s.counters.samples += samples
    s.counters.tokens += tokens
    s.counters.train_seconds += seconds
    metrics.update(rollout_metrics(c, scored, s.sampling.n, s.sampling.max_new_tokens))
    metrics.update({
        "perf/step_seconds": t2 - t0, "perf/rollout_seconds": c.rollout_s, "perf/verify_seconds": c.verify_s,
        "perf/update_seconds": t2 - t1, "perf/tokens_per_s": c.rollout.n_tokens / max(c.rollout_s, 1e-9),
    })
    s.tracker.log_samples(s.counters.step, sample_rows(s, c, scored))
    return s.dist.reduce_metrics(metrics)


def _update_wall(s: Session, t_start: float) -> None:
    """Wall time of the whole run, including the segments before a resume."""
    s.counters.wall_seconds = s.history.get("wall_before", 0.0) + time.perf_counter() - t_start


def train(s: Session, stop: StopFlag, t_start: float) -> str:
    """Runs steps until a budget is reached or a stop is requested; returns why it stopped."""
    t = s.cfg.trainer
    while (reason := s.counters.budget_reached(t)) is None:
        if s.dist.any(stop.requested):
            s.save_checkpoint()
            return "interrupted"
        seconds_before = s.counters.train_seconds
        metrics = train_step(s)
        step = s.counters.step
        by_steps = t.eval_every and step % t.eval_every == 0
        by_time = t.eval_every_seconds and (s.counters.train_seconds // t.eval_every_seconds
                                            > seconds_before // t.eval_every_seconds)
        if (by_steps or by_time) and s.counters.budget_reached(t) is None:
            metrics.update(run_eval(s))
            s.tracker.write(f"step {step}: held-out mean@{s.cfg.eval.k} = {metrics['eval/mean@k']:.3f}")
        _update_wall(s, t_start)
        metrics.update(s.counters.as_metrics())
        metrics.update(s.dist.memory_metrics())
        s.tracker.log(step, metrics)
        s.tracker.progress(step, {"reward": f"{metrics['reward/mean']:.2f}",
                                  "acc": f"{s.history.get('last_eval', float('nan')):.2f}",
                                  "tok/s": f"{metrics['perf/tokens_per_s']:.0f}"})
        if "eval/mean@k" in metrics:
            s.history["last_eval"] = metrics["eval/mean@k"]
        if t.checkpoint_every and step % t.checkpoint_every == 0:
            s.save_checkpoint()
    return reason


def finish(s: Session, reason: str, t_start: float) -> dict[str, Any]:
    """Final evaluation, models, plot and summary.json; prints the before -> after line."""
    final = run_eval(s)
    _update_wall(s, t_start)
    s.tracker.log(s.counters.step, {**final, **s.counters.as_metrics()})
    s.save_checkpoint()
    s.save_final()
    s.tracker.plot_curves()
    before = s.history["eval_before"]
    k = s.cfg.eval.k
    summary = {
        "algorithm": s.cfg.algorithm.name, "seed": s.cfg.seed, "stop_reason": reason, "k": k,
        "n_heldout_problems": int(final["eval/n_problems"]),
        "heldout_accuracy_before": before["eval/mean@k"], "heldout_accuracy_after": final["eval/mean@k"],
        "heldout_greedy_before": before.get("eval/greedy_acc"), "heldout_greedy_after": final.get("eval/greedy_acc"),
        "steps": s.counters.step, "prompts": s.counters.prompts, "samples": s.counters.samples,
        "generated_tokens": s.counters.tokens, "train_seconds": s.counters.train_seconds,
        "wall_seconds": s.counters.wall_seconds, "n_params": s.history["n_params"],
        "peak_memory": s.dist.memory_metrics(),
    }
    s.tracker.write(
        f"held-out accuracy (mean@{k}, {int(final['eval/n_problems'])} problems): "
        f"{before['eval/mean@k']:.3f} -> {final['eval/mean@k']:.3f}"
    )
    s.tracker.finish(summary)
    return summary


def run(cfg: Any, run_dir: Optional[Path] = None) -> dict[str, Any]:
    """Trains one run described by a validated :class:`~sppo_runner.config.Config`.

    Args:
        cfg: The typed config.
        run_dir: Output folder; defaults to ``cfg.resume`` or ``cfg.run_dir`` or ``outputs/run``.

    Returns:
        The summary dictionary (also written to ``summary.json``); an interrupted run returns
        ``{"stop_reason": "interrupted", "steps": N, "signal": signum}``.

    Raises:
        RunFolderError: The folder is in use, or holds another run and ``cfg.resume`` is not set.
        ResumeError: ``cfg.resume`` cannot continue the folder.
    """
    run_dir = Path(run_dir or cfg.resume or cfg.run_dir or "outputs/run")
    with rundir.open_run(cfg, run_dir, rank=env_rank()[0]):  # lock, checks, config.yaml
        return _run(cfg, run_dir)


def _run(cfg: Any, run_dir: Path) -> dict[str, Any]:
    reset_peak_memory()  # the run's own peak, not an earlier sweep job's
    t_start = time.perf_counter()
    s = build_session(cfg, run_dir)
    stop = StopFlag()
    old = stop.install()
    try:
        s.history["wall_before"] = s.counters.wall_seconds
        if "eval_before" not in s.history:
            s.history["eval_before"] = run_eval(s)
            params = {f"perf/{k}_params": float(v) for k, v in s.history["n_params"].items()}
            s.tracker.log(0, {**s.history["eval_before"], **s.counters.as_metrics(), **params})
            s.history["last_eval"] = s.history["eval_before"]["eval/mean@k"]
        reason = train(s, stop, t_start)
        if reason == "interrupted":
            s.tracker.write(f"stopped at step {s.counters.step}; continue with: sppo-run resume={run_dir}")
            return {"stop_reason": reason, "steps": s.counters.step, "signal": stop.signum}
        return finish(s, reason, t_start)
    finally:
        stop.restore(old)
        s.close()


def load_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "summary.json").read_text())
