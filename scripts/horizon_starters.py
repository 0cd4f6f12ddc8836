"""Starter policies for the horizon benchmark: ``make_starter_policy.py --horizons ...`` (``make horizon-kit``).

One policy per horizon level, snapshots of a supervised run. A policy cannot
start with room to rise at every horizon: if it gets a step right with
probability p, it solves H steps with about p**H, and p**2 <= 0.6 (room at H=2)
with p**32 >= 0.15 (a reward signal at H=32) would need p <= 0.77 and p >= 0.94
at once. So the run trains one char-level Qwen2 on chains of every length
2..32 (each batch one length, about ``--batch-tokens`` tokens, so a long chain
costs no more per step than a short one) and snapshots it for level H at the
first evaluation where its greedy held-out accuracy at H enters the band
``target +- tolerance``; short chains enter the band early, long ones late.
An evaluation that jumps over the band for a pending level rewinds to the last
evaluation and replays with a 4x shorter interval (batches depend on the step
only, so the replay is exact), as the embedded policy's builder does. Each level
is written as soon as it is found. The run starts from the embedded demo policy's
weights (``--init-policy``): the chain steps are the demo task's arithmetic, so
only the labels and the chaining are new.

A run can also continue from an earlier level's policy on a range of lengths
(``--train-horizons 8-32 --init-policy .../h8/policy``) with a cosine learning
rate (``--lr-schedule cosine``), which is how the shipped H=16 and H=32 levels
were made: the first run, at a constant 2e-3 over every length, had H=16 at only
11.7% greedy after 2,588 s, while continuing from its H=8 policy at 1e-3 (cosine
over 1,500 steps) over lengths 8-32 put H=16 at 36.3% after 200 steps and H=32 at
18.4% after 1,000. The new levels are merged into the kit's ``card.json``, whose
entry for each level names the command, starting policy and schedule that made it.

Every level gets the same shape as the embedded policy (1M parameters) with
1024 positions (rotary embeddings have no position table, so this costs no
parameters; the embedded policy's 256 would not hold a 32-step prompt and
answer, about 540 tokens), and its own critic: one backbone pretrained as a
causal LM on chain text of every length, with the head's bias set to the logit
of that level's sampled accuracy (as for the embedded critic). Weights are
stored as float16 (the runner loads them as float32): five levels fit in
about 11 MB. Accuracies in the cards are measured on the stored weights.
"""

from __future__ import annotations

import copy
import json
import math
import random
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

from sppo_runner.data.synthetic import SyntheticTask
from sppo_runner.rollout.base import SamplingParams
from sppo_runner.rollout.native import NativeEngine
from sppo_runner.tokenizer import build_char_tokenizer, save_char_tokenizer

import make_starter_policy as msp  # noqa: E402  (the sibling script: model shapes, evaluation)
import sft_steps as sft  # noqa: E402  (shared SFT steps)

MAX_POSITIONS = 1024
ALL_HORIZONS = tuple(range(2, 33))


def add_args(ap) -> None:
    """make_starter_policy.py's options that only ``--horizons`` uses."""
    ap.add_argument("--batch-tokens", type=int, default=4096, help="--horizons: tokens per SFT batch")
    ap.add_argument("--pool-per-horizon", type=int, default=2000, help="--horizons: train problems per length")
    ap.add_argument("--train-horizons", default="2-32",
                    help="--horizons: chain lengths the SFT batches draw from, 'LO-HI' (continuing a shorter "
                         "level's policy toward long chains: e.g. 8-32)")
    ap.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                    help="--horizons: after warm-up, constant or cosine decay to lr/10 at --max-steps")
    ap.add_argument("--init-policy", default="embedded",
                    help="--horizons: start from this policy folder's weights ('embedded': the demo policy, "
                         "which knows the same arithmetic; 'none': random)")


# --------------------------------------------------------------------------- #
# data
# --------------------------------------------------------------------------- #
def chain_pools(tok, data_seed: int, difficulty: int, pool: int, lengths=ALL_HORIZONS) -> dict[int, list]:
    """``{H: [(prompt ids, solution ids + EOS)]}`` for every training length in ``lengths``."""
    return {h: sft.tokenize_pairs(tok, SyntheticTask(data_seed, difficulty, h).train(pool)) for h in lengths}


def train_lengths(spec: str) -> tuple[int, ...]:
    """``--train-horizons 'LO-HI'`` as the lengths LO..HI (within 2..32)."""
    lo, _, hi = spec.partition("-")
    try:
        lengths = tuple(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        lengths = ()
    if not lengths or not set(lengths) <= set(ALL_HORIZONS):
        raise SystemExit(f"--train-horizons must be 'LO-HI' within 2-32, got {spec!r}")
    return lengths


def lr_at(args, step: int) -> float:
    """Linear warm-up, then constant or (``--lr-schedule cosine``) a cosine down to lr/10 at ``--max-steps``."""
    lr = args.lr * min(1.0, step / max(1, args.warmup))
    if args.lr_schedule == "cosine" and step > args.warmup:
        frac = min(1.0, (step - args.warmup) / max(1, args.max_steps - args.warmup))
        lr = args.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * frac)))
    return lr


def batch_for(seed: int, step: int, pools: dict[int, list], batch_tokens: int) -> tuple[int, list]:
    """The batch of ``step``: one chain length of ``pools``, about ``batch_tokens`` tokens; a function of (seed, step)."""
    rng = random.Random(seed * 1_000_003 + step)
    h = rng.choice(sorted(pools))
    pairs = pools[h]
    mean_len = sum(len(p) + len(s) for p, s in pairs[:256]) / min(256, len(pairs))
    bs = max(8, int(batch_tokens // mean_len))
    return h, [pairs[rng.randrange(len(pairs))] for _ in range(bs)]


# --------------------------------------------------------------------------- #
# evaluation (the runner's own rollout engine, so cards match what a run sees)
# --------------------------------------------------------------------------- #
@torch.no_grad()
def accuracy(engine, policy, tok, problems, max_new: int, k: int = 0, seed: int = 0) -> tuple[float, list[str]]:
    """Greedy accuracy (``k == 0``) or mean@k of T=1 samples, graded by the runner's verifier."""
    from sppo_runner.verifier import grade

    prompts = tok([p.prompt for p in problems], add_special_tokens=False)["input_ids"]
    params = SamplingParams(n=max(1, k), temperature=1.0 if k else 0.0, max_new_tokens=max_new)
    texts: list[str] = []
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, len(prompts), 128):
        texts += engine.generate(policy, prompts[i : i + 128], params, gen).texts
    n = max(1, k)
    rewards = [grade(t, problems[i // n].answer).reward for i, t in enumerate(texts)]
    return sum(rewards) / len(rewards), texts


# --------------------------------------------------------------------------- #
# the supervised run with per-level snapshots
# --------------------------------------------------------------------------- #
def _evaluate_pending(engine, policy, tok, heldout, pending, lo, log) -> dict[int, float]:
    """Greedy accuracy of each pending level, shortest first; stops below lo/2 (longer chains score lower)."""
    out, example = {}, ""
    for h in sorted(pending):
        problems, max_new = heldout[h]
        out[h], texts = accuracy(engine, policy, tok, problems, max_new)
        example = example or f"{problems[0].prompt!r} -> {texts[0]!r}"
        if out[h] < lo / 2:
            break
    log("  greedy held-out " + "  ".join(f"H={h}: {a:.3f}" for h, a in out.items()) + f"   e.g. {example}")
    return out


def train_levels(args, tok, policy, pools, heldout, engine, log, on_capture) -> None:
    """SFT until every level in ``heldout`` has a snapshot, handed to ``on_capture(H, snap)`` at once.

    ``snap`` holds ``state`` (the policy's weights), ``step``, ``acc`` (greedy) and ``rewinds``.
    """
    opt = sft.make_optimizer(policy, args.lr, args.weight_decay)
    lo, hi = args.target - args.tolerance, args.target + args.tolerance
    pending, best = set(heldout), {}
    eval_every, rewinds, step, losses = args.eval_every, 0, 0, []
    snapshot = (0, copy.deepcopy(policy.state_dict()), copy.deepcopy(opt.state_dict()))
    while pending and step < args.max_steps:
        step += 1
        _, pairs = batch_for(args.seed, step, pools, args.batch_tokens)
        losses.append(sft.train_step(policy, opt, sft.collate(pairs, tok.pad_token_id, False), lr_at(args, step)))
        if step % eval_every:
            continue
        log(f"step {step:5d}  loss {sum(losses) / len(losses):.4f}")
        losses = []
        accs = _evaluate_pending(engine, policy, tok, heldout, pending, lo, log)
        over = [h for h, a in accs.items() if a > hi]
        if over and eval_every > args.min_eval_every:
            rewinds += 1
            step, eval_every = sft.rewind(snapshot, policy, opt, eval_every, args.min_eval_every)
            log(f"  H={over} over the band: rewind to step {step}, eval every {eval_every}")
            continue
        for h, a in accs.items():
            if h not in best or abs(a - args.target) < abs(best[h]["acc"] - args.target):
                best[h] = {"state": copy.deepcopy(policy.state_dict()), "step": step, "acc": a}
            if lo <= a <= hi or a > hi:  # in the band, or over it at the densest interval: keep the closest
                pending.discard(h)
                log(f"  H={h}: snapshot of step {best[h]['step']} (greedy {best[h]['acc']:.3f})")
                on_capture(h, {**best[h], "rewinds": rewinds})
                eval_every = args.eval_every
        snapshot = (step, copy.deepcopy(policy.state_dict()), copy.deepcopy(opt.state_dict()))
    for h in sorted(pending):
        if h not in best:  # skipped by the early stop of every evaluation: measure it now
            acc, _ = accuracy(engine, policy, tok, *heldout[h])
            best[h] = {"state": copy.deepcopy(policy.state_dict()), "step": step, "acc": acc}
        log(f"H={h}: band [{lo:.2f}, {hi:.2f}] never hit; keeping step {best[h]['step']} ({best[h]['acc']:.3f})")
        on_capture(h, {**best[h], "rewinds": rewinds})


def build_critic_backbone(args, tok, pools, log):
    """A critic LM backbone pretrained on chain text of every length (prompt and solution)."""
    cfg = msp.qwen2_config(tok, MAX_POSITIONS, args.critic_hidden, args.critic_layers, args.critic_heads,
                           args.critic_kv_heads, args.critic_intermediate, num_labels=1, classifier_dropout=0.0)
    torch.manual_seed(args.seed + 1)
    lm = msp.Qwen2ForCausalLM(cfg)
    opt = sft.make_optimizer(lm, args.critic_lr, args.weight_decay)
    losses = []
    for step in range(1, args.critic_pretrain_steps + 1):
        lr = args.critic_lr * min(1.0, step / max(1, args.warmup))
        _, pairs = batch_for(args.seed + 7919, step, pools, args.batch_tokens)
        losses.append(sft.train_step(lm, opt, sft.collate(pairs, tok.pad_token_id, True), lr))
    tail = losses[-20:] or [float("nan")]
    log(f"critic backbone: {args.critic_pretrain_steps} LM steps, loss {sum(tail) / len(tail):.4f}")
    return cfg, lm.model.state_dict(), round(sum(tail) / len(tail), 4)


# --------------------------------------------------------------------------- #
# writing the kit
# --------------------------------------------------------------------------- #
def _save(model, tok, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model.save_pretrained(folder)
    save_char_tokenizer(tok, folder)
    for f in folder.iterdir():
        f.chmod(0o644)  # safetensors writes 0600; package data should be world-readable


def _lengths(problems, tok) -> dict[str, float]:
    p = [len(x) for x in tok([q.prompt for q in problems], add_special_tokens=False)["input_ids"]]
    s = [len(q.extra["solution"]) + 1 for q in problems]
    return {"prompt_tokens_mean": round(sum(p) / len(p), 2), "prompt_tokens_max": max(p),
            "solution_tokens_mean_with_eos": round(sum(s) / len(s), 2), "solution_tokens_max_with_eos": max(s)}


def write_level(args, h: int, snap: dict, tok, critic_cfg, critic_sd, critic_loss, heldout, engine,
                common: dict, log) -> dict:
    """Stores level ``h``'s policy and critic (float16) and its card; returns the card."""
    out = args.out_dir / f"h{h}"
    problems, max_new = heldout[h]
    pcfg = msp.qwen2_config(tok, MAX_POSITIONS, args.hidden, args.layers, args.heads, args.kv_heads,
                            args.intermediate)
    policy = msp.Qwen2ForCausalLM(pcfg)
    policy.load_state_dict(snap["state"])
    policy.half().float()  # measure exactly the weights that are stored
    greedy, texts = accuracy(engine, policy, tok, problems, max_new)
    sampled, _ = accuracy(engine, policy, tok, problems, max_new, k=args.k_samples, seed=args.seed + 12345)
    log(f"H={h}: stored weights: greedy {greedy:.3f}, sampled mean@{args.k_samples} at T=1 {sampled:.3f}")
    policy.generation_config = msp.GenerationConfig(
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
        max_new_tokens=max_new, do_sample=False)
    _save(policy.half(), tok, out / "policy")
    critic = msp.Qwen2ForTokenClassification(critic_cfg)
    critic.model.load_state_dict(critic_sd)
    p = min(max(sampled, 0.02), 0.98)
    with torch.no_grad():
        critic.score.weight.zero_()
        critic.score.bias.fill_(math.log(p / (1 - p)))
    _save(critic.half(), tok, out / "critic")
    card = {
        **common, "horizon": h, "task": f"synthetic/chain-h{h}-d{args.difficulty}", "sft_step": snap["step"],
        "rewinds_before_snapshot": snap["rewinds"], "greedy_accuracy_at_snapshot": round(snap["acc"], 4),
        "n_heldout": len(problems), "heldout_greedy_accuracy": round(greedy, 4),
        "heldout_sampled_temperature": 1.0, "heldout_sampled_k": args.k_samples,
        "heldout_sampled_mean_accuracy": round(sampled, 4), "max_new_tokens": max_new,
        **_lengths(problems, tok),
        "critic_head_init": f"weight 0, bias logit({p:.4f}) = {math.log(p / (1 - p)):.4f}",
        "critic_pretrain_final_loss": critic_loss,
        "greedy_examples": [{"prompt": q.prompt, "response": r, "answer": q.answer}
                            for q, r in zip(problems[:3], texts[:3])],
        "policy_mb": msp.folder_mb(out / "policy"), "critic_mb": msp.folder_mb(out / "critic"),
    }
    (out / "policy" / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "policy" / "card.json").chmod(0o644)
    return card


def init_policy(args, pcfg, log):
    """The policy to fine-tune: the embedded demo policy's weights (``--init-policy``) or random."""
    torch.manual_seed(args.seed)
    policy = msp.Qwen2ForCausalLM(pcfg)
    if args.init_policy != "none":
        src = Path(msp.DEFAULT_OUT / "policy" if args.init_policy == "embedded" else args.init_policy)
        donor = msp.Qwen2ForCausalLM.from_pretrained(src, dtype=torch.float32).state_dict()
        shapes = {k: tuple(v.shape) for k, v in policy.state_dict().items()}
        if {k: tuple(v.shape) for k, v in donor.items()} != shapes:
            raise SystemExit(f"--init-policy {src}: its shapes differ from --hidden/--layers/...; "
                             "pass --init-policy none for a random start")
        policy.load_state_dict(donor)
        log(f"policy initialized from {src} (positions {pcfg.max_position_embeddings}; rotary, no table)")
    return policy


def build_kit(args, argv, log) -> int:
    """The ``--horizons`` mode of make_starter_policy.py (see the module docstring)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-file "Writing model shards" bars
    t0 = time.time()
    levels = sorted({int(x) for x in args.horizons.split(",") if x.strip()})
    if not levels or not set(levels) <= set(ALL_HORIZONS):
        raise SystemExit(f"--horizons must list values in 2..32, got {args.horizons!r}")
    tok = build_char_tokenizer(model_max_length=MAX_POSITIONS)
    lengths = train_lengths(args.train_horizons)
    if not set(levels) <= set(lengths):
        raise SystemExit(f"--horizons {levels} must lie within --train-horizons {args.train_horizons}")
    pools = chain_pools(tok, args.data_seed, args.difficulty, args.pool_per_horizon, lengths)
    heldout = {}
    for h in levels:
        probs = SyntheticTask(args.data_seed, args.difficulty, h).heldout(args.n_eval)
        longest = max([len(s) for _, s in pools[h]] + [len(p.extra["solution"]) + 1 for p in probs])
        heldout[h] = (probs, longest + 24)
    log(f"levels {levels}; {args.pool_per_horizon} train problems per length {args.train_horizons}; "
        f"{args.n_eval} held-out per level; max new tokens {[heldout[h][1] for h in levels]}")
    critic_cfg, critic_sd, critic_loss = build_critic_backbone(args, tok, pools, log)
    engine = NativeEngine(tok, workers=1, parallel="threads")
    pcfg = msp.qwen2_config(tok, MAX_POSITIONS, args.hidden, args.layers, args.heads, args.kv_heads,
                            args.intermediate)
    policy = init_policy(args, pcfg, log)
    n_policy = sum(p.numel() for p in policy.parameters())
    log(f"policy: Qwen2ForCausalLM, {n_policy:,} parameters, {MAX_POSITIONS} positions")
    common = {
        "what": "sppo-runner horizon-benchmark starter (char-level Qwen2, one SFT run over chain lengths 2..32, "
                "snapshot per level)",
        "command": "python " + " ".join(shlex.quote(a) for a in ["scripts/make_starter_policy.py",
                                                                  *(sys.argv[1:] if argv is None else argv)]),
        "seed": args.seed, "data_seed": args.data_seed, "difficulty": args.difficulty, "levels": levels,
        "init_policy": args.init_policy, "train_horizons": args.train_horizons, "lr_schedule": args.lr_schedule,
        "max_steps": args.max_steps,
        "stop_band": [round(args.target - args.tolerance, 4), round(args.target + args.tolerance, 4)],
        "batch_tokens": args.batch_tokens, "lr": args.lr, "threads": args.threads,
        "policy_params": n_policy, "max_positions": MAX_POSITIONS, "stored_dtype": "float16",
        "policy_config": {"hidden": args.hidden, "layers": args.layers, "heads": args.heads,
                          "kv_heads": args.kv_heads, "intermediate": args.intermediate, "vocab": len(tok)},
        "critic_config": {"hidden": args.critic_hidden, "layers": args.critic_layers,
                          "pretrain_steps": args.critic_pretrain_steps},
        "versions": msp.versions(),
    }
    cards = {}

    def capture(h: int, snap: dict) -> None:  # write each level as soon as it is found
        level = {**common, "wall_seconds_at_snapshot": round(time.time() - t0, 1)}
        cards[h] = write_level(args, h, snap, tok, critic_cfg, critic_sd, critic_loss, heldout, engine, level, log)

    train_levels(args, tok, policy, pools, heldout, engine, log, capture)
    summary = merge_summary(args.out_dir / "card.json", common, cards, round(time.time() - t0, 1))
    (args.out_dir / "card.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"wrote {args.out_dir} ({msp.folder_mb(args.out_dir)} MB) in {time.time() - t0:.0f} s")
    return 0


SUMMARY_KEYS = ("sft_step", "heldout_greedy_accuracy", "heldout_sampled_mean_accuracy", "max_new_tokens",
                "solution_tokens_mean_with_eos", "prompt_tokens_max", "wall_seconds_at_snapshot")
RUN_KEYS = ("command", "init_policy", "train_horizons", "lr", "lr_schedule", "max_steps", "stop_band", "batch_tokens")
SHARED_KEYS = ("seed", "data_seed", "difficulty", "threads", "policy_params", "max_positions", "stored_dtype",
               "policy_config", "critic_config", "versions")


def merge_summary(path: Path, common: dict, cards: dict[int, dict], wall: float) -> dict:
    """The kit's ``card.json``: the levels built now over those an earlier run left there.

    Levels may come from different runs (a long level continued from a shorter one's policy),
    so each level's entry names the command, start and schedule that made it.
    """
    old = json.loads(path.read_text()) if path.is_file() else {}
    levels = {h: {**{k: old[k] for k in RUN_KEYS if k in old}, **v} for h, v in old.get("levels", {}).items()}
    levels.update({str(h): {k: cards[h][k] for k in (*SUMMARY_KEYS, *RUN_KEYS) if k in cards[h]} for h in cards})
    keep = {k: common[k] for k in SHARED_KEYS if k in common}
    summary = {**keep, "what": "sppo-runner horizon-benchmark starters (char-level Qwen2, snapshot per level; "
                               "each level's entry names the run that made it)",
               "last_run_wall_seconds": wall,
               "levels": {h: levels[h] for h in sorted(levels, key=int)}}
    missing = [h for h in (2, 4, 8, 16, 32) if str(h) not in summary["levels"]]
    if missing:
        summary["unfinished"] = f"levels {missing} not built"
    return summary
