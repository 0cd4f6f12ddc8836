"""Thin Hydra entry points: compose, validate, call the importable functions. Nothing else.

``sppo-run`` trains (``run.run``), ``sppo-eval`` evaluates (``evaluation_cli.run_eval``),
``sppo-compare`` writes a comparison report (``compare.main``), ``sppo-plan`` prints the
memory plan (``distributed.memory.main``).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

CONF_DIR = os.environ.get("SPPO_CONF_DIR") or str(Path(__file__).resolve().parents[2] / "conf")
log = logging.getLogger("sppo_runner")


def _run_dir(resume: str | None) -> str:
    """Hydra's run folder: the resumed run's own folder, else ``outputs/<date>/<time>``."""
    if resume:
        return str(Path(resume))
    from sppo_runner.distributed.launch import run_stamp

    return f"outputs/{run_stamp()}"  # the same on every rank of a torchrun job


def _register() -> None:
    from omegaconf import OmegaConf

    from sppo_runner.config import register_configs

    register_configs()
    if not OmegaConf.has_resolver("sppo_run_dir"):
        OmegaConf.register_new_resolver("sppo_run_dir", _run_dir)


def _fail(err: Exception) -> None:
    print(f"sppo-run: {err}", file=sys.stderr)
    sys.exit(2)


def _resumed_config(cfg, resume: str):
    """The saved config of the run being resumed, with this command's explicit overrides on top."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from sppo_runner.config import Config

    saved = Path(resume) / "config.yaml"
    if not saved.exists():
        raise FileNotFoundError(f"resume={resume}: {saved} not found (is this a sppo-run output folder?)")
    base = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(saved))
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    for o in overrides:
        # Take the value as Hydra parsed it into this command's composed config.
        key = o.partition("=")[0].lstrip("+~")
        OmegaConf.update(base, key, OmegaConf.select(cfg, key), merge=False)
    base.resume = resume
    return base


def _train(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from sppo_runner.config import ConfigError, to_object
    from sppo_runner.distributed import launch
    from sppo_runner.run import run

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    try:
        if cfg.resume:
            cfg = _resumed_config(cfg, cfg.resume)
        if cfg.logger.wandb.group is None and hc.mode.name == "MULTIRUN":
            # Runs of one sweep share a W&B group named after the sweep folder.
            cfg.logger.wandb.group = Path(hc.sweep.dir).name
        config = to_object(cfg)
    except (ConfigError, FileNotFoundError) as err:
        _fail(err)
    config.run_dir = str(run_dir)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(config), resolve=True))
    try:
        ranks = launch.torchrun_args(config, hc)  # several ranks asked for: start them under torchrun
        with launch.explain_failures(run_dir, config.distributed.timeout_s):
            if ranks:
                summary = launch.relaunch(ranks, launch.job_overrides(hc, config), run_dir)
            else:
                summary = run(config, run_dir)
    except (ConfigError, launch.RankFailure) as err:
        _fail(err)
    if summary.get("stop_reason") == "interrupted":
        # Exit instead of returning so that a -m sweep stops too (128 + SIGINT).
        sys.exit(130)


def train_main() -> None:
    """``sppo-run``: train one run (or a ``-m`` sweep)."""
    import hydra

    _register()
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
