"""Full disks, torn log lines, and how errors reach the user (issue #12, items 2, 6 and 8)."""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import pytest
import torch

from conftest import make_config, small_run_overrides
from sppo_runner import telemetry
from sppo_runner.checkpoint import list_checkpoints
from sppo_runner.cli import reported
from sppo_runner.errors import DiskFullError
from sppo_runner.run import run
from sppo_runner.tracking import LogFileError, truncate_jsonl

FULL = 'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'


def _steps(path: Path) -> list[int]:
    return [json.loads(ln)["step"] for ln in path.read_text().splitlines()]


def test_resume_drops_a_torn_last_line_and_says_so(tiny_models, tmp_path, caplog):
    over = small_run_overrides(tiny_models, steps=1) + ["trainer.checkpoint_every=1"]
    run(make_config("sppo", over), tmp_path)
    # A disk that filled mid-write: half a line, cut inside a UTF-8 character, no newline.
    with (tmp_path / "samples.jsonl").open("ab") as f:
        f.write(b'{"step": 2, "prompt": "12+\xe2\x82')
    with (tmp_path / "metrics.jsonl").open("ab") as f:
        f.write(b'{"step": 2, "reward/me')
    with caplog.at_level(logging.WARNING):
        summary = run(make_config("sppo", over + ["trainer.steps=2", f"resume={tmp_path}"]), tmp_path)
    assert summary["steps"] == 2
    assert _steps(tmp_path / "metrics.jsonl") == [0, 1, 1, 2, 2]
    assert sorted(set(_steps(tmp_path / "samples.jsonl"))) == [1, 2]
    torn = [r.getMessage() for r in caplog.records if "torn last line" in r.getMessage()]
    assert len(torn) == 2 and any("samples.jsonl" in m for m in torn)


def test_a_bad_line_before_the_last_is_an_error_naming_the_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1}\n{"step": 2, "x\n{"step": 3}\n')
    with pytest.raises(LogFileError, match=rf"{path}, line 2: not a JSON object"):
        truncate_jsonl(path, 5)
    path.write_bytes(b'{"step": 1}\n{"step": 2}\n')
    truncate_jsonl(path, 1)
    assert path.read_bytes() == b'{"step": 1}\n'


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tiny_models, tmp_path, monkeypatch, capsys):
    import transformers.modeling_utils as modeling_utils
    from safetensors import SafetensorError

    real = modeling_utils.safe_save_file

    def fills_up(tensors, filename, metadata=None):
        if ".tmp_step_2" in str(filename):
            Path(filename).write_bytes(b"\0" * 64)  # what a full disk leaves: part of the file
            raise SafetensorError(FULL)
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(modeling_utils, "safe_save_file", fills_up)
    over = small_run_overrides(tiny_models, steps=3) + ["trainer.checkpoint_every=1"]
    with pytest.raises(DiskFullError) as err:
        run(make_config("sppo", over), tmp_path)
    text = str(err.value)
    assert "checkpoints/step_2: the disk is full" in text and "step_1, is intact" in text
    assert f"sppo-run resume={tmp_path}" in text and "SafetensorError" not in text
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_1"]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    # sppo-run prints it as one line and exits 2.
    with pytest.raises(SystemExit) as exit_:
        with reported("sppo-run", tmp_path):
            raise err.value
    assert exit_.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert lines == [f"sppo-run: {text}"]
    # With space again, the run continues from step 1 as if nothing happened.
    monkeypatch.setattr(modeling_utils, "safe_save_file", real)
    summary = run(make_config("sppo", over + [f"resume={tmp_path}"]), tmp_path)
    assert summary["steps"] == 3 and _steps(tmp_path / "metrics.jsonl") == [0, 1, 2, 3, 3]


def test_a_full_disk_while_logging_says_where_to_resume(tmp_path, capsys):
    (tmp_path / "checkpoints" / "step_4").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step_4" / "trainer_state.pt").write_bytes(b"x")
    with pytest.raises(SystemExit) as exit_:
        with reported("sppo-run", tmp_path):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "the disk is full" in err and f"continue from step_4 with: sppo-run resume={tmp_path}" in err


def test_an_unexpected_error_is_one_line_with_exit_1(capsys):
    with pytest.raises(SystemExit) as exit_:
        with reported("sppo-run"):
            raise ZeroDivisionError("oops")
    assert exit_.value.code == 1
    assert "sppo-run: ZeroDivisionError: oops (an unexpected error" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux) to see the resident size")
def test_peak_memory_is_the_runs_own_not_an_earlier_jobs(tiny_models, tmp_path):
    # An earlier, bigger job in the same process (a -m sweep runs its jobs one after another).
    ballast = torch.ones(256 * 2**20)  # 1 GiB, touched
    ballast_peak = telemetry._process_peak_mb()
    del ballast
    summary = run(make_config("sppo", small_run_overrides(tiny_models, steps=1)), tmp_path)
    peak = summary["peak_memory"]["perf/peak_rss_mb"]
    assert 0 < peak < ballast_peak - 512, (peak, ballast_peak)
    logged = [json.loads(ln).get("perf/peak_rss_mb") for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(v < ballast_peak - 512 for v in logged if v is not None)
