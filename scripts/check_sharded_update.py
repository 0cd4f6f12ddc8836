"""N ranks x B/N prompts take the same update as 1 rank x B prompts, fed identical rollouts.

For each case (SPPO; GRPO with token-mean; GRPO with seq-mean-token-sum-norm, whose
normalizer takes the longest padded length over ranks) one learner step runs twice:

* reference: this process alone, plain (unsharded) models, the whole batch;
* sharded: every rank, FSDP2-wrapped models, its share of the prompts (``rank::world``,
  the PromptSampler's split; a prompt's samples stay together), global loss normalizers.

Compared on rank 0: the losses and gradient norms the learner reports (reduced over ranks
as a run logs them), every parameter's gradient at the optimizer step (gathered), and every
updated weight. Micro-batches of 8 rows exercise the per-micro-batch shares and the
rank-consistent choice of the shared-prompt forward. The batch is made up here (random
prompt/response tokens and lengths, 0/1 rewards, behaviour log-probs = the policy's own
plus noise so that clipping happens); no rollout engine or verifier is involved.

    torchrun --standalone --nproc_per_node=2 scripts/check_sharded_update.py [--prompts 64]

The last line printed is one JSON object; the exit status is 1 when a difference exceeds
its tolerance (see ``TOL``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.distributed as tdist

from sppo_runner.batch import RolloutBatch, index_rollout
from sppo_runner.distributed.fsdp import full_state_dict, full_tensor, make_mesh, shard
from sppo_runner.distributed.runtime import Dist, init_process_group, resolve_device
from sppo_runner.learner import Learner
from sppo_runner.logprobs import sequence_logprobs
from sppo_runner.models import load_critic, load_policy

# float32 tolerances: relative for losses and gradient norms; for gradients and weights the
# largest absolute difference relative to the largest absolute value of that tensor set (weights:
# where AdamW's first step is resolved, see compare_weights).
TOL = {"loss": 1e-5, "grad_norm": 1e-5, "grads": 1e-5, "weights": 1e-6}
CASES = {
    "sppo": ("sppo", 1, "token-mean"),
    "grpo": ("grpo", 4, "token-mean"),
    "grpo_seq_sum_norm": ("grpo", 2, "seq-mean-token-sum-norm"),
}


def make_config(algorithm: str, n: int, loss_agg: str, prompts: int, device: str):
    from hydra import compose, initialize_config_dir

    from sppo_runner.cli import CONF_DIR, _register
    from sppo_runner.config import to_object

    _register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[
            f"algorithm={algorithm}", f"algorithm.samples_per_prompt={n}", f"algorithm.loss_agg={loss_agg}",
            f"data.prompts_per_step={prompts}", "model.micro_batch_size=8", "critic.micro_batch_size=8",
            "model.lr=1e-3", "critic.lr=1e-3", f"trainer.device={device}", "rollout.backend=hf"])
    return to_object(cfg)


def make_batch(policy: torch.nn.Module, prompts: int, n: int, vocab: int,
               seed: int) -> tuple[RolloutBatch, torch.Tensor]:
    """A fixed batch: ``prompts`` x ``n`` rows, prompt lengths 3-12, response lengths 1-16."""
    g = torch.Generator().manual_seed(seed)
    P, T, B = 12, 16, prompts * n
    p_len = torch.randint(3, P + 1, (prompts,), generator=g).repeat_interleave(n)
    r_len = torch.randint(1, T + 1, (B,), generator=g)
    p_ids = torch.randint(4, vocab, (prompts, P), generator=g).repeat_interleave(n, 0)
    p_mask = (torch.arange(P)[None] >= P - p_len[:, None]).long()  # left padding
    r_mask = (torch.arange(T)[None] < r_len[:, None]).long()
    r_ids = torch.randint(4, vocab, (B, T), generator=g) * r_mask
    group = torch.arange(prompts).repeat_interleave(n)
    batch = RolloutBatch(p_ids * p_mask, p_mask, r_ids, r_mask, torch.zeros(B, T), [""] * B, group)
    with torch.no_grad():
        lp, _ = sequence_logprobs(policy, *batch.full(), T)
    batch.logprobs = (lp + 0.3 * torch.randn(B, T, generator=g)) * r_mask
    rewards = (torch.rand(B, generator=g) < 0.5).float()
    return batch, rewards


def local_share(batch: RolloutBatch, rewards: torch.Tensor, rank: int, world: int) -> tuple[RolloutBatch, torch.Tensor]:
    """Rows of the prompts ``rank, rank + world, ...``; group ids renumbered as a rank's own rollout has them."""
    keep = torch.nonzero(batch.group % world == rank).squeeze(1)
    local = index_rollout(batch, keep)
    local.group = local.group // world
    return local, rewards[keep]


def learner_step(learner: Learner, batch: RolloutBatch, rewards: torch.Tensor, grads: dict) -> dict:
    """score -> critic update -> actor update; ``grads`` collects every gradient at its optimizer step."""
    pairs = (("actor", learner.actor_opt, learner.policy), ("critic", learner.critic_opt, learner.critic))
    for name, opt, model in pairs:
        if opt is not None:
            opt.register_step_pre_hook(lambda *_, n=name, m=model: grads.update(
                {f"{n}.{k}": full_tensor(p.grad).detach().cpu().clone() for k, p in m.named_parameters()}))
    scored = learner.score(batch, rewards)
    metrics = learner.update_critic(scored)
    metrics.update(learner.update_actor(scored))
    return metrics


def weights(models: dict, sharded: bool) -> dict[str, torch.Tensor]:
    out = {}
    for name, m in models.items():
        if m is not None:
            if sharded:
                state = full_state_dict(m, True)  # gathered on rank 0
            else:
                state = {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}
            out.update({f"{name}.{k}": v.float() for k, v in state.items()})
    return out


def max_rel_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))[:5]
    scale = max(float(t.abs().max()) for t in a.values())
    return max(float((a[k] - b[k]).abs().max()) for k in a) / max(scale, 1e-30)


def compare_weights(initial: dict, ref: dict, got: dict, lr: float) -> dict[str, float]:
    """Updated weights, where the step is resolved and where it is not.

    AdamW's first step moves a weight by ``lr * g / (|g| + 1e-8)``: about ``lr`` wherever the
    gradient is well above Adam's epsilon. There the two runs must agree to float32 rounding.
    Where ``|g|`` is within ~100x of epsilon (a float32 rounding difference of a near-zero
    gradient sum changes the step there), the step is smaller than ``0.99 lr``: those weights are
    counted and their difference reported in units of ``lr`` (bounded by 2 by construction).
    """
    assert ref.keys() == got.keys(), sorted(set(ref) ^ set(got))[:5]
    scale = max(float(t.abs().max()) for t in ref.values())
    resolved, unresolved, n_unresolved, n = 0.0, 0.0, 0, 0
    for k in ref:
        diff = (ref[k] - got[k]).abs()
        full_step = (ref[k] - initial[k]).abs() > 0.99 * lr
        resolved = max(resolved, float(diff[full_step].max()) if full_step.any() else 0.0)
        unresolved = max(unresolved, float(diff[~full_step].max()) if (~full_step).any() else 0.0)
        n_unresolved += int((~full_step).sum())
        n += diff.numel()
    return {"weights_max_rel_diff": resolved / scale, "weights_small_step_frac": n_unresolved / n,
            "weights_small_step_max_diff_over_lr": unresolved / lr}


class Case:
    """One case's config, fresh models (identical in every process) and fixed batch."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        from sppo_runner.algorithms import ALGORITHMS

        algorithm, self.n, loss_agg = CASES[name]
        self.cfg = make_config(algorithm, self.n, loss_agg, args.prompts, args.device)
        self.spec = ALGORITHMS[algorithm]
        policy, critic = self.models()
        self.batch, self.rewards = make_batch(policy, args.prompts, self.n, policy.config.vocab_size, seed=1)
        self.initial = weights({"policy": policy, "critic": critic}, sharded=False)

    def models(self) -> tuple[torch.nn.Module, torch.nn.Module | None]:
        torch.manual_seed(0)  # the critic's fresh head: identical on every rank and in the reference
        cpu = torch.device("cpu")
        policy = load_policy(self.cfg.model, cpu)
        return policy, load_critic(self.cfg.critic, cpu) if self.spec.critic != "none" else None

    def reference(self, device: torch.device) -> dict:
        """The whole batch in this process alone, plain models (no collectives)."""
        policy, critic = self.models()
        learner = Learner(self.spec, self.cfg, policy.to(device), critic and critic.to(device), None, seed=0)
        grads: dict = {}
        metrics = learner_step(learner, self.batch, self.rewards, grads)
        return {"metrics": metrics, "grads": grads, "weights": weights({"policy": policy, "critic": critic}, False)}

    def sharded(self, dist: Dist) -> dict:
        """This rank's share with FSDP2-sharded models and global normalizers (every rank)."""
        policy, critic = self.models()
        policy, critic = shard(policy, dist.mesh, self.cfg), critic and shard(critic, dist.mesh, self.cfg)
        learner = Learner(self.spec, self.cfg, policy, critic, None, seed=0)
        learner.dp = dist
        grads: dict = {}
        share = local_share(self.batch, self.rewards, dist.rank, dist.world)
        metrics = dist.reduce_metrics(learner_step(learner, *share, grads))
        return {"metrics": metrics, "grads": grads, "weights": weights({"policy": policy, "critic": critic}, True)}

    def compare(self, ref: dict, got: dict) -> dict:
        out = {}
        for key in ("critic/loss", "actor/pg_loss", "critic/grad_norm", "actor/grad_norm"):
            if key in ref["metrics"]:
                a, b = ref["metrics"][key], got["metrics"][key]
                out[key] = {"one_rank": a, "sharded": b, "rel_diff": abs(b - a) / max(abs(a), 1e-30)}
        out["grads_max_rel_diff"] = max_rel_diff(ref["grads"], got["grads"])
        out.update(compare_weights(self.initial, ref["weights"], got["weights"], self.cfg.model.lr))
        return out


def within(case: dict) -> bool:
    ok = all(v["rel_diff"] <= TOL["loss" if k.endswith("loss") else "grad_norm"]
             for k, v in case.items() if isinstance(v, dict))
    return ok and case["grads_max_rel_diff"] <= TOL["grads"] and case["weights_max_rel_diff"] <= TOL["weights"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=64, help="global prompts per step (split over the ranks)")
    ap.add_argument("--device", default="cpu", help="cpu, or auto/cuda for each rank's GPU (NCCL)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = resolve_device(args.device, int(os.environ.get("LOCAL_RANK", 0)))
    init_process_group("auto", device, world, rank, timeout_s=300)
    dist = Dist(rank=rank, world=world, device=device, sharded=True, mesh=make_mesh(device, world, 0))
    cases = {name: Case(name, args) for name in CASES}
    # The one-process references are independent: rank i % world computes case i's.
    mine = {name: c.reference(device) for i, (name, c) in enumerate(cases.items()) if i % world == rank}
    got = {name: c.sharded(dist) for name, c in cases.items()}
    refs = {k: v for part in dist.gather(mine) for k, v in part.items()}
    results = {name: c.compare(refs[name], got[name]) for name, c in cases.items()} if rank == 0 else {}
    tdist.destroy_process_group()
    if rank != 0:
        return 0
    ok = all(within(c) for c in results.values())
    print(json.dumps({"world": world, "prompts": args.prompts, "device": str(device), "tolerance": TOL,
                      "cases": results, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
