"""The horizon benchmark: SPPO, token PPO and GRPO as only the response length grows.

At each horizon H (``data.horizon``: chains of H labelled one-operation steps, the
reference chain of thought about 11 H + 10 tokens) every algorithm starts from the
same starter policy and critic (``assets/horizon/h<H>``, greedy accuracy 17-43%)
and trains with

* **equal generated tokens**: ``trainer.max_tokens = --samples x`` the mean
  reference response length at H, and separately
* **equal wall clock**: ``trainer.max_seconds`` = the mean training seconds SPPO
  needed for that token budget at H in the same benchmark (``--seconds`` fixes it),

with the same number of samples per update for every algorithm (``--samples-per-step``;
GRPO's 8 samples per prompt come from 8x fewer prompts), so at equal tokens all
take the same number of optimizer steps on the same number of samples and differ
only in how they assign credit. ``--same-prompts`` gives every algorithm the same
prompts per step instead (the paper's layout: GRPO then generates 8x the samples).

Reported per mode, horizon and algorithm (mean ± std over seeds): final held-out
mean@k and greedy accuracy, training seconds and generated tokens to reach GRPO's
final accuracy, and critic diagnostics (token PPO: explained variance of its
values per quarter of the response, ``critic/explained_var_q1..q4``; SPPO:
``critic/value_reward_corr``), averaged over the second half of each run. Writes
``horizon.md``, ``horizon.json`` and ``accuracy_vs_horizon.png`` into the output
folder and ends with one JSON line. Finished runs are skipped when the same
``--out`` is given again, so an interrupted benchmark continues where it stopped (the
reported wall time adds up every call on that folder).

``--jobs N`` runs N runs at a time, each in its own process on one thread
(``trainer.threads=1``; default: one per core). Every run of a benchmark then sees
the same load, so wall-clock budgets stay comparable. ``--jobs 1`` runs
them one after another in this process on every core. Each is an ordinary
``sppo-run`` run folder under ``runs/<mode>/h<H>/<algo>-seed<s>``. All equal-token
runs go first: each horizon's wall-clock budget is measured on its SPPO runs.

Usage::

    python scripts/bench_horizon.py                        # defaults: see --help
    python scripts/bench_horizon.py --horizons 2,8 --seeds 0 --samples 256
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from horizon_report import analyse, markdown, plot, readme_block, update_readme  # noqa: E402

DEFAULT_KIT = ROOT / "src" / "sppo_runner" / "assets" / "horizon"
MODES = ("tokens", "seconds")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--horizons", default="2,4,8,16,32", help="comma list; each needs a starter in --kit (shipped: 2, 4, 8, 16, 32)")
    p.add_argument("--algorithms", default="sppo,ppo,grpo", help="any registered ones (rloo, remax too)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--modes", default="tokens,seconds", help="tokens (equal generated tokens), seconds (equal wall clock)")
    p.add_argument("--samples", type=int, default=512,
                   help="token budget at H = this x the mean reference response length at H")
    p.add_argument("--seconds", default="",
                   help="wall-clock budgets 'H:S,...' (training seconds); default: SPPO's mean training "
                        "seconds for the token budget at H in this benchmark")
    p.add_argument("--samples-per-step", type=int, default=32, help="samples per update, every algorithm")
    p.add_argument("--train-size", type=int, default=2048, help="training problems per horizon (data.train_size)")
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature, training and evaluation "
                   "(the paper's 0.6; at T=1 a long chain rarely survives sampling)")
    p.add_argument("--same-prompts", action="store_true",
                   help="every algorithm gets --samples-per-step prompts per step (GRPO: 8x the samples)")
    p.add_argument("--evals", type=int, default=1, help="evaluations during each run (plus before and at the end)")
    p.add_argument("--problems", type=int, default=128, help="held-out problems per evaluation")
    p.add_argument("--k", type=int, default=2, help="samples per held-out problem (mean@k)")
    p.add_argument("--greedy", action="store_true", help="also evaluate greedy accuracy (one more decode per problem)")
    p.add_argument("--kit", type=Path, default=DEFAULT_KIT, help="starter folder with h<H>/policy and h<H>/critic")
    p.add_argument("--out", type=Path, default=None, help="default outputs/bench_horizon/<time>")
    p.add_argument("--keep-models", action="store_true", help="keep each run's final/ and checkpoints/")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="runs at a time, each in its own process on one thread; 1: one after another here")
    p.add_argument("--readme", type=Path, default=None,
                   help="also write the results into this README between its bench_horizon markers and "
                        "copy the plot to docs/accuracy_vs_horizon.png beside it")
    p.add_argument("extra", nargs="*", help="more Hydra overrides for every run")
    a = p.parse_args(argv)
    a.horizons = [int(x) for x in a.horizons.split(",") if x]
    a.algorithms = [x for x in a.algorithms.split(",") if x]
    a.seeds = [int(x) for x in a.seeds.split(",") if x]
    a.modes = [x for x in a.modes.split(",") if x]
    if set(a.modes) - set(MODES):
        p.error(f"--modes: allowed values {MODES}")
    a.seconds = {int(h): float(s) for h, s in (x.split(":") for x in a.seconds.split(",") if x)}
    if "seconds" in a.modes and not ("tokens" in a.modes and "sppo" in a.algorithms):
        missing = [h for h in a.horizons if h not in a.seconds]
        if missing:
            p.error(f"--modes seconds without SPPO token runs needs --seconds for H={missing}")
    return a


def starter(kit: Path, h: int) -> dict:
    """The level's card (and paths); a missing level names the command that builds it."""
    card = kit / f"h{h}" / "policy" / "card.json"
    if not card.is_file():
        raise SystemExit(f"no starter for horizon {h} at {card.parent}; build it with: "
                         f"python scripts/make_starter_policy.py --horizons {h} --out-dir {kit}")
    return {**json.loads(card.read_text()), "policy": str(card.parent), "critic": str(kit / f"h{h}" / "critic")}


@functools.lru_cache(maxsize=None)
def samples_per_prompt(algo: str, extra: tuple[str, ...]) -> int:
    """The algorithm's samples per prompt as its config (and the extra overrides) set it."""
    return make_config([f"algorithm={algo}", *extra]).algorithm.samples_per_prompt


def overrides(args, algo: str, seed: int, h: int, card: dict, budget: dict) -> list[str]:
    """The run's Hydra overrides: starter, task, batch layout, budget, evaluation cadence."""
    n = samples_per_prompt(algo, tuple(args.extra))
    prompts = args.samples_per_step if args.same_prompts else max(1, round(args.samples_per_step / n))
    over = [
        f"algorithm={algo}", f"seed={seed}", f"data.horizon={h}", f"data.prompts_per_step={prompts}",
        f"data.train_size={args.train_size}",
        f"data.max_prompt_tokens={card['prompt_tokens_max'] + 32}", f"model.path={card['policy']}",
        f"critic.path={card['critic']}", f"rollout.max_new_tokens={card['max_new_tokens']}",
        "trainer.steps=1000000", "trainer.eval_every=0", "trainer.checkpoint_every=0", "trainer.keep_checkpoints=1",
        f"rollout.temperature={args.temperature}", f"eval.n_problems={args.problems}", f"eval.k={args.k}",
        f"eval.greedy={str(args.greedy).lower()}",
        "logger.wandb.mode=disabled", "logger.progress=false",
    ]
    if "tokens" in budget:
        # Evaluate at about the same token counts for every algorithm: a cadence in steps of ~equal tokens.
        per_step = prompts * n * card["solution_tokens_mean_with_eos"]
        steps = max(1, round(budget["tokens"] / per_step / (args.evals + 1)))
        over += [f"trainer.max_tokens={int(budget['tokens'])}", f"trainer.eval_every={steps}"]
    else:
        over += [f"trainer.max_seconds={budget['seconds']:.3f}",
                 f"trainer.eval_every_seconds={budget['seconds'] / (args.evals + 1):.3f}"]
    if args.jobs > 1:
        over.append("trainer.threads=1")  # before the extra overrides, which may set it otherwise
    return over + list(args.extra)


def make_config(over: list[str]):
    """Composes conf/ as ``sppo-run`` does and validates it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from sppo_runner.cli import CONF_DIR, _register
    from sppo_runner.config import to_object

    _register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=over)
    if "hydra" in cfg:
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return to_object(cfg)


def run_one(args, run_dir: Path, over: list[str]) -> dict:
    """One training run into ``run_dir`` (an unfinished one there starts over)."""
    from sppo_runner.run import run

    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted run starts over
    cfg = make_config(over)
    cfg.run_dir = str(run_dir)
    t0 = time.perf_counter()
    summary = run(cfg, run_dir)
    if summary.get("stop_reason") == "interrupted":
        raise SystemExit(130)
    if not args.keep_models:
        for sub in ("final", "checkpoints"):
            shutil.rmtree(run_dir / sub, ignore_errors=True)
    print(f"+ {run_dir}: {summary['heldout_accuracy_before']:.3f} -> {summary['heldout_accuracy_after']:.3f} "
          f"({summary['steps']} steps, {summary['generated_tokens']} tokens, {summary['train_seconds']:.1f} s "
          f"training, {time.perf_counter() - t0:.1f} s in all)", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or ROOT / "outputs" / "bench_horizon" / time.strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cards = {h: starter(args.kit, h) for h in args.horizons}
    budgets: dict[str, dict[int, dict]] = {m: {} for m in args.modes}
    for mode in [m for m in MODES if m in args.modes]:  # tokens first: they size the wall-clock budgets
        jobs = []
        for h in args.horizons:
            if mode == "tokens":
                budget = {"tokens": round(args.samples * cards[h]["solution_tokens_mean_with_eos"])}
            else:
                budget = {"seconds": args.seconds.get(h) or sppo_seconds(out, h, args.seeds)}
            budgets[mode][h] = budget
            for algo in args.algorithms:
                for seed in args.seeds:
                    run_dir = out / "runs" / mode / f"h{h}" / f"{algo}-seed{seed}"
                    if (run_dir / "summary.json").is_file():
                        print(f"= {run_dir} (done)", flush=True)
                    else:
                        jobs.append((h, run_dir, overrides(args, algo, seed, h, cards[h], budget)))
        run_all(args, jobs)
    report = analyse(out / "runs", args, cards, budgets)
    report["bench_wall_seconds"] = add_wall_seconds(out, time.perf_counter() - t0)
    (out / "horizon.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "horizon.md").write_text(markdown(report))
    plot(report, out / "accuracy_vs_horizon.png")
    if args.readme:
        docs = args.readme.parent / "docs"
        docs.mkdir(exist_ok=True)
        shutil.copyfile(out / "accuracy_vs_horizon.png", docs / "accuracy_vs_horizon.png")
        command = " ".join(["python scripts/bench_horizon.py", *without_readme(sys.argv[1:] if argv is None else argv)])
        update_readme(args.readme, readme_block(report, command, "docs/accuracy_vs_horizon.png"))
    print((out / "horizon.md").read_text())
    print(json.dumps({"horizons": args.horizons, "final_accuracy": report["final_accuracy"],
                      "ppo_gap_to_sppo": report["ppo_gap_to_sppo"], "budgets": report["budgets"],
                      "bench_wall_seconds": report["bench_wall_seconds"], "report": str(out / "horizon.md")}))
    return 0


def run_all(args, jobs: list[tuple[int, Path, list[str]]]) -> None:
    """Runs ``(horizon, run_dir, overrides)``: here one by one, or ``--jobs`` at a time in single-threaded workers."""
    if args.jobs <= 1:
        for _, run_dir, over in jobs:
            run_one(args, run_dir, over)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # Longest horizons first, so the last worker is not left alone with a long run.
    jobs = sorted(jobs, key=lambda j: -j[0])
    # spawn: a fresh interpreter per worker, never a fork of a process that has started torch threads.
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_one, args, run_dir, over) for _, run_dir, over in jobs]
        for f in futures:
            f.result()  # re-raises a worker's error here


def add_wall_seconds(out: Path, seconds: float) -> float:
    """The benchmark's wall time over every call on ``out`` (a resumed one continues the count)."""
    f = out / "wall_seconds.json"
    total = (json.loads(f.read_text())["seconds"] if f.is_file() else 0.0) + seconds
    f.write_text(json.dumps({"seconds": round(total, 1)}) + "\n")
    return round(total, 1)


def without_readme(argv: list[str]) -> list[str]:
    """``argv`` without ``--readme PATH`` (the command as the README quotes it)."""
    out, skip = [], False
    for a in argv:
        if skip or a.startswith("--readme="):
            skip = False
            continue
        skip = a == "--readme"
        if not skip:
            out.append(a)
    return out


def sppo_seconds(out: Path, h: int, seeds: list[int]) -> float:
    """SPPO's mean training seconds at horizon ``h`` in the token-budget runs."""
    secs = [json.loads(f.read_text())["train_seconds"] for s in seeds
            if (f := out / "runs" / "tokens" / f"h{h}" / f"sppo-seed{s}" / "summary.json").is_file()]
    if not secs:
        raise SystemExit(f"no SPPO token-budget run at H={h} to size the wall-clock budget; pass --seconds")
    return sum(secs) / len(secs)


if __name__ == "__main__":
    sys.exit(main())
