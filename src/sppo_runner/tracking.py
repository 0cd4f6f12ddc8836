"""Where metrics go: progress bar, metrics.jsonl, samples.jsonl and Weights & Biases.

Only rank 0 writes. W&B ``auto`` goes online when an API key is configured and
offline otherwise; a failing or slow ``wandb.init`` falls back to offline, so a
run never hangs for want of a network.
"""

from __future__ import annotations

import json
import logging
import math
import netrc
import os
from pathlib import Path
from typing import Any, Optional

from sppo_runner.errors import UserError

log = logging.getLogger(__name__)


def wandb_has_key() -> bool:
    """True when an API key is in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        rc = netrc.netrc()
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1]
    return rc.authenticators(host) is not None


def resolve_wandb_mode(mode: str) -> str:
    if mode == "auto":
        return "online" if wandb_has_key() else "offline"
    return mode


def _clean(v: Any) -> Any:
    """JSON-safe scalars (NaN/inf become null: strict JSON readers reject them)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class LogFileError(UserError, ValueError):
    """A line of metrics.jsonl / samples.jsonl other than the last is not a JSON object."""


def _row(line: bytes) -> Optional[dict]:
    try:
        row = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return row if isinstance(row, dict) else None


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Drops lines logged after ``last_step`` (used when resuming from a checkpoint).

    A torn last line (a write cut short by a full disk or a kill) is dropped with a warning.
    The file is replaced atomically, so a disk that is still full leaves it as it was.

    Raises:
        LogFileError: A line before the last is not a JSON object (naming the file and line).
    """
    if not path.exists():
        return
    lines = path.read_bytes().split(b"\n")
    filled = [i for i, ln in enumerate(lines) if ln.strip()]
    keep = []
    for i in filled:
        row = _row(lines[i])
        if row is None and i == filled[-1]:
            log.warning("%s: dropped its torn last line (line %d, %d bytes): a write there was cut short",
                        path, i + 1, len(lines[i]))
        elif row is None:
            raise LogFileError(f"{path}, line {i + 1}: not a JSON object; delete or repair that line, then resume again")
        elif row.get("step", 0) <= last_step:
            keep.append(lines[i] + b"\n")
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(b"".join(keep))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def offline_sync_command(run_dir: Path, run_id: str) -> str:
    """``wandb sync`` for every offline segment of a W&B run (a resumed run has one per resume)."""
    dirs = sorted(str(p) for p in (Path(run_dir) / "wandb").glob(f"offline-run-*-{run_id}") if p.is_dir())
    if len(dirs) > 1:
        return f"wandb sync --id {run_id} {' '.join(dirs)}"
    return f"wandb sync {dirs[0] if dirs else Path(run_dir) / 'wandb'}"


class Tracker:
    """Logs one run.

    Args:
        run_dir: The run folder.
        config: The resolved config as a plain dict (logged to W&B).
        cfg: A LoggerConfig.
        total_steps: For the progress bar's ETA.
        rank: Process rank; only rank 0 writes anything.
        wandb_id: Resume this W&B run id (from a checkpoint).
        start_step: Steps already done (resume).
    """

    def __init__(self, run_dir: Path, config: dict, cfg: Any, total_steps: int, rank: int = 0,
                 wandb_id: Optional[str] = None, start_step: int = 0) -> None:
        self.run_dir, self.cfg, self.active = Path(run_dir), cfg, rank == 0
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.samples_path = self.run_dir / "samples.jsonl"
        self.wandb = None
        self.wandb_mode = "disabled"
        self.bar = None
        if not self.active:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        truncate_jsonl(self.metrics_path, start_step)
        truncate_jsonl(self.samples_path, start_step)
        self._init_wandb(config, wandb_id)
        if cfg.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    def _init_wandb(self, config: dict, wandb_id: Optional[str]) -> None:
        mode = resolve_wandb_mode(self.cfg.wandb.mode.value if hasattr(self.cfg.wandb.mode, "value") else self.cfg.wandb.mode)
        if mode == "disabled":
            return
        import wandb

        w = self.cfg.wandb
        # Algorithm and seed tags make sweep runs filterable on the dashboard.
        tags = [*w.tags, f"algorithm:{config['algorithm']['name']}", f"seed:{config['seed']}"]
        kwargs = dict(project=w.project, entity=w.entity, group=w.group, name=w.name, tags=tags, config=config,
                      dir=str(self.run_dir), id=wandb_id, resume="allow" if wandb_id else None, reinit=True)
        try:
            self.wandb = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=w.init_timeout_s), **kwargs)
        except Exception as err:  # noqa: BLE001 - any W&B failure must not stop training
            if mode != "online":
                log.warning("W&B disabled: init failed (%s)", err)
                return
            log.warning("W&B online init failed (%s); logging offline instead", err)
            mode = "offline"
            self.wandb = wandb.init(mode=mode, **kwargs)
        self.wandb_mode = mode

    @property
    def wandb_id(self) -> Optional[str]:
        return self.wandb.id if self.wandb is not None else None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Appends one line to metrics.jsonl and sends the metrics to W&B."""
        if not self.active:
            return
        row = {"step": step, **{k: _clean(v) for k, v in metrics.items()}}
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def progress(self, step: int, postfix: dict[str, str]) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(postfix, refresh=False)

    def log_samples(self, step: int, rows: list[dict]) -> None:
        if not self.active or not rows:
            return
        with self.samples_path.open("a") as f:
            for r in rows:
                f.write(json.dumps({"step": step, **{k: _clean(v) for k, v in r.items()}}) + "\n")

    def write(self, message: str) -> None:
        """Prints a line without breaking the progress bar."""
        if not self.active:
            return
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message, flush=True)

    def finish(self, summary: dict[str, Any]) -> None:
        """Writes summary.json, closes W&B and prints the offline sync hint."""
        if not self.active:
            return
        if self.bar is not None:
            self.bar.close()
        (self.run_dir / "summary.json").write_text(json.dumps({k: _clean(v) for k, v in summary.items()}, indent=2) + "\n")
        if self.wandb is not None:
            for k, v in summary.items():
                self.wandb.summary[k] = v
            run_id = self.wandb.id
            self.wandb.finish()
            if self.wandb_mode == "offline":
                print(f"W&B logged offline; upload with: {offline_sync_command(self.run_dir, run_id)}", flush=True)

    def report(self, folder: Path, stem: str, metrics: dict[str, float], prefixes: dict[str, str], k: int) -> str:
        """Writes the validation table ``folder/<stem>.md|json``; returns its Markdown ("" off rank 0)."""
        if not self.active:
            return ""
        from sppo_runner.benchmarks import write_report

        return write_report(folder, stem, metrics, prefixes, k)[0]

    def plot_curves(self) -> None:
        """``curves.png`` from metrics.jsonl."""
        if self.active:
            from sppo_runner import plots

            plots.training_curves(self.metrics_path, self.run_dir / "curves.png")
