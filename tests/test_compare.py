"""sppo-compare: hand-computed figures on synthetic run folders, and one end-to-end on real tiny runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from sppo_runner import compare

# (algorithm, seed) -> eval points (wall seconds, accuracy); the last point is the final eval.
# Default target = GRPO's mean final accuracy = (0.5 + 0.7) / 2 = 0.6.
CURVES = {
    ("grpo", 0): [(0.0, 0.2), (10.0, 0.5), (20.0, 0.5)],  # never reaches 0.6
    ("grpo", 1): [(0.0, 0.2), (10.0, 0.6), (20.0, 0.7)],  # 0.6 at 10 s
    ("sppo", 0): [(0.0, 0.2), (5.0, 0.7), (15.0, 0.7)],  # 5 s
    ("sppo", 1): [(0.0, 0.2), (8.0, 0.65), (16.0, 0.9)],  # 8 s
    ("sppo", 2): [(0.0, 0.2), (6.0, 0.4), (12.0, 0.5)],  # never
}


def write_run(folder: Path, algorithm: str, seed: int, curve: list[tuple[float, float]], *, lr: float = 1e-6,
              samples_per_step: int = 10, cuda: bool = False) -> Path:
    """A run folder shaped like sppo-run's: config.yaml, metrics.jsonl (eval lines + one train line), summary.json."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(
        {"algorithm": {"name": algorithm}, "seed": seed, "model": {"lr": lr}, "run_dir": str(folder)}))
    lines = []
    for step, (wall, acc) in enumerate(curve):
        n = step * samples_per_step
        counters = {"perf/wall_seconds": wall, "perf/total_samples": float(n), "perf/total_tokens": 4.0 * n}
        if step:  # a training line without eval: must be ignored by the curves
            lines.append({"step": step, "reward/mean": 0.1, **counters})
        lines.append({"step": step, "eval/mean@k": acc, **counters})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    steps = len(curve) - 1
    memory = {"perf/peak_rss_mb": 100.0 + seed, **({"perf/cuda_peak_allocated_mb": 50.0} if cuda else {})}
    summary = {
        "algorithm": algorithm, "seed": seed, "k": 4, "n_heldout_problems": 16,
        "heldout_accuracy_before": curve[0][1], "heldout_accuracy_after": curve[-1][1], "steps": steps,
        "prompts": steps, "samples": steps * samples_per_step, "generated_tokens": 4 * steps * samples_per_step,
        "train_seconds": curve[-1][0] / 2, "wall_seconds": curve[-1][0],
        "n_params": {"policy": 1000, "critic": 200 if algorithm == "sppo" else 0}, "peak_memory": memory,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "multirun" / "2025-01-01" / "12-00-00"
    for (algo, seed), curve in CURVES.items():
        write_run(root / f"{algo}-seed{seed}", algo, seed, curve)
    return root


def test_summarize_hand_computed(sweep):
    s = compare.summarize(compare.load_runs([sweep]))
    assert s["target"] == pytest.approx(0.6) and "grpo" in s["target_source"]
    assert list(s["algorithms"]) == ["sppo", "grpo"]  # best final accuracy first: 0.7 > 0.6
    g, p = s["algorithms"]["grpo"], s["algorithms"]["sppo"]
    assert g["accuracy_after_mean"] == pytest.approx(0.6)
    assert g["accuracy_after_std"] == pytest.approx(math.sqrt(0.02))  # (0.1² + 0.1²) / (2 - 1)
    assert p["accuracy_after_mean"] == pytest.approx(0.7)
    assert p["accuracy_after_std"] == pytest.approx(0.2)  # (0 + 0.2² + 0.2²) / (3 - 1) = 0.04
    assert p["accuracy_before_mean"] == pytest.approx(0.2) and p["accuracy_before_std"] == pytest.approx(0, abs=1e-12)
    assert g["time_to_target_per_seed"] == [None, 10.0] and g["time_to_target_mean"] == 10.0
    assert p["time_to_target_per_seed"] == [5.0, 8.0, None] and p["time_to_target_mean"] == pytest.approx(6.5)
    assert (g["n_reached_target"], p["n_reached_target"]) == (1, 2)
    assert p["samples_mean"] == 20 and p["generated_tokens_mean"] == 80
    assert p["wall_seconds_mean"] == pytest.approx((15 + 16 + 12) / 3)
    assert p["train_seconds_mean"] == pytest.approx((15 + 16 + 12) / 6)
    assert p["peak_rss_mb"] == 102.0 and p["peak_cuda_allocated_mb"] is None  # max over seeds
    assert (p["policy_params"], p["critic_params"], g["critic_params"]) == (1000, 200, 0)
    assert s["warnings"] == []


def test_markdown_table(sweep):
    md = compare.markdown(compare.summarize(compare.load_runs([sweep])))
    rows = {ln.split(" | ")[0].strip("| "): ln for ln in md.splitlines() if ln.startswith("| ")}
    assert "time to 60.0% (s)" in rows["algorithm"] and "peak CUDA MB" not in rows["algorithm"]
    assert "| 70.0 ± 20.0% | 20.0 ± 0.0% |" in rows["sppo"]
    assert "6.50 (2 of 3 seeds)" in rows["sppo"] and "10.0 (1 of 2 seeds)" in rows["grpo"]
    assert "| 60.0 ± 14.1% |" in rows["grpo"]
    assert rows["grpo"].endswith("| 1.0K | – |") and rows["sppo"].endswith("| 1.0K | 200 |")


def test_explicit_target_and_nobody_reaches(sweep):
    s = compare.summarize(compare.load_runs([sweep]), target=0.95)
    assert s["target_source"] == "--target"
    assert all(st["n_reached_target"] == 0 and st["time_to_target_mean"] is None for st in s["algorithms"].values())
    assert "n/a (0 of 3 seeds)" in compare.markdown(s)


def test_before_accuracy_reaching_target_counts_as_zero_seconds(sweep):
    s = compare.summarize(compare.load_runs([sweep]), target=0.2)
    assert s["algorithms"]["sppo"]["time_to_target_per_seed"] == [0.0, 0.0, 0.0]


def test_target_equal_to_a_float_mean_is_reached(tmp_path):
    # mean(0.1, 0.1, 0.1) = 0.10000000000000002 > 0.1: must still count as reached.
    for seed in range(3):
        write_run(tmp_path / f"grpo-seed{seed}", "grpo", seed, [(0.0, 0.0), (3.0, 0.1)])
    s = compare.summarize(compare.load_runs([tmp_path]))
    assert s["algorithms"]["grpo"]["time_to_target_per_seed"] == [3.0, 3.0, 3.0]


def test_default_target_without_grpo_is_best_algorithm(tmp_path):
    write_run(tmp_path / "a", "rloo", 0, [(0.0, 0.1), (5.0, 0.3)])
    write_run(tmp_path / "b", "sppo", 0, [(0.0, 0.1), (5.0, 0.4)])
    s = compare.summarize(compare.load_runs([tmp_path]))
    assert s["target"] == pytest.approx(0.4) and "sppo" in s["target_source"]


def test_curves_interpolate_on_the_common_range(tmp_path):
    write_run(tmp_path / "s0", "grpo", 0, [(0.0, 0.0), (10.0, 1.0)])
    write_run(tmp_path / "s1", "grpo", 1, [(0.0, 0.0), (10.0, 0.2), (20.0, 0.4)])
    c = compare.curves(compare.load_runs([tmp_path]), "wall", n_grid=3)
    assert c["x"] == [0.0, 5.0, 10.0]  # up to the shorter seed's end
    assert c["mean"] == pytest.approx([0.0, 0.3, 0.6])  # seeds at x=5: 0.5 and 0.1
    assert c["min"] == pytest.approx([0.0, 0.1, 0.2]) and c["max"] == pytest.approx([0.0, 0.5, 1.0])
    assert c["std"][1] == pytest.approx(math.sqrt(0.08))
    samples = compare.curves(compare.load_runs([tmp_path]), "samples", n_grid=2)
    assert samples["x"] == [0.0, 10.0]  # both seeds did 10 samples per step; s0 stopped after one step


def test_load_runs_skips_unfinished_and_searches_recursively(sweep):
    unfinished = sweep / "rloo-seed0"
    write_run(unfinished, "rloo", 0, [(0.0, 0.1), (1.0, 0.2)])
    (unfinished / "summary.json").unlink()
    done, pending = compare.find_run_dirs([sweep.parents[1]])
    assert len(done) == 5 and pending == [unfinished]
    runs = compare.load_runs([sweep / "grpo-seed1", sweep / "sppo-seed0"])  # run folders themselves
    assert [(r.algorithm, r.seed) for r in runs] == [("grpo", 1), ("sppo", 0)]


def test_params_fall_back_to_the_step0_metrics_line(tmp_path):
    run_dir = write_run(tmp_path / "r", "grpo", 0, [(0.0, 0.1), (1.0, 0.2)])
    summary = json.loads((run_dir / "summary.json").read_text())
    del summary["n_params"]
    (run_dir / "summary.json").write_text(json.dumps(summary))
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    lines[0] = json.dumps({**json.loads(lines[0]), "perf/policy_params": 123.0, "perf/critic_params": 0.0})
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert compare.read_run(run_dir).params() == {"policy": 123, "critic": 0}


def test_warnings_for_mixed_configs_and_duplicate_seeds(tmp_path):
    write_run(tmp_path / "x" / "grpo-seed0", "grpo", 0, [(0.0, 0.1), (1.0, 0.2)], lr=1e-6)
    write_run(tmp_path / "y" / "grpo-seed0", "grpo", 0, [(0.0, 0.1), (1.0, 0.2)], lr=1e-5, cuda=True)
    s = compare.summarize(compare.load_runs([tmp_path]))
    assert s["algorithms"]["grpo"]["config_differences"] == ["model.lr"]
    assert any("model.lr" in w for w in s["warnings"]) and any("seed(s) [0]" in w for w in s["warnings"])
    assert s["algorithms"]["grpo"]["peak_cuda_allocated_mb"] == 50.0
    assert "peak CUDA MB" in compare.markdown(s)


def test_main_writes_report_into_the_multirun_folder(sweep, capsys):
    assert compare.main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "| sppo | 3 | 70.0 ± 20.0% |" in out
    for name in ("comparison.md", "comparison.json", *(f"accuracy_vs_{a}.png" for a in compare.AXES)):
        assert (sweep / name).is_file(), name
    assert (sweep / "accuracy_vs_wall.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((sweep / "comparison.json").read_text())
    assert data["algorithms"]["grpo"]["time_to_target_mean"] == 10.0
    assert set(data["curves"]["sppo"]) == set(compare.AXES)


def test_main_out_target_and_errors(sweep, tmp_path, capsys, monkeypatch):
    out = tmp_path / "report"
    assert compare.main([str(sweep / "grpo-seed0"), str(sweep / "grpo-seed1"), "--out", str(out),
                         "--target", "0.5"]) == 0
    assert json.loads((out / "comparison.json").read_text())["algorithms"]["grpo"]["time_to_target_mean"] == 10.0
    monkeypatch.chdir(tmp_path)
    # Run folders (not a multirun folder): a new outputs/compare/<date>/<time>, none in the working tree.
    assert compare.main([str(sweep / "sppo-seed0")]) == 0
    assert compare.main([str(sweep / "sppo-seed0"), str(sweep / "sppo-seed1")]) == 0
    reports = sorted(p.parent for p in (tmp_path / "outputs" / "compare").glob("*/*/comparison.md"))
    assert len(reports) == 2 and not (tmp_path / "comparison").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv in ([str(empty)], [str(sweep), "--target", "60"], [str(tmp_path / "missing")]):
        with pytest.raises(SystemExit) as err:
            compare.main(argv)
        assert err.value.code == 2
    assert "no finished runs" in capsys.readouterr().err


def test_end_to_end_on_real_tiny_runs(tiny_models, tmp_path, capsys):
    from conftest import make_config, small_run_overrides

    from sppo_runner.run import run

    root = tmp_path / "multirun"
    for algo in ("sppo", "grpo"):
        for seed in (0, 1):
            cfg = make_config(algo, small_run_overrides(tiny_models, steps=1) + [f"seed={seed}"])
            run(cfg, root / f"{algo}-seed{seed}")  # writes config.yaml too
    assert compare.main([str(root)]) == 0
    assert "| grpo | 2 |" in capsys.readouterr().out
    data = json.loads((root / "comparison.json").read_text())
    for algo, st in data["algorithms"].items():
        summaries = [json.loads((root / f"{algo}-seed{s}" / "summary.json").read_text()) for s in (0, 1)]
        assert st["seeds"] == [0, 1] and st["config_differences"] == []
        assert st["accuracy_after_mean"] == pytest.approx(sum(x["heldout_accuracy_after"] for x in summaries) / 2)
        assert st["samples_mean"] == summaries[0]["samples"] and st["peak_rss_mb"] > 0
        assert st["policy_params"] == summaries[0]["n_params"]["policy"] > 0
        assert len(data["curves"][algo]["tokens"]["x"]) > 1
    assert data["algorithms"]["sppo"]["critic_params"] > 0 == data["algorithms"]["grpo"]["critic_params"]
    assert data["target"] == pytest.approx(data["algorithms"]["grpo"]["accuracy_after_mean"])
    assert data["algorithms"]["grpo"]["n_reached_target"] >= 1  # some seed ends at or above the seeds' mean
