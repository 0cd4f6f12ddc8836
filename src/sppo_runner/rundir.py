"""Run folders: every run owns its folder.

Two layers keep runs apart:

* **Naming.** The default folders (``outputs/<date>/<time>``, the sweep folder
  ``outputs/multirun/<date>/<time>`` and its ``<algorithm>-seed<seed>`` job folders,
  ``sppo-eval``'s ``outputs/eval/<date>/<time>``) are
  claimed with an atomic ``mkdir``: when the name exists (two runs started in the same
  second, or two jobs of a sweep with the same algorithm and seed), the next free
  ``<name>-1``, ``<name>-2``, ... is taken. The Hydra resolvers of ``conf/config.yaml`` call
  :func:`new_folder`.
* **Ownership.** :func:`open_run` (called by ``run.run``) holds an exclusive lock on
  ``<run folder>/.sppo-run.lock`` while the run lives (``flock``: the kernel drops it when the
  process dies, even by ``kill -9``), refuses a folder that another live process holds, refuses
  a fresh start in a folder that already holds a run, checks a ``resume=`` (see
  :mod:`sppo_runner.resume`), and only then writes ``config.yaml``.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from sppo_runner.errors import RunFolderError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, the other checks still apply
    fcntl = None

LOCK_NAME = ".sppo-run.lock"
# What a run writes once it has started; config.yaml alone is left by a run that failed at start.
RUN_FILES = ("metrics.jsonl", "samples.jsonl", "summary.json", "checkpoints")

# Folders this process created through new_folder (with the parents it had to create), so that a
# run refused at start can take its empty folder away again. Process state by nature: a folder
# name is claimed once per process and resolved again by Hydra several times.
_CREATED: dict[Path, list[Path]] = {}
_MEMO: dict[tuple, Path] = {}
# Folders this process holds the lock of: resolved path -> open lock file descriptor.
_HELD: dict[Path, int] = {}


# ---- naming ----------------------------------------------------------------------------------
def new_folder(base: Path) -> Path:
    """Creates ``base``, or the first free ``base-1``, ``base-2``, ..., and returns it.

    ``os.mkdir`` either creates a folder or fails because it exists, so two processes can never
    both get the same one.
    """
    base = Path(base)
    missing = [p for p in reversed(base.parents) if not p.exists()]
    base.parent.mkdir(parents=True, exist_ok=True)
    for i in range(10_000):
        path = base if i == 0 else base.with_name(f"{base.name}-{i}")
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        _CREATED[path.resolve()] = [path.resolve(), *(p.resolve() for p in reversed(missing))]
        return path
    raise RunFolderError(f"no free folder name next to {base} (tried {base}-1 ... {base}-9999)")


def _once(key: tuple, make) -> str:
    if key not in _MEMO:
        _MEMO[key] = make()
    return str(_MEMO[key])


def _stamp() -> str:
    return _dt.datetime.now().strftime("%Y-%m-%d/%H-%M-%S")


def resolve_run_dir(resume: Optional[str]) -> str:
    """``hydra.run.dir``: the resumed run's own folder, else a new ``outputs/<date>/<time>[-k]``."""
    if resume:
        path = Path(resume)
        if not path.exists():  # Hydra will create it; a refused resume takes it away again
            _CREATED.setdefault(path.resolve(), [path.resolve()])
        return str(path)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1:  # ranks of one torchrun job share rank 0's folder
        from sppo_runner.distributed.launch import agree_across_ranks

        return _once(("run",), lambda: agree_across_ranks("run_dir", lambda: resolve_new_dir("outputs")))
    return resolve_new_dir("outputs")


def resolve_new_dir(root: str) -> str:
    """A new ``<root>/<date>/<time>[-k]``, the same for every call in this process.

    ``hydra.sweep.dir`` (``outputs/multirun``) and ``sppo-eval``'s folder (``outputs/eval``).
    """
    return _once(("new", root), lambda: new_stamped_folder(root))


def new_stamped_folder(root: str | Path) -> Path:
    """A new ``<root>/<date>/<time>[-k]`` (each call claims another)."""
    return new_folder(Path(root) / _stamp())


def resolve_job_subdir(sweep_dir: str, name: str, job_num: Any) -> str:
    """``hydra.sweep.subdir``: ``name`` (``<algorithm>-seed<seed>``), or ``name-k`` when a job took it."""
    return _once(("job", sweep_dir, name, str(job_num)), lambda: new_folder(Path(sweep_dir) / name).name)


def remove_if_created(folder: Path) -> bool:
    """Deletes ``folder`` (and the parents created for it) when this process created it.

    For a run refused at start: the folder holds only what Hydra and the refusal wrote.
    Returns whether it was removed.
    """
    chain = _CREATED.pop(Path(folder).resolve(), None)
    if not chain:
        return False
    release(chain[0])
    shutil.rmtree(chain[0], ignore_errors=True)
    for parent in chain[1:]:
        try:
            parent.rmdir()  # only when empty: another run may live there by now
        except OSError:
            break
    return True


# ---- ownership -------------------------------------------------------------------------------
def holds_run(folder: Path) -> list[str]:
    """The run files in ``folder`` (empty when no run has started there)."""
    return [name for name in RUN_FILES if (Path(folder) / name).exists()]


def _lock(folder: Path) -> None:
    key = folder.resolve()
    if key in _HELD or fcntl is None:
        return
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RunFolderError(
            f"{folder} is in use by another sppo-run (pid {owner}); wait for it to end, or start "
            f"this run in another folder"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[key] = fd


def release(folder: Path) -> None:
    """Drops this process's lock on ``folder`` (the lock file stays: deleting it would race)."""
    fd = _HELD.pop(Path(folder).resolve(), None)
    if fd is not None:
        os.close(fd)


def write_config(folder: Path, cfg: Any) -> None:
    """Writes the resolved config as ``config.yaml`` (atomically: a full disk leaves the old one)."""
    from omegaconf import OmegaConf

    text = OmegaConf.to_yaml(OmegaConf.structured(cfg), resolve=True)
    tmp = folder / ".config.yaml.tmp"
    try:
        tmp.write_text(text)
        os.replace(tmp, folder / "config.yaml")
    finally:
        tmp.unlink(missing_ok=True)


class RunFolder:
    """This process's claim on a run folder; a context manager that releases it."""

    def __init__(self, path: Path, owned: bool) -> None:
        self.path, self.owned = Path(path), owned

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.owned:
            release(self.path)


def open_run(cfg: Any, run_dir: Path, rank: int = 0) -> RunFolder:
    """Claims ``run_dir`` for the run ``cfg``: lock, checks, then ``config.yaml``.

    Only rank 0 touches the folder; other ranks get a claim that does nothing.

    Raises:
        RunFolderError: Another process holds the folder, or it holds a run and ``cfg.resume``
            is not set.
        ResumeError: ``cfg.resume`` is set and the folder cannot be continued.
    """
    run_dir = Path(run_dir)
    if rank != 0:
        return RunFolder(run_dir, owned=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    held_before = run_dir.resolve() in _HELD
    _lock(run_dir)
    try:
        if cfg.resume:
            from sppo_runner.resume import check_resume

            check_resume(cfg, run_dir)
        elif found := holds_run(run_dir):
            raise RunFolderError(
                f"{run_dir} already holds a run ({', '.join(found)}); a new run there would mix with it. "
                f"Continue that run with: sppo-run resume={run_dir}, or start this one in another folder "
                f"(without hydra.run.dir every run gets a new one)"
            )
        write_config(run_dir, cfg)
    except BaseException:
        if not held_before:
            release(run_dir)
        raise
    return RunFolder(run_dir, owned=not held_before)
