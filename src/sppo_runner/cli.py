"""Thin Hydra entry points: compose, validate, call the importable functions. Nothing else.

``sppo-run`` trains (``run.run``), ``sppo-eval`` evaluates (``evaluation_cli.run_eval``),
``sppo-compare`` writes a comparison report (``compare.main``), ``sppo-plan`` prints the
memory plan (``distributed.memory.main``).

Errors a user can fix (:class:`~sppo_runner.errors.UserError`, a missing file) print one line
that says what to do and exit with 2; the traceback goes to the run's log file only (or to the
terminal with ``HYDRA_FULL_ERROR=1``). Anything else is a bug: one line naming the log, exit 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from pathlib import Path


def _conf_dir() -> str:
    """``conf/`` shipped inside the package (an installed wheel), else the source tree's."""
    here = Path(__file__).resolve().parent
    if (here / "conf" / "config.yaml").is_file():
        return str(here / "conf")
    return str(here.parents[1] / "conf")


CONF_DIR = os.environ.get("SPPO_CONF_DIR") or _conf_dir()
log = logging.getLogger("sppo_runner")


def _register() -> None:
    from omegaconf import OmegaConf

    from sppo_runner import rundir
    from sppo_runner.config import register_configs

    register_configs()
    for name, fn in (("sppo_run_dir", rundir.resolve_run_dir), ("sppo_new_dir", rundir.resolve_new_dir),
                     ("sppo_job_subdir", rundir.resolve_job_subdir)):
        if not OmegaConf.has_resolver(name):
            # Cached, so that Hydra copies the value into every job of a sweep (also other launchers').
            OmegaConf.register_new_resolver(name, fn, use_cache=True)


def _log_files() -> list[str]:
    return [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def _to_log_only(err: BaseException) -> None:
    """Writes the traceback to the log files (not the terminal: the one line there is enough)."""
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(logging.LogRecord("sppo_runner", logging.ERROR, __file__, 0, text, None, None))


def _message(err: BaseException, run_dir: Path | None) -> tuple[str, int]:
    """(the line to print, the exit status) for an error that ended a command."""
    from sppo_runner.errors import DiskFullError, UserError, is_disk_full

    if is_disk_full(err) and not isinstance(err, DiskFullError):
        from sppo_runner.checkpoint import latest

        ckpt = latest(run_dir) if run_dir else None
        then = f"continue from {ckpt.name} with: sppo-run resume={run_dir}" if ckpt else "start the run again"
        return f"the disk is full ({err}); free some space, then {then}", 2
    if isinstance(err, (UserError, FileNotFoundError)):
        return str(err), 2
    logs = _log_files()
    where = f"the traceback is in {logs[0]}" if logs else "HYDRA_FULL_ERROR=1 prints the traceback"
    return f"{type(err).__name__}: {err} (an unexpected error: {where})", 1


@contextlib.contextmanager
def reported(prog: str, run_dir: Path | None = None):
    """Turns errors into one line on stderr and an exit status (see the module docstring).

    A run refused at start (bad config, busy or finished folder) takes away the folder that
    this process created for it, so failed starts leave nothing behind.
    """
    from sppo_runner import rundir
    from sppo_runner.config import ConfigError
    from sppo_runner.errors import ResumeError, RunFolderError

    try:
        yield
    except KeyboardInterrupt as err:
        _to_log_only(err)
        where = f" (sppo-run resume={run_dir} continues from the latest checkpoint, if any)"
        print(f"\n{prog}: interrupted, stopped at once" + (where if run_dir and prog == "sppo-run" else ""),
              file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - every error ends as one line; the traceback goes to the log
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _to_log_only(err)
        text, status = _message(err, run_dir)
        if run_dir is not None and isinstance(err, (ConfigError, ResumeError, RunFolderError)):
            rundir.remove_if_created(run_dir)
        print(f"{prog}: " + " ".join(text.split()), file=sys.stderr)
        sys.exit(status)


def _resumed_config(cfg, resume: str):
    """The saved config of the run being resumed, with this command's explicit overrides on top."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from sppo_runner.config import Config
    from sppo_runner.errors import ResumeError

    saved = Path(resume) / "config.yaml"
    if not saved.exists():
        raise ResumeError(f"resume={resume}: not a sppo-run folder ({saved} not found)")
    try:
        base = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(saved))
    except OmegaConfBaseException as err:  # written by another version, or edited by hand
        raise ResumeError(f"resume={resume}: {saved} does not fit this version's settings: "
                          f"{' '.join(str(err).split())}") from err
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    for o in overrides:
        # Take the value as Hydra parsed it into this command's composed config.
        key = o.partition("=")[0].lstrip("+~")
        OmegaConf.update(base, key, OmegaConf.select(cfg, key), merge=False)
    base.resume = resume
    return base


def _train(cfg) -> None:
    import signal

    from hydra.core.hydra_config import HydraConfig

    from sppo_runner.config import to_object
    from sppo_runner.config_checks import check_known_keys

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    with reported("sppo-run", run_dir):
        check_known_keys(cfg)  # before the resume merge, which would drop an unknown key silently
        if cfg.resume:
            cfg = _resumed_config(cfg, cfg.resume)
        if cfg.logger.wandb.group is None and hc.mode.name == "MULTIRUN":
            # Runs of one sweep share a W&B group named after the sweep folder.
            cfg.logger.wandb.group = Path(hc.sweep.dir).name
        config = to_object(cfg)
        config.run_dir = str(run_dir)
        # After the checks: a bad config fails before torch loads.
        from sppo_runner.distributed import launch
        from sppo_runner.run import run

        ranks = launch.torchrun_args(config, hc)  # several ranks asked for: start them under torchrun
        with launch.explain_failures(run_dir, config.distributed.timeout_s):
            if ranks:
                summary = launch.relaunch(ranks, launch.job_overrides(hc, config), run_dir)
            else:
                summary = run(config, run_dir)
    if summary.get("stop_reason") == "interrupted":
        # Exit instead of returning so that a -m sweep stops too: 128 + the signal (130 for Ctrl-C).
        sys.exit(128 + int(summary.get("signal") or signal.SIGINT))


def _validate_printed_config(argv: list[str], config_name: str) -> None:
    """``--cfg job`` / ``--cfg all``: refuse a config that a run would refuse, before Hydra prints it.

    Only what the config alone decides is checked (keys, values, ranges); what needs the
    machine or the models (a CUDA device, the context length) is checked when a run starts.
    """
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(argv)
    if args.cfg not in ("job", "all") or args.multirun or args.config_path or args.config_dir:
        return
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from sppo_runner.config import to_object

    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(args.config_name or config_name, overrides=args.overrides)
    except (HydraException, ValueError):
        return  # Hydra reports composition errors itself, in its own words
    with reported("sppo-run"):
        to_object(cfg)  # the compose API leaves Hydra's own node out


def train_main() -> None:
    """``sppo-run``: train one run (or a ``-m`` sweep)."""
    import hydra

    _register()
    _validate_printed_config(sys.argv[1:], "config")
    hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")(_train)()


def eval_main() -> None:
    """``sppo-eval``: evaluate a policy on one or more benchmarks."""
    import hydra

    from sppo_runner.evaluation_cli import eval_app

    _register()
    hydra.main(config_path=CONF_DIR, config_name="eval_config", version_base="1.3")(eval_app)()


def plan_main() -> None:
    """``sppo-plan``: the per-GPU memory plan of a config (no weights are loaded)."""
    from sppo_runner.distributed.memory import main

    sys.exit(main(sys.argv[1:]))


def compare_main() -> None:
    """``sppo-compare``: compare runs (a multirun folder or several run folders)."""
    from sppo_runner.compare import main

    main(sys.argv[1:])
