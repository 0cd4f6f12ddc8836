"""Rollout throughput: the ``native`` engine against ``hf`` (``model.generate``) and ``vllm``.

Fairness: both backends get the same model, prompts (the synthetic demo task),
batch and ``max_new_tokens``, sample at temperature 1 with ``ignore_eos`` (EOS
masked out of sampling in both, via ``min_new_tokens`` for ``generate``), so
every row generates exactly ``max_new_tokens`` tokens (asserted), and run under
the same torch thread count; within each timing round the two alternate, and the
best round of each counts. On CPU ``generate`` spends the threads on intra-op
(OpenMP) parallelism, while the native engine splits the batch into that many
chunks decoded concurrently by worker processes of one thread each (its
default; ``--parallel threads`` runs them as threads of this process).

The floors are the bare model forward passes (one prefill plus
``max_new_tokens - 1`` one-token steps with a KV cache, no sampling): through
transformers' forward in one stream (``hf_forward``) and through the native
engine's own decoder, chunks and workers (``fused_forward``).
The gap between ``native`` and ``fused_forward`` is the sampler's own overhead.

On a shared machine the figures swing with the other processes' load (a 1-min
load average is recorded): OpenMP threads stall whenever a core is taken, so
``generate`` can drop by 10-50x under load while the native engine does not.
Run it two or three times; ``--threads 1`` gives the per-core comparison.

Where vLLM is importable (``.venv-vllm``, ``make vllm-venv``), a ``vllm`` row joins the
same rounds (vLLM's engine in this process, ``ignore_eos`` as ``min_tokens``, one seeded
request per row) and the weight sync the training loop does after every update is timed
(best and median of ``--sync-repeats`` syncs of the whole policy). ``--large`` builds a random
~50M-parameter Qwen2 with head size 64 locally (nothing downloaded), where vLLM's per-step
overhead weighs less than on the 1M embedded policy.

Usage::

    python scripts/bench_rollout.py                       # embedded policy, CPU float32
    python scripts/bench_rollout.py --random-model        # tiny random Qwen2
    python scripts/bench_rollout.py --large               # random 50M Qwen2, head size 64
    .venv-vllm/bin/python scripts/bench_rollout.py        # ... with the vllm row
    python scripts/bench_rollout.py --device cuda --dtype bfloat16

The last line printed is one JSON object (``ratio_at_demo_batch``, ``ratio_at_256``,
tokens/s per backend and batch, ``vllm_ratio_at_<batch>`` (vllm / native),
``vllm_weight_sync_ms``, device).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import string
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sppo_runner.rollout import SamplingParams, make_engine
from sppo_runner.rollout.common import left_pad
from sppo_runner.rollout.decoders import fused_unsupported
from sppo_runner.rollout.hf_decoder import HFDecoder
from sppo_runner.rollout.vllm_engine import live_weights, vllm_available

DEMO_BATCH = 64


def load_model(args):
    """The embedded policy (or a tiny random Qwen2) and its tokenizer."""
    dtype = getattr(torch, args.dtype)
    policy = ROOT / "src" / "sppo_runner" / "assets" / "policy"
    if args.large:
        from sppo_runner.rollout.tiny import tiny_causal_lm, tiny_tokenizer

        # ~50M parameters, head size 64 (768 / 12), grouped-query attention like Qwen2.5.
        model = tiny_causal_lm("qwen2", hidden=768, layers=8, heads=12, kv_heads=4, intermediate=2048, seed=0)
        model, tokenizer, name = model.to(dtype), tiny_tokenizer(), "random-qwen2-50m"
    elif not args.random_model and (policy / "config.json").is_file():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(policy, dtype=dtype)
        tokenizer, name = AutoTokenizer.from_pretrained(policy), "embedded-policy"
    else:
        from sppo_runner.rollout.tiny import tiny_causal_lm, tiny_tokenizer

        model, tokenizer, name = (
            tiny_causal_lm("qwen2", seed=0).to(dtype),
            tiny_tokenizer(),
            "random-qwen2-tiny",
        )
    with torch.no_grad():
        # Fresh (64-byte aligned) weight memory: tensors mapped from the safetensors
        # file can sit misaligned, which slows MKL's matmuls (~20% for generate at
        # batch 256 here). The native engine moves weights to shared memory, which
        # realigns them, so without this the first round would handicap ``hf``.
        for p in model.parameters():
            p.data = p.data.clone()
    return model.to(args.device).eval(), tokenizer, name


def make_prompts(tokenizer, n: int, seed: int) -> list[list[int]]:
    """Synthetic arithmetic prompts (the demo task), or random text when unavailable."""
    try:
        from sppo_runner.data.synthetic import SyntheticTask

        texts = [p.prompt for p in SyntheticTask(seed=seed).train(n)]
    except (ImportError, AttributeError, TypeError):  # the data module is optional here
        rng = random.Random(seed)
        texts = [
            "".join(rng.choices(string.ascii_letters + " +-*=", k=rng.randint(20, 70)))
            + "\n"
            for _ in range(n)
        ]
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_engines(
    engines: dict, model, prompts, params, device, repeats
) -> dict[str, float]:
    """Best wall time (seconds) of each engine over ``repeats`` rounds.

    The engines alternate within each round, so a burst of load from other
    processes on a shared machine hits both rather than one.
    """
    best = {name: float("inf") for name in engines}
    for r in range(repeats):
        for name, engine in engines.items():
            sync(device)
            start = time.perf_counter()
            batch = engine.generate(
                model, prompts, params, torch.Generator().manual_seed(r)
            )
            sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
            assert batch.n_tokens == len(prompts) * params.max_new_tokens, (
                "rows stopped early: unfair comparison"
            )
    return best


def time_weight_sync(engine, model, repeats: int) -> dict:
    """Best and median time of the sync the training loop does after every update (ms)."""
    times = []
    for _ in range(repeats):
        with torch.no_grad():  # an in-place update, as an optimizer step makes
            next(model.parameters()).mul_(1.0)
        times.append(engine.sync_weights(model) * 1e3)
    times.sort()
    size = sum(t.numel() * t.element_size() for _, t in live_weights(model)) / 2**20
    return {"vllm_weight_sync_ms": round(times[0], 2), "vllm_weight_sync_ms_median": round(times[len(times) // 2], 2),
            "weight_mb": round(size, 1)}


def _forward_passes(decoder_cls, model, ids, mask, max_new) -> None:
    with torch.inference_mode():
        decoder = decoder_cls(model)
        logits = decoder.prefill(ids, mask, max_new)
        token = torch.full((ids.shape[0],), 3, dtype=torch.long, device=logits.device)
        for _ in range(max_new - 1):
            decoder.step(token)


def time_best(fn, device, repeats) -> float:
    """Best wall time of ``fn()`` over ``repeats`` calls (seconds)."""
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def time_floors(engine, model, prompts, pad_id, max_new, device, repeats) -> dict:
    """Best wall times of the bare forward passes (one prefill plus ``max_new - 1``
    one-token steps, fixed input token, no sampling), in seconds.

    ``hf_forward``: transformers' forward with its cache, one stream.
    ``fused_forward``: the native engine's own forward passes, split into the
    same chunks and workers as its ``generate``.
    """
    ids, mask = (t.to(device) for t in left_pad(prompts, 1, pad_id))
    floors = {
        "hf_forward": time_best(
            lambda: _forward_passes(HFDecoder, model, ids, mask, max_new), device, repeats
        )
    }
    if fused_unsupported(model, ids.shape[1] + max_new) is None:
        floors["fused_forward"] = time_best(
            lambda: engine.bare_forward(model, prompts, max_new), device, repeats
        )
    return floors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--random-model",
        action="store_true",
        help="tiny random Qwen2 instead of the embedded policy",
    )
    ap.add_argument(
        "--large", action="store_true",
        help="random ~50M-parameter Qwen2 with head size 64, built locally",
    )
    ap.add_argument("--no-vllm", action="store_true", help="leave vLLM out even when importable")
    ap.add_argument("--sync-repeats", type=int, default=5, help="timed vLLM weight syncs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16", "float16"]
    )
    ap.add_argument(
        "--batch-sizes", default="64,256", help="comma-separated rows per call"
    )
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument(
        "--repeats", type=int, default=2, help="timed calls per point; the best counts"
    )
    ap.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch default)"
    )
    ap.add_argument(
        "--no-floor", action="store_true", help="skip the bare-forward floors"
    )
    ap.add_argument(
        "--parallel", default="processes", choices=["processes", "threads"],
        help="how the native engine runs its CPU chunks",
    )
    ap.add_argument(
        "--compile", action="store_true",
        help="torch.compile the native decode step (CUDA only; measures NativeEngine(compile=True))",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]  # the machine may be shared: record how busy it was
    model, tokenizer, name = load_model(args)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    prompts = make_prompts(tokenizer, max(sizes), args.seed)
    params = SamplingParams(
        n=1, temperature=1.0, max_new_tokens=args.max_new_tokens, ignore_eos=True
    )
    engines = {
        "hf": make_engine("hf", tokenizer),
        "native": make_engine(
            "native", tokenizer, parallel=args.parallel, compile=args.compile
        ),
    }
    if vllm_available() and not args.no_vllm:
        engines["vllm"] = make_engine("vllm", tokenizer)
    # Warm-up: first calls pay for lazy initialization in every backend (vLLM starts here).
    for engine in engines.values():
        engine.generate(
            model,
            prompts[:8],
            SamplingParams(max_new_tokens=4, ignore_eos=True),
            torch.Generator(),
        )
    result = {
        "model": name,
        "device": f"{args.device} ({platform.processor() or platform.machine()})",
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "max_new_tokens": args.max_new_tokens,
        "parallel": args.parallel,
        "compile": args.compile,
    }
    print(
        f"model={name} device={args.device} dtype={args.dtype} threads={torch.get_num_threads()} "
        f"max_new_tokens={args.max_new_tokens} prompt_tokens(mean)={sum(map(len, prompts)) / len(prompts):.1f}"
    )
    pad_id = (
        tokenizer.pad_token_id
        if tokenizer.pad_token_id is not None
        else tokenizer.eos_token_id
    )
    for size in sizes:
        batch = prompts[:size]
        n_tokens = size * args.max_new_tokens
        times = time_engines(engines, model, batch, params, args.device, args.repeats)
        tps = {k: n_tokens / t for k, t in times.items()}
        line = f"batch {size:4d}: hf {tps['hf']:9.0f} tok/s  native {tps['native']:9.0f} tok/s  ratio {tps['native'] / tps['hf']:.2f}"
        if "vllm" in tps:
            line += f"  vllm {tps['vllm']:9.0f} tok/s (vllm/native {tps['vllm'] / tps['native']:.2f})"
            result[f"vllm_ratio_at_{size}"] = round(tps["vllm"] / tps["native"], 3)
        if not args.no_floor:
            floors = time_floors(
                engines["native"], model, batch, pad_id, args.max_new_tokens, args.device, args.repeats
            )
            for key, sec in floors.items():
                tps[key] = n_tokens / sec
            line += "  | floors: " + "  ".join(f"{k} {tps[k]:.0f} tok/s" for k in floors)
        print(line, flush=True)
        result[f"tokens_per_s_at_{size}"] = {k: round(v, 1) for k, v in tps.items()}
        result[f"ratio_at_{size}"] = round(tps["native"] / tps["hf"], 3)
    if DEMO_BATCH in sizes:
        result["ratio_at_demo_batch"] = result[f"ratio_at_{DEMO_BATCH}"]
    if "vllm" in engines:
        result.update(time_weight_sync(engines["vllm"], model, args.sync_repeats))
        print(f"vllm weight sync: best {result['vllm_weight_sync_ms']:.1f} ms, median "
              f"{result['vllm_weight_sync_ms_median']:.1f} ms for {result['weight_mb']:.1f} MB", flush=True)
        engines["vllm"].close()
    result["loadavg_1min_start_end"] = [
        round(load_start, 2),
        round(os.getloadavg()[0], 2),
    ]
    engines["native"].close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
