#!/usr/bin/env python
"""Our GRPO step against TRL's ``GRPOTrainer`` on the same model, prompts and settings.

Both sides: the embedded policy (or, when it is absent, the random tiny model of
``tests/conftest.make_tiny_models``; the output says which), 8 prompts x 8
samples per optimizer step, 40 new tokens at temperature 1, the same learning
rate and optimizer settings, no KL term (beta = 0), CPU float32, 2 torch threads,
rewards from :func:`sppo_runner.verifier.grade_batch`. Both draw from the same
``SyntheticTask(seed=0, difficulty=2).train(n)`` problems (each in its own order).
A step is timed from its start to the end of its optimizer update (generation,
reward, loss, backward, optimizer) after a few warm-up steps.

Run from the repository root (needs the ``bench`` extra: ``pip install trl``)::

    .venv/bin/python scripts/bench_vs_trl.py [--warmup 2] [--steps 5]

The last line of output is one JSON object. Without trl it prints
``{"skipped": "..."}`` and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROMPTS, SAMPLES, NEW_TOKENS, TEMPERATURE, THREADS = 8, 8, 40, 1.0, 2


def policy_source(tmp: Path) -> tuple[str, str]:
    """(policy folder, which model it is): the embedded policy when shipped, else a random tiny one."""
    try:
        from sppo_runner import assets

        return str(assets.path("policy")), "embedded"
    except (FileNotFoundError, ImportError):
        sys.path.insert(0, str(REPO / "tests"))
        from conftest import make_tiny_models

        policy, _ = make_tiny_models(tmp)
        return str(policy), "make_tiny_models (embedded policy not found)"


def compose(policy: str, n_problems: int):
    """The typed config of a GRPO run with the benchmark's settings (as ``sppo-run`` composes it)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from sppo_runner.cli import CONF_DIR, _register
    from sppo_runner.config import to_object
    from sppo_runner.rollout import BACKENDS

    backend = "native" if "native" in BACKENDS else "hf"
    overrides = [
        "algorithm=grpo", f"model.path={policy}", f"data.prompts_per_step={PROMPTS}",
        f"algorithm.samples_per_prompt={SAMPLES}", f"rollout.max_new_tokens={NEW_TOKENS}",
        f"rollout.temperature={TEMPERATURE}", f"rollout.backend={backend}", f"data.train_size={n_problems}",
        f"trainer.threads={THREADS}", "trainer.device=cpu", "model.dtype=float32", "algorithm.kl_coef=0",
        "algorithm.kl_in_reward_coef=0", "algorithm.entropy_coef=0", "algorithm.ppo_epochs=1",
        "algorithm.mini_batches=1", "eval.n_problems=1", "logger.wandb.mode=disabled", "logger.progress=false",
    ]
    _register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return to_object(hydra_compose("config", overrides=overrides))


def bench_ours(cfg, warmup: int, steps: int, run_dir: Path, profile: bool = False) -> dict:
    """Times ``train_step`` of a Session built as ``sppo_runner.run`` builds it.

    With ``profile``, the timed steps run under cProfile and the top functions go to stderr
    (the profiler's overhead inflates those step times: profile and measure in separate runs).
    """
    import cProfile
    import pstats

    import torch

    from sppo_runner.run import train_step
    from sppo_runner.session import build_session

    s = build_session(cfg, run_dir)
    torch.set_num_threads(THREADS)
    times, rollout, tokens = [], [], []
    prof = cProfile.Profile()
    try:
        for i in range(warmup + steps):
            if profile and i == warmup:
                prof.enable()
            t0 = time.perf_counter()
            m = train_step(s)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
                rollout.append(m["perf/rollout_seconds"])
                tokens.append(m["rollout/response_len_mean"] * PROMPTS * SAMPLES)
    finally:
        prof.disable()
        s.close()
    if profile:
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    return {"times": times, "generate": rollout, "tokens": tokens, "backend": cfg.rollout.backend,
            "prompts": {p.prompt for p in s.train.problems}}


def _step_timer():
    """A TrainerCallback timing each optimizer step (GRPO generates inside the step, so generation counts)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self._t0 = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self._t0)

    return StepTimer()


def _timed_generate(model, sink: list[float]):
    """Wraps ``model.generate`` to record its wall time (TRL calls it on the unwrapped model)."""
    inner = model.generate

    def generate(*args, **kwargs):
        t0 = time.perf_counter()
        out = inner(*args, **kwargs)
        sink.append(time.perf_counter() - t0)
        return out

    model.generate = generate


def trl_config(cfg, steps: int, out: Path):
    """GRPOConfig matching our run: one optimizer step = 8 prompts x 8 completions, no KL, CPU float32."""
    from trl import GRPOConfig

    m = cfg.model
    return GRPOConfig(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=PROMPTS * SAMPLES,
        gradient_accumulation_steps=1, num_generations=SAMPLES, max_completion_length=NEW_TOKENS,
        temperature=TEMPERATURE, top_p=1.0, top_k=0, beta=0.0, num_iterations=1,
        epsilon=cfg.algorithm.clip_ratio_low, epsilon_high=cfg.algorithm.clip_ratio_high,
        loss_type="dapo", scale_rewards="group",  # = our token-mean loss over the batch and std-normalized groups
        learning_rate=m.lr, weight_decay=m.weight_decay, adam_beta1=m.betas[0], adam_beta2=m.betas[1],
        max_grad_norm=m.grad_clip, lr_scheduler_type="constant", warmup_steps=0,
        use_vllm=False, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        report_to="none", logging_strategy="no", save_strategy="no", disable_tqdm=True,
        log_completions=False, dataloader_num_workers=0, seed=cfg.seed,
    )


def bench_trl(cfg, policy: str, n_problems: int, warmup: int, steps: int, out: Path) -> dict:
    """Times ``GRPOTrainer`` steps with a callback; rewards come from our verifier."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOTrainer

    from sppo_runner.data.synthetic import SyntheticTask
    from sppo_runner.models import load_tokenizer
    from sppo_runner.verifier import grade_batch

    problems = SyntheticTask(seed=cfg.data.seed, difficulty=cfg.data.difficulty).train(n_problems)
    data = Dataset.from_list([{"prompt": p.prompt, "answer": p.answer} for p in problems])
    v, tokens = cfg.verifier, []

    def reward(completions, answer, completion_ids=None, **kwargs):
        tokens.append(sum(len(ids) for ids in completion_ids or []))
        verdicts = grade_batch(completions, answer, extractors=tuple(v.extractors), timeout_s=v.timeout_s,
                               workers=v.workers or None)
        return [x.reward for x in verdicts]

    torch.use_deterministic_algorithms(False)  # ours set it process-wide; TRL runs with torch's default
    torch.set_num_threads(THREADS)
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32)
    gen_times: list[float] = []
    _timed_generate(model, gen_times)
    timer = _step_timer()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=trl_config(cfg, warmup + steps, out),
                          train_dataset=data, processing_class=load_tokenizer(policy), callbacks=[timer])
    trainer.train()
    n = len(timer.times)
    return {"times": timer.times[warmup:], "generate": gen_times[warmup:] if len(gen_times) == n else [],
            "tokens": tokens[warmup:] if len(tokens) == n else [], "prompts": {p.prompt for p in problems}}


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def report(ours: dict, trl: dict, model: str, extra: dict) -> dict:
    """The result line: throughput, seconds per step and their ratio, with per-step timings and versions."""
    import accelerate
    import torch
    import transformers
    import trl as trl_pkg

    out = {"model": model, "ours_backend": ours["backend"], **extra}
    for name, r in (("ours", ours), ("trl", trl)):
        s = _mean(r["times"])
        out[f"{name}_s_per_step"] = s
        out[f"{name}_completions_per_s"] = PROMPTS * SAMPLES / s
        out[f"{name}_tokens_per_s"] = sum(r["tokens"]) / sum(r["times"]) if r["tokens"] else None
        out[f"{name}_generate_s_per_step"] = _mean(r["generate"])
        out[f"{name}_step_times"] = [round(t, 4) for t in r["times"]]
    out["ratio"] = out["ours_completions_per_s"] / out["trl_completions_per_s"]
    out["same_prompts"] = ours["prompts"] == trl["prompts"]
    out["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                       "transformers": transformers.__version__, "trl": trl_pkg.__version__,
                       "accelerate": accelerate.__version__}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side")
    p.add_argument("--steps", type=int, default=5, help="timed steps per side")
    p.add_argument("--profile", action="store_true", help="cProfile our timed steps (inflates their times)")
    args = p.parse_args(argv)
    try:
        import trl  # noqa: F401
    except ImportError as err:
        print("trl is not installed (pip install -e '.[bench]'); skipping the TRL comparison", file=sys.stderr)
        print(json.dumps({"skipped": f"trl not installed ({err})"}))
        return 0
    import torch

    torch.set_num_threads(THREADS)
    n_problems = PROMPTS * (args.warmup + args.steps)  # one epoch: both sides see exactly these problems
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_vs_trl_") as tmp:
        policy, model = policy_source(Path(tmp))
        cfg = compose(policy, n_problems)
        print(f"model: {model} ({policy}); ours: rollout.backend={cfg.rollout.backend}", file=sys.stderr)
        ours = bench_ours(cfg, args.warmup, args.steps, Path(tmp) / "ours", args.profile)
        trl_res = bench_trl(cfg, policy, n_problems, args.warmup, args.steps, Path(tmp) / "trl")
    extra = {"threads": THREADS, "prompts_per_step": PROMPTS, "samples_per_prompt": SAMPLES,
             "max_new_tokens": NEW_TOKENS, "learning_rate": cfg.model.lr, "warmup_steps": args.warmup,
             "measured_steps": args.steps, "profiled": args.profile, "loadavg_1m_before_after": [round(load_before[0], 2),
                                                                        round(os.getloadavg()[0], 2)]}
    print(json.dumps(report(ours, trl_res, model, extra)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
