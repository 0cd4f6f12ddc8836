#!/usr/bin/env python
"""Builds the embedded starter policy and critic shipped in ``sppo_runner/assets``.

Policy: a tiny stock ``Qwen2ForCausalLM`` over the char-level tokenizer,
warm-started by supervised fine-tuning on reference solutions of the synthetic
task (loss on solution tokens + EOS only).  Greedy held-out accuracy is
measured every ``--eval-every`` steps; training stops as soon as it enters the
band ``target +- tolerance``, deliberately leaving room for RL.  If one eval
interval jumps over the band, training rewinds to the last evaluation (model
and optimizer state) and retries with a 4x shorter interval; batches depend on
the step number only, so the rewind replays the exact same run.

Critic: its own, smaller ``Qwen2ForTokenClassification`` (one label).  Its
backbone is briefly pretrained as a causal LM on the same problem text, so it
starts with features of the prompts (numbers, operators, templates) rather
than random ones; its scalar head is zero-initialized with the bias set to
``logit(sampled accuracy of the policy)``, so at step 0 it predicts the
policy's average success for every prompt, and the sigmoid of its logit is a
calibrated baseline.  Classifier dropout is 0 so that values are deterministic
in train mode.

Run from the repository root (about 5-10 minutes on 2 CPU cores)::

    .venv/bin/python scripts/make_starter_policy.py

``--horizons`` builds the horizon benchmark's starters instead (one policy and
critic per level, in ``assets/horizon/``; see ``horizon_starters.py``). The shipped
kit takes two runs, the second continuing from the first's H=8 policy (``make
horizon-kit`` runs both; the Makefile lists their options).

Everything is CPU float32 with fixed seeds and a fixed thread count, so the
same machine reproduces the same weights.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # runnable without an editable install
    sys.path.insert(0, str(REPO / "src"))

import tokenizers  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    GenerationConfig,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2ForTokenClassification,
)

from sppo_runner.data.problem import Problem  # noqa: E402
from sppo_runner.data.synthetic import SyntheticTask  # noqa: E402
from sppo_runner.tokenizer import build_char_tokenizer, save_char_tokenizer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling sft_steps.py, also when imported
from sft_steps import batch_indices, collate, make_optimizer, rewind, train_step, tokenize_pairs  # noqa: E402

DEFAULT_OUT = REPO / "src" / "sppo_runner" / "assets"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", type=Path, default=None,
                    help=f"writes policy/ and critic/ here (default {DEFAULT_OUT}; with --horizons "
                         f"h<H>/policy and h<H>/critic under {DEFAULT_OUT / 'horizon'})")
    ap.add_argument("--horizons", default="",
                    help="comma list of chain lengths (2..32): build the horizon benchmark's starters instead")
    from horizon_starters import add_args  # the sibling script's --horizons options

    add_args(ap)
    ap.add_argument("--seed", type=int, default=0, help="model init, batches and sampling")
    ap.add_argument("--data-seed", type=int, default=0, help="SyntheticTask seed (train pool and held-out set)")
    ap.add_argument("--difficulty", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads: fixed for reproducibility; 1 is robust on a busy machine")
    # policy
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=512)
    ap.add_argument("--max-positions", type=int, default=256)
    # SFT
    ap.add_argument("--pool", type=int, default=50_000, help="train problems to draw batches from")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--max-steps", type=int, default=4000)
    ap.add_argument("--eval-every", type=int, default=40)
    ap.add_argument("--min-eval-every", type=int, default=2)
    ap.add_argument("--n-eval", type=int, default=256, help="held-out problems for the accuracy")
    ap.add_argument("--k-samples", type=int, default=4, help="samples per problem for mean@k at T=1")
    ap.add_argument("--target", type=float, default=0.40, help="greedy held-out accuracy to stop at")
    ap.add_argument("--tolerance", type=float, default=0.06, help="half-width of the stopping band")
    # critic
    ap.add_argument("--critic-hidden", type=int, default=64)
    ap.add_argument("--critic-layers", type=int, default=2)
    ap.add_argument("--critic-heads", type=int, default=4)
    ap.add_argument("--critic-kv-heads", type=int, default=2)
    ap.add_argument("--critic-intermediate", type=int, default=256)
    ap.add_argument("--critic-pretrain-steps", type=int, default=200, help="LM steps on the backbone; 0 = random")
    ap.add_argument("--critic-lr", type=float, default=3e-3)
    args = ap.parse_args(argv)
    if args.out_dir is None:
        args.out_dir = DEFAULT_OUT / "horizon" if args.horizons else DEFAULT_OUT
    return args


# --------------------------------------------------------------------------- #
# evaluation
# --------------------------------------------------------------------------- #
@torch.no_grad()
def generate(model, tok, prompts: list[str], max_new_tokens: int, sample: bool, k: int = 1) -> list[str]:
    """Left-padded batched decoding; greedy or pure sampling at T=1 (no top-k / top-p)."""
    model.eval()
    enc = tok(prompts, padding=True, add_special_tokens=False, return_tensors="pt")
    gen_kwargs = dict(
        max_new_tokens=max_new_tokens,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    if sample:
        gen_kwargs.update(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, num_return_sequences=k)
    else:
        gen_kwargs.update(do_sample=False)
    out = model.generate(**enc, **gen_kwargs)
    return tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def accuracy(model, tok, problems: list[Problem], max_new_tokens: int, sample: bool = False,
             k: int = 1) -> tuple[float, dict[str, float], list[str]]:
    """Mean reward (greedy, or mean@k of T=1 samples), per-kind accuracy and the responses."""
    from sppo_runner.verifier import grade

    texts = generate(model, tok, [p.prompt for p in problems], max_new_tokens, sample, k)
    rewards = [grade(texts[i], problems[i // k].answer).reward for i in range(len(texts))]
    by_kind: dict[str, list[float]] = {}
    for i, r in enumerate(rewards):
        by_kind.setdefault(problems[i // k].extra.get("kind", "?"), []).append(r)
    per_kind = {kk: round(sum(v) / len(v), 4) for kk, v in sorted(by_kind.items())}
    return sum(rewards) / len(rewards), per_kind, texts


# --------------------------------------------------------------------------- #
# training
# --------------------------------------------------------------------------- #
def warm_start_policy(args, tok, policy, pairs, heldout, max_new: int, log) -> dict:
    opt = make_optimizer(policy, args.lr, args.weight_decay)
    lo, hi = args.target - args.tolerance, args.target + args.tolerance
    eval_every = args.eval_every
    history: list[dict] = []
    snapshot = (0, copy.deepcopy(policy.state_dict()), copy.deepcopy(opt.state_dict()))
    step, losses, rewinds = 0, [], 0
    best = None  # (distance to target, step, acc, state) -- fallback if the band is never hit
    while step < args.max_steps:
        step += 1
        lr = args.lr * min(1.0, step / max(1, args.warmup))
        idx = batch_indices(args.seed, step, len(pairs), args.batch_size)
        losses.append(train_step(policy, opt, collate([pairs[i] for i in idx], tok.pad_token_id, False), lr))
        if step % eval_every and step != args.max_steps:
            continue
        acc, per_kind, _ = accuracy(policy, tok, heldout, max_new)
        loss = sum(losses) / len(losses)
        losses = []
        history.append({"step": step, "loss": round(loss, 4), "greedy_acc": round(acc, 4), **per_kind})
        log(f"step {step:5d}  loss {loss:.4f}  held-out greedy acc {acc:.3f}  {per_kind}")
        dist = abs(acc - args.target)
        if best is None or dist < best[0]:
            best = (dist, step, acc, copy.deepcopy(policy.state_dict()))
        if lo <= acc <= hi:
            return {"steps": step, "greedy_acc": acc, "history": history, "rewinds": rewinds}
        if acc > hi and eval_every > args.min_eval_every:
            # Jumped over the band: replay the last interval with denser evals.
            rewinds += 1
            step, eval_every = rewind(snapshot, policy, opt, eval_every, args.min_eval_every)
            log(f"  over the band ({acc:.3f} > {hi:.2f}): rewind to step {step}, eval every {eval_every}")
            continue
        if acc > hi:
            break  # over the band at the densest eval interval: keep the closest eval
        snapshot = (step, copy.deepcopy(policy.state_dict()), copy.deepcopy(opt.state_dict()))
    # Never inside the band: keep the evaluation closest to the target.
    _, step, acc, sd = best
    policy.load_state_dict(sd)
    log(f"band [{lo:.2f}, {hi:.2f}] never hit; keeping step {step} (acc {acc:.3f})")
    return {"steps": step, "greedy_acc": acc, "history": history, "rewinds": rewinds}


def qwen2_config(tok, max_positions: int, hidden: int, layers: int, heads: int, kv_heads: int,
                 intermediate: int, **extra) -> Qwen2Config:
    """The shape both embedded models share (tied embeddings, the char tokenizer's ids); ``extra`` adds fields."""
    return Qwen2Config(
        vocab_size=len(tok),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        **extra,
    )


def build_critic(args, tok, pairs, init_prob: float, log) -> tuple[Qwen2ForTokenClassification, dict]:
    cfg = qwen2_config(
        tok, args.max_positions, args.critic_hidden, args.critic_layers, args.critic_heads,
        args.critic_kv_heads, args.critic_intermediate, num_labels=1, classifier_dropout=0.0,
    )
    torch.manual_seed(args.seed + 1)
    info: dict = {"pretrain_steps": args.critic_pretrain_steps}
    critic = Qwen2ForTokenClassification(cfg)
    if args.critic_pretrain_steps > 0:
        lm = Qwen2ForCausalLM(cfg)
        opt = make_optimizer(lm, args.critic_lr, args.weight_decay)
        losses = []
        for step in range(1, args.critic_pretrain_steps + 1):
            lr = args.critic_lr * min(1.0, step / max(1, args.warmup))
            idx = batch_indices(args.seed + 7919, step, len(pairs), args.batch_size)
            batch = collate([pairs[i] for i in idx], tok.pad_token_id, loss_on_prompt=True)
            losses.append(train_step(lm, opt, batch, lr))
        info["pretrain_final_loss"] = round(sum(losses[-20:]) / len(losses[-20:]), 4)
        log(f"critic backbone LM pretraining: {args.critic_pretrain_steps} steps, loss {info['pretrain_final_loss']}")
        critic.model.load_state_dict(lm.model.state_dict())
    p = min(max(init_prob, 0.02), 0.98)
    with torch.no_grad():
        critic.score.weight.zero_()
        critic.score.bias.fill_(math.log(p / (1 - p)))
    info["head_init"] = f"weight 0, bias logit({p:.4f}) = {math.log(p / (1 - p)):.4f}"
    return critic, info


# --------------------------------------------------------------------------- #
def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "python": platform.python_version()}


def folder_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 3)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)

    if args.horizons:
        from horizon_starters import build_kit  # the sibling script

        return build_kit(args, argv, log)

    tok = build_char_tokenizer(model_max_length=args.max_positions)
    task = SyntheticTask(seed=args.data_seed, difficulty=args.difficulty)
    train = task.train(args.pool)
    heldout = task.heldout(args.n_eval)
    pairs = tokenize_pairs(tok, train)
    prompt_tokens = [len(p) for p, _ in pairs]
    sol_tokens = [len(s) for _, s in pairs]  # includes EOS
    max_new = max(sol_tokens) + 16
    log(f"{len(train)} train / {len(heldout)} held-out problems ({task.source}); "
        f"prompt tokens mean {sum(prompt_tokens) / len(pairs):.1f} max {max(prompt_tokens)}, "
        f"solution tokens (+eos) mean {sum(sol_tokens) / len(pairs):.1f} max {max(sol_tokens)}")

    pcfg = qwen2_config(
        tok, args.max_positions, args.hidden, args.layers, args.heads, args.kv_heads, args.intermediate
    )
    policy = Qwen2ForCausalLM(pcfg)
    policy.generation_config = GenerationConfig(
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
        max_new_tokens=max_new, do_sample=False,
    )
    n_policy = sum(p.numel() for p in policy.parameters())
    log(f"policy: Qwen2ForCausalLM, {n_policy:,} parameters")

    sft = warm_start_policy(args, tok, policy, pairs, heldout, max_new, log)
    t_sft = time.time() - t0

    greedy, greedy_kind, greedy_texts = accuracy(policy, tok, heldout, max_new)
    torch.manual_seed(args.seed + 12345)
    sampled, sampled_kind, _ = accuracy(policy, tok, heldout, max_new, sample=True, k=args.k_samples)
    log(f"final held-out: greedy {greedy:.3f} {greedy_kind}; "
        f"sampled mean@{args.k_samples} at T=1 {sampled:.3f} {sampled_kind}")

    critic, critic_info = build_critic(args, tok, pairs, sampled, log)
    n_critic = sum(p.numel() for p in critic.parameters())
    log(f"critic: Qwen2ForTokenClassification, {n_critic:,} parameters")

    pol_dir, cri_dir = args.out_dir / "policy", args.out_dir / "critic"
    for d in (pol_dir, cri_dir):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    policy.save_pretrained(pol_dir)
    save_char_tokenizer(tok, pol_dir)
    critic.save_pretrained(cri_dir)
    save_char_tokenizer(tok, cri_dir)

    card = {
        "what": "sppo-runner embedded starter policy (char-level Qwen2, SFT warm start on the synthetic task)",
        "command": "python " + " ".join(shlex.quote(a) for a in
                                        ["scripts/make_starter_policy.py", *(sys.argv[1:] if argv is None else argv)]),
        "seed": args.seed,
        "data_seed": args.data_seed,
        "task": task.source,
        "difficulty": args.difficulty,
        "steps": sft["steps"],
        "batch_size": args.batch_size,
        "lr": args.lr,
        "stop_band": [round(args.target - args.tolerance, 4), round(args.target + args.tolerance, 4)],
        "rewinds": sft["rewinds"],
        "wall_seconds_sft": round(t_sft, 1),
        "wall_seconds": None,  # filled below
        "threads": args.threads,
        "policy_params": n_policy,
        "critic_params": n_critic,
        "policy_config": {"hidden": args.hidden, "layers": args.layers, "heads": args.heads,
                          "kv_heads": args.kv_heads, "intermediate": args.intermediate,
                          "max_positions": args.max_positions, "vocab": len(tok)},
        "critic_config": {"hidden": args.critic_hidden, "layers": args.critic_layers,
                          "heads": args.critic_heads, "kv_heads": args.critic_kv_heads,
                          "intermediate": args.critic_intermediate, **critic_info},
        "n_heldout": len(heldout),
        "heldout_greedy_accuracy": round(greedy, 4),
        "heldout_greedy_accuracy_by_kind": greedy_kind,
        "heldout_sampled_temperature": 1.0,
        "heldout_sampled_k": args.k_samples,
        "heldout_sampled_mean_accuracy": round(sampled, 4),
        "heldout_sampled_accuracy_by_kind": sampled_kind,
        "max_new_tokens": max_new,
        "prompt_tokens_mean": round(sum(prompt_tokens) / len(pairs), 2),
        "prompt_tokens_max": max(prompt_tokens),
        "solution_tokens_mean_with_eos": round(sum(sol_tokens) / len(pairs), 2),
        "solution_tokens_max_with_eos": max(sol_tokens),
        "greedy_examples": [{"prompt": p.prompt, "response": r, "answer": p.answer}
                            for p, r in zip(heldout[:6], greedy_texts[:6])],
        "eval_history": sft["history"],
        "versions": versions(),
    }
    for f in (*pol_dir.iterdir(), *cri_dir.iterdir()):
        f.chmod(0o644)  # safetensors writes 0600; package data should be world-readable
    card["policy_mb"] = folder_mb(pol_dir)
    card["critic_mb"] = folder_mb(cri_dir)
    card["wall_seconds"] = round(time.time() - t0, 1)
    (pol_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (pol_dir / "card.json").chmod(0o644)
    log(f"wrote {pol_dir} ({card['policy_mb']} MB) and {cri_dir} ({card['critic_mb']} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
