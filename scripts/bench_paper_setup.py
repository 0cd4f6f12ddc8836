"""GPU check of the paper setup's code path, scaled down: real data, paper presets, random weights.

Nothing is downloaded: the policy and critic are random Qwen2 models built here with the
char tokenizer. What it checks on one GPU, per parameter dtype (float32, bfloat16):

* ``experiment=paper_7b/sppo`` (shrunk: fewer prompts, shorter sequences) builds a session on
  DAPO-17k rows, runs one training step with gradient checkpointing and micro-batches, and
  reports the share of policy weights the lr-1e-6 AdamW step actually changed;
* the in-training validation (MATH-500 held out + AIME24 benchmark) runs and writes its table;
* ``sppo-eval``'s function on the ``eval=paper`` suite (k=16, temperature 0.6) on every file.

Usage::

    python scripts/bench_paper_setup.py --data-dir ../shared/data --out /tmp/bench

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def make_models(root: Path, hidden: int, layers: int) -> tuple[Path, Path]:
    """A random Qwen2 policy (``hidden`` x ``layers``) and a half-size critic, saved with the char tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2ForTokenClassification

    from sppo_runner.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer(model_max_length=4096)
    torch.manual_seed(0)
    common = {"vocab_size": len(tok), "max_position_embeddings": 4096, "pad_token_id": tok.pad_token_id,
              "eos_token_id": tok.eos_token_id, "bos_token_id": None}
    policy = Qwen2ForCausalLM(Qwen2Config(hidden_size=hidden, intermediate_size=int(2.75 * hidden),
                                          num_hidden_layers=layers, num_attention_heads=hidden // 64,
                                          num_key_value_heads=max(1, hidden // 256), **common))
    critic = Qwen2ForTokenClassification(Qwen2Config(hidden_size=hidden // 2, intermediate_size=int(1.375 * hidden),
                                                     num_hidden_layers=layers // 2, num_attention_heads=hidden // 128,
                                                     num_key_value_heads=1, num_labels=1, **common))
    paths = root / "policy", root / "critic"
    for model, path in zip((policy, critic), paths):
        model.save_pretrained(path)
        tok.save_pretrained(path)
    return paths


def compose(name: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from sppo_runner.cli import CONF_DIR, _register
    from sppo_runner.config import to_object

    _register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = hydra_compose(name, overrides=overrides)
    return to_object(cfg)


def train_check(dtype: str, mixed: str, common: list[str], out: Path) -> dict:
    """One shrunk paper_7b/sppo step + validation; reports timing, memory and weights changed.

    ``mixed`` is ``trainer.mixed_precision``: ``bf16`` with float32 parameters is the presets' mode.
    """
    from sppo_runner.run import run_eval, train_step
    from sppo_runner.session import build_session

    cfg = compose("config", ["experiment=paper_7b/sppo", *common, f"model.dtype={dtype}", f"critic.dtype={dtype}",
                             f"trainer.mixed_precision={mixed}",
                             "data.max_rows=2048", "data.prompts_per_step=64", "algorithm.mini_batches=2",
                             "model.micro_batch_size=8", "critic.micro_batch_size=16", "eval.n_problems=32",
                             "eval.max_problems=32"])
    name = f"run_{dtype}_{mixed}"
    s = build_session(cfg, out / name)
    try:
        before = [p.detach().clone() for p in s.policy.parameters()]
        cuda = s.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        m = train_step(s)
        if cuda:
            torch.cuda.synchronize()
        step_s = time.perf_counter() - t0
        changed = sum((p != b).sum().item() for p, b in zip(s.policy.parameters(), before))
        total = sum(b.numel() for b in before)
        t1 = time.perf_counter()
        ev = run_eval(s)
        eval_s = time.perf_counter() - t1
    finally:
        s.close()
    table = (out / name / "eval" / "step000001.md").read_text()
    print(f"[{dtype}, mixed {mixed}] validation table:\n{table}", flush=True)
    return {"dtype": dtype, "mixed_precision": mixed, "step_s": round(step_s, 2), "eval_s": round(eval_s, 2),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
            "n_params": s.history["n_params"],
            "weights_changed_frac": round(changed / total, 4), "n_train": len(s.train.problems),
            "grad_norm": m.get("actor/grad_norm"), "critic_loss": m.get("critic/loss"),
            "response_len": m.get("rollout/response_len_mean"), "eval_mean@k": ev["eval/mean@k"],
            "eval_aime24_n": ev.get("eval/aime24/n_problems")}


def adamw_check(policy_path: Path, dtype: str) -> dict:
    """Share of weights one AdamW step at the paper's lr (1e-6, wd 0.1) changes, parameters in ``dtype``."""
    from transformers import AutoModelForCausalLM

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(policy_path, dtype=getattr(torch, dtype)).to(dev)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.1)
    ids = torch.randint(3, 100, (8, 512), device=dev)
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    changed = sum((p != b).sum().item() for p, b in zip(model.parameters(), before))
    return {"weights_changed_frac": round(changed / sum(b.numel() for b in before), 4)}


def eval_check(common: list[str], out: Path) -> dict:
    """``sppo-eval`` (its importable function) on the paper suite, k=16, temperature 0.6."""
    from sppo_runner.evaluation_cli import evaluate_policy

    cfg = compose("eval_config", ["eval=paper", *common, "model.dtype=bfloat16", "eval.max_problems=8",
                                  "eval.batch_size=512"])
    t0 = time.perf_counter()
    res = evaluate_policy(cfg, out / "eval")
    return {"eval_suite_s": round(time.perf_counter() - t0, 2),
            "rows": {r["benchmark"]: [r["n"], r["mean@k"], r["status"]] for r in res["rows"]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--out", default="outputs/bench_paper_setup")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    args = ap.parse_args()
    out = Path(args.out)
    policy, critic = make_models(out / "models", args.hidden, args.layers)
    from sppo_runner.rollout import BACKENDS

    backend = "native" if "native" in BACKENDS else "hf"
    common = [f"model.path={policy}", f"critic.path={critic}", f"data.data_dir={args.data_dir}",
              "data.max_prompt_tokens=256", "data.long_prompts=truncate", f"rollout.max_new_tokens={args.max_new_tokens}",
              f"rollout.backend={backend}", "rollout.micro_batch_size=0", "logger.wandb.mode=disabled",
              "logger.progress=false", "verifier.workers=4"]
    cuda = torch.cuda.is_available()
    common.append(f"trainer.device={'cuda' if cuda else 'cpu'}")
    result = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "backend": backend}
    result["train"] = []
    for dtype, mixed in (("float32", "bf16"), ("float32", "none"), ("bfloat16", "none")):
        try:
            result["train"].append(train_check(dtype, mixed, common, out))
        except Exception as err:  # noqa: BLE001 - report and go on to the other checks
            result["train"].append({"dtype": dtype, "mixed_precision": mixed,
                                    "error": f"{type(err).__name__}: {str(err)[:300]}"})
    for dtype in ("float32", "bfloat16"):
        result["adamw_" + dtype] = adamw_check(policy, dtype)
    result["eval"] = eval_check(common, out)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
