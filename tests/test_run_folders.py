"""Every run owns its folder; resume continues only what it can (issue #12, items 1 and 7)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DRIVER, cli_env, make_config, small_run_overrides
from sppo_runner import rundir
from sppo_runner.checkpoint import list_checkpoints
from sppo_runner.errors import ResumeError, RunFolderError
from sppo_runner.run import run
from sppo_runner.tracking import offline_sync_command

BIN = Path(sys.executable).parent / "sppo-run"


def _steps(path: Path) -> list[int]:
    return [json.loads(ln)["step"] for ln in path.read_text().splitlines()]


def test_new_folder_takes_the_next_free_name(tmp_path):
    base = tmp_path / "outputs" / "2030-01-01" / "12-00-00"
    assert [rundir.new_folder(base).name for _ in range(3)] == ["12-00-00", "12-00-00-1", "12-00-00-2"]
    sweep = str(tmp_path / "sweep")
    (tmp_path / "sweep").mkdir()
    # Two jobs of one sweep with the same algorithm and seed (say an lr sweep): two folders;
    # the same job asks again (Hydra resolves the name more than once): the same folder.
    assert rundir.resolve_job_subdir(sweep, "sppo-seed0", 0) == "sppo-seed0"
    assert rundir.resolve_job_subdir(sweep, "sppo-seed0", 1) == "sppo-seed0-1"
    assert rundir.resolve_job_subdir(sweep, "sppo-seed0", 0) == "sppo-seed0"


@pytest.mark.slow
def test_two_runs_started_in_the_same_second_get_two_clean_folders(tiny_models, tmp_path):
    over = small_run_overrides(tiny_models, steps=2) + ["trainer.checkpoint_every=1"]
    # Both name their folder after the same second (as two shells started together would).
    cmd = [sys.executable, str(DRIVER), "stamp=2030-01-01/12-00-00", *over]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    day = tmp_path / "outputs" / "2030-01-01"
    folders = sorted(day.iterdir())
    assert [f.name for f in folders] == ["12-00-00", "12-00-00-1"]
    for folder in folders:
        assert _steps(folder / "metrics.jsonl") == [0, 1, 2, 2]  # eval before, 2 steps, final eval: once each
        assert sorted(set(_steps(folder / "samples.jsonl"))) == [1, 2]
        assert len(_steps(folder / "samples.jsonl")) == 2 * 4  # logger.samples_per_step rows per step
        assert [p.name for p in list_checkpoints(folder)] == ["step_1", "step_2"]
        assert yaml.safe_load((folder / "config.yaml").read_text())["run_dir"] == str(folder.resolve())
        assert json.loads((folder / "summary.json").read_text())["steps"] == 2
        assert (folder / "sppo-run.log").is_file()


@pytest.mark.slow
def test_sweep_jobs_with_the_same_algorithm_and_seed_get_their_own_folders(tiny_models, tmp_path):
    out = subprocess.run([str(BIN), "-m", "model.lr=1e-6,1e-5", *small_run_overrides(tiny_models, steps=1)],
                         cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["multirun"]
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["sppo-seed0", "sppo-seed0-1"]
    lrs = [yaml.safe_load((p / "config.yaml").read_text())["model"]["lr"] for p in jobs]
    assert lrs == [1e-6, 1e-5]
    assert all(_steps(p / "metrics.jsonl") == [0, 1, 1] for p in jobs)


def test_a_new_run_in_a_folder_holding_a_run_is_refused(tiny_models, tmp_path):
    over = small_run_overrides(tiny_models, steps=1)
    run(make_config("sppo", over), tmp_path)
    metrics = (tmp_path / "metrics.jsonl").read_text()
    config = (tmp_path / "config.yaml").read_text()
    with pytest.raises(RunFolderError, match=rf"{tmp_path} already holds a run .*resume={tmp_path}"):
        run(make_config("sppo", over + ["trainer.steps=3"]), tmp_path)
    assert (tmp_path / "metrics.jsonl").read_text() == metrics and (tmp_path / "config.yaml").read_text() == config
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_1"]


def test_a_folder_held_by_a_live_process_is_refused(tiny_models, tmp_path):
    lock = tmp_path / rundir.LOCK_NAME
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
         "os.write(fd, str(os.getpid()).encode())\nprint('locked', flush=True)\ntime.sleep(120)", str(lock)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=rf"in use by another sppo-run \(pid {holder.pid}\)"):
            run(make_config("sppo", small_run_overrides(tiny_models, steps=1)), tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "config.yaml").exists()


def test_resume_refuses_a_finished_run_and_other_settings(tiny_models, tmp_path):
    over = small_run_overrides(tiny_models, steps=1)
    run(make_config("sppo", over), tmp_path)
    metrics = (tmp_path / "metrics.jsonl").read_text()
    resume = [f"resume={tmp_path}"]
    with pytest.raises(ResumeError, match=rf"finished run \(1 steps.*sppo-run resume={tmp_path} trainer.steps=2"):
        run(make_config("sppo", over + resume), tmp_path)
    with pytest.raises(ResumeError, match=r"algorithm.name: 'sppo' -> 'grpo'"):
        run(make_config("grpo", over + resume + ["trainer.steps=2", "algorithm.samples_per_prompt=2"]), tmp_path)
    with pytest.raises(ResumeError, match=r"model.path: .* -> 'embedded'.*data.difficulty: 2 -> 3"):
        run(make_config("sppo", over + resume + ["trainer.steps=2", "model.path=embedded", "data.difficulty=3"]),
            tmp_path)
    assert (tmp_path / "metrics.jsonl").read_text() == metrics  # no duplicate final evaluation
    # Raising the budget (and changing a learning rate) continues it.
    summary = run(make_config("sppo", over + resume + ["trainer.steps=2", "model.lr=2e-6"]), tmp_path)
    assert summary["steps"] == 2 and _steps(tmp_path / "metrics.jsonl") == [0, 1, 1, 2, 2]


def test_resume_before_the_first_checkpoint_says_to_start_again(tiny_models, tmp_path):
    cfg = make_config("sppo", small_run_overrides(tiny_models, steps=5))
    rundir.write_config(tmp_path, cfg)  # what a run killed during its first steps leaves
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n')
    again = make_config("sppo", small_run_overrides(tiny_models, steps=5) + [f"resume={tmp_path}"])
    with pytest.raises(ResumeError, match="stopped before its first checkpoint.*start it again without resume="):
        run(again, tmp_path)
    with pytest.raises(ResumeError, match="not a sppo-run folder"):
        run(make_config("sppo", small_run_overrides(tiny_models) + [f"resume={tmp_path / 'x'}"]), tmp_path / "x")


def test_wandb_sync_hint_names_every_offline_segment_of_a_resumed_run(tmp_path):
    for name in ("offline-run-20300101_120000-abc", "offline-run-20300101_130000-abc", "offline-run-20300101_1-zzz",
                 "run-20300101_140000-abc"):
        (tmp_path / "wandb" / name).mkdir(parents=True)
    cmd = offline_sync_command(tmp_path, "abc")
    assert cmd == (f"wandb sync --id abc {tmp_path}/wandb/offline-run-20300101_120000-abc "
                   f"{tmp_path}/wandb/offline-run-20300101_130000-abc")
    assert offline_sync_command(tmp_path, "zzz") == f"wandb sync {tmp_path}/wandb/offline-run-20300101_1-zzz"
