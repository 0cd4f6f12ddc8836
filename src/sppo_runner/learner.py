"""Critic and actor updates over mini-batches, driven by the algorithm spec.

Reads like cleanrl's PPO update: shuffle, split into mini-batches, one optimizer
step per mini-batch, and a dictionary of diagnostics (clip fractions, approx KL,
entropy, gradient norms, skipped non-finite steps).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterator, Optional

import torch

from sppo_runner.algorithms import AlgorithmSpec
from sppo_runner.algorithms.advantages import AdvantageInputs, token_rewards_from
from sppo_runner.algorithms.losses import Normalizer, aggregate, clipped_policy_loss, kl_penalty, masked_mean
from sppo_runner.batch import RolloutBatch, ScoredBatch, index_rollout
from sppo_runner.critics import CRITICS
from sppo_runner.logprobs import grouped_sequence_logprobs, sequence_logprobs
from sppo_runner.models import checkpointing_on
from sppo_runner.old_logprobs import recompute
from sppo_runner.rollout import recompute_old_logprobs


def autocast_context(device: torch.device, mixed_precision: Any) -> Any:
    """``torch.autocast`` for ``trainer.mixed_precision`` (``none`` gives a disabled context)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(getattr(mixed_precision, "value", mixed_precision)))
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def make_optimizer(model: torch.nn.Module, cfg: Any) -> torch.optim.Optimizer:
    """AdamW with the config's lr, betas and weight decay (constant lr, as in the paper)."""
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def _chunks(idx: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    size = size if size > 0 else len(idx)
    for start in range(0, len(idx), size):
        yield idx[start : start + size]


class OneProcess:
    """Data-parallel hooks of a learner that sees the whole batch (``sppo_runner.distributed.Dist`` in a job)."""

    def global_normalizer(self, norm: Normalizer) -> Normalizer:
        """The normalizer of the whole mini-batch (every rank's share of it, under data parallelism)."""
        return norm

    def all(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank (choices that change a sharded model's collectives)."""
        return flag


class Learner:
    """Owns the trainable models and their optimizers.

    Args:
        spec: The registered algorithm.
        cfg: The full run config (``algorithm``, ``model``, ``critic``, ``rollout``).
        policy: The causal LM being trained.
        critic: The critic model, or None when ``spec.critic == "none"``.
        ref: A frozen reference policy, or None when no KL term is used.
        seed: Seeds the mini-batch shuffling.
    """

    def __init__(self, spec: AlgorithmSpec, cfg: Any, policy: torch.nn.Module,
                 critic: Optional[torch.nn.Module], ref: Optional[torch.nn.Module], seed: int) -> None:
        self.spec, self.cfg, self.policy, self.critic, self.ref = spec, cfg, policy, critic, ref
        self.algo = cfg.algorithm
        self.critic_kind = CRITICS[spec.critic]
        self.actor_opt = make_optimizer(policy, cfg.model)
        self.critic_opt = make_optimizer(critic, cfg.critic) if critic is not None else None
        self.shuffle = torch.Generator().manual_seed(seed)
        self.skipped = {"actor": 0, "critic": 0}
        self.device = next(policy.parameters()).device
        self.autocast = lambda: autocast_context(self.device, cfg.trainer.mixed_precision)
        self.dp: Any = OneProcess()  # replaced by the job's Dist under torchrun
        mixed = str(getattr(cfg.trainer.mixed_precision, "value", cfg.trainer.mixed_precision))
        float32 = next(policy.parameters()).dtype == torch.float32 and mixed == "none"
        self.recompute_old = recompute_old_logprobs(getattr(self.algo, "recompute_old_logprobs", "auto"),
                                                    cfg.rollout.backend, float32)

    # ---- scoring -------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, rollout: RolloutBatch, rewards: torch.Tensor,
              baseline_rewards: Optional[torch.Tensor] = None) -> ScoredBatch:
        """Pre-update critic values, reference log-probs, KL-in-reward and advantages.

        Everything returned lives on the policy's device.
        """
        rollout, rewards = rollout.to(self.device), rewards.to(self.device)
        metrics: dict[str, float] = {}
        if self.recompute_old:
            rollout, metrics = self._recompute_old(rollout)
        baseline_rewards = None if baseline_rewards is None else baseline_rewards.to(self.device)
        values = None
        if self.critic_kind is not None:
            self.critic.eval()
            with self.autocast():
                values = self.critic_kind.values(self.critic, rollout)
        ref_lp = None
        if self.ref is not None:
            with self.autocast():
                ref_lp, _ = sequence_logprobs(self.ref, *rollout.full(), rollout.response_ids.shape[1],
                                              self.cfg.rollout.temperature)
        token_rewards = token_rewards_from(rewards, rollout.response_mask)
        if self.algo.kl_in_reward_coef > 0:
            kl = kl_penalty(rollout.logprobs, ref_lp, self.algo.kl_in_reward_estimator)
            token_rewards = token_rewards - self.algo.kl_in_reward_coef * kl * rollout.response_mask
        inp = AdvantageInputs(token_rewards, rollout.response_mask.float(), rollout.group, values, baseline_rewards)
        adv, returns = self.spec.advantage(inp, self.algo)
        return ScoredBatch(rollout, rewards, adv, returns, values, ref_lp, extra={"metrics": metrics})

    def _recompute_old(self, rollout: RolloutBatch) -> tuple[RolloutBatch, dict[str, float]]:
        """The learner's own log-probs of the sampled tokens (``algorithm.recompute_old_logprobs``)."""
        T, temp = rollout.response_ids.shape[1], self.cfg.rollout.temperature
        was_training = self.policy.training
        self.policy.eval()
        try:
            with self.autocast():
                return recompute(rollout, lambda r: self._policy_logprobs(r, T, temp, with_entropy=False)[0],
                                 self.cfg.model.micro_batch_size)
        finally:
            self.policy.train(was_training)

    # ---- updates -------------------------------------------------------------------------
    def _minibatches(self, n: int) -> Iterator[torch.Tensor]:
        perm = torch.randperm(n, generator=self.shuffle)
        size = math.ceil(n / self.algo.mini_batches)
        return _chunks(perm, size)

    def _step(self, model: torch.nn.Module, opt: torch.optim.Optimizer, clip: float, who: str) -> float:
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else float("inf"))
        if not torch.isfinite(grad_norm):
            # A NaN/inf gradient would poison Adam's moments for the rest of the run.
            self.skipped[who] += 1
            opt.zero_grad(set_to_none=True)
            return float("nan")
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(grad_norm)

    def _micro_batches(self, mb: torch.Tensor, size: int,
                       norm: Normalizer) -> Iterator[tuple[torch.Tensor, Normalizer]]:
        """Memory micro-batches of mini-batch ``mb``: their rows and their slice of ``norm``.

        Loss groups (``norm``) and memory micro-batches are independent: a group may span
        micro-batches or a micro-batch hold several groups; the loss is the same either way.
        """
        for pos in _chunks(torch.arange(len(mb)), size):
            yield mb[pos], norm.select(pos)

    def update_critic(self, batch: ScoredBatch) -> dict[str, float]:
        """Fits the critic to ``batch.returns`` (BCE for SPPO); no-op without a critic."""
        if self.critic_kind is None:
            return {}
        self.critic.train()
        stats: dict[str, list[float]] = defaultdict(list)
        micro = self.cfg.critic.micro_batch_size
        # The constant length of seq-mean-token-sum-norm: the batch's own width is its longest response.
        max_len = self.cfg.rollout.max_new_tokens
        for _ in range(self.algo.critic_epochs):
            for mb in self._minibatches(batch.rollout.size):
                norm = self.dp.global_normalizer(self.critic_kind.normalizer(
                    batch.rollout.response_mask[mb], max_len, self.algo.critic_loss_micro_batch))
                mb_loss = 0.0  # micro-batch shares add up to the mini-batch loss
                for idx, sub in self._micro_batches(mb, micro, norm):
                    roll = index_rollout(batch.rollout, idx)
                    idx = idx.to(self.device)
                    with self.autocast():
                        loss, _ = self.critic_kind.loss(self.critic, roll, batch.returns[idx],
                                                        batch.values[idx], self.algo, sub)
                    loss.backward()
                    mb_loss += loss.item()
                stats["critic/loss"].append(mb_loss)
                stats["critic/grad_norm"].append(self._step(self.critic, self.critic_opt, self.cfg.critic.grad_clip, "critic"))
        out = {k: sum(v) / len(v) for k, v in stats.items()}
        out["critic/skipped_steps"] = float(self.skipped["critic"])
        out.update(self.critic_kind.diagnostics(batch.values, batch.returns, batch.rollout.response_mask, self.algo))
        return out

    def update_actor(self, batch: ScoredBatch) -> dict[str, float]:
        """Clipped-PPO epochs over mini-batches of the batch."""
        self.policy.train()
        T = batch.rollout.response_ids.shape[1]
        temp, max_len = self.cfg.rollout.temperature, self.cfg.rollout.max_new_tokens
        stats: dict[str, list[float]] = defaultdict(list)
        for _ in range(self.algo.ppo_epochs):
            for mb in self._minibatches(batch.rollout.size):
                norm = self.dp.global_normalizer(
                    Normalizer.of(batch.rollout.response_mask[mb], max_len, self.algo.loss_micro_batch))
                micro: dict[str, list[float]] = defaultdict(list)
                for idx, sub in self._micro_batches(mb, self.cfg.model.micro_batch_size, norm):
                    self._actor_micro(batch, idx, T, temp, sub, micro)
                for k, v in micro.items():
                    # Loss shares add up over micro-batches; diagnostics are averaged.
                    stats[k].append(sum(v) if k.endswith("_loss") else sum(v) / len(v))
                stats["actor/grad_norm"].append(self._step(self.policy, self.actor_opt, self.cfg.model.grad_clip, "actor"))
        out = {k: sum(v) / len(v) for k, v in stats.items()}
        out["actor/skipped_steps"] = float(self.skipped["actor"])
        return out

    def _actor_micro(self, batch: ScoredBatch, idx: torch.Tensor, T: int, temp: float, norm: Normalizer,
                     stats: dict[str, list[float]]) -> None:
        roll = index_rollout(batch.rollout, idx)
        idx = idx.to(self.device)
        mask = roll.response_mask.float()
        # Entropy is always computed: it is the first sign of a collapsing policy.
        with self.autocast():
            logp, ent = self._policy_logprobs(roll, T, temp)
        a = self.algo
        loss, pg = clipped_policy_loss(logp, roll.logprobs, batch.advantages[idx], mask, a.clip_ratio_low,
                                       a.clip_ratio_high, a.dual_clip, a.loss_agg, norm)
        stats["actor/pg_loss"].append(loss.item())
        if a.kl_coef > 0:
            kl = kl_penalty(logp, batch.ref_logprobs[idx], a.kl_estimator)
            kl_loss = aggregate(kl, mask, a.loss_agg, norm)
            loss = loss + a.kl_coef * kl_loss
            stats["actor/kl_loss"].append(kl_loss.item())
        if a.entropy_coef > 0:
            loss = loss - a.entropy_coef * aggregate(ent, mask, a.loss_agg, norm)
        loss.backward()
        stats["actor/entropy"].append(masked_mean(ent.detach(), mask).item())
        for k, v in pg.items():
            stats[f"actor/{k}"].append(float(v))

    def _policy_logprobs(self, roll: RolloutBatch, T: int, temp: float,
                         with_entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs and entropy ``[b, T]``; samples of one prompt share its forward when they can."""
        checkpointing = checkpointing_on(self.policy)
        # Ranks must agree: the shared pass runs the (sharded) policy twice, the per-row pass once.
        shared = self.dp.all(len(torch.unique(roll.group)) < roll.size) and not checkpointing
        if shared:
            return grouped_sequence_logprobs(self.policy, roll.prompt_ids, roll.prompt_mask, roll.response_ids,
                                             roll.response_mask, roll.group, temp, with_entropy=with_entropy)
        return sequence_logprobs(self.policy, *roll.full(), T, temp, with_entropy=with_entropy)

    def state_dict(self) -> dict[str, Any]:
        return {
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict() if self.critic_opt else None,
            "shuffle": self.shuffle.get_state(),
            "skipped": dict(self.skipped),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor_opt.load_state_dict(state["actor_opt"])
        if self.critic_opt is not None and state["critic_opt"] is not None:
            self.critic_opt.load_state_dict(state["critic_opt"])
        self.shuffle.set_state(state["shuffle"])
        self.skipped = dict(state["skipped"])
