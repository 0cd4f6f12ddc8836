"""A wheel built from the repo, installed in a fresh venv, runs ``sppo-run`` from another folder.

    python scripts/check_wheel.py [--keep DIR] [--steps 2]

1. ``uv build --wheel`` from a copy of the sources (the working tree stays clean);
2. ``uv venv`` + ``uv pip install --constraint requirements/lock.txt <wheel>`` (torch's CPU build
   from /opt/wheels when that folder has it, else from PyTorch's CPU index, as
   ``scripts/setup_venv.sh`` does);
3. from a new empty folder: ``sppo-run --cfg job``, then ``sppo-run trainer.steps=2`` with small
   settings on the embedded model, and checks its ``summary.json``.

Takes a minute or two (mostly the install); ``tests/test_packaging.py`` is the suite's quicker
check. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "conf", "src")
SMALL = ["logger.wandb.mode=disabled", "logger.progress=false", "data.prompts_per_step=8", "eval.n_problems=8",
         "eval.k=2", "rollout.max_new_tokens=16", "verifier.workers=1", "trainer.checkpoint_every=1"]


def sh(cmd: list[str], **kw) -> tuple[float, str]:
    """Runs ``cmd``; returns (seconds, stdout). Exits with its output when it fails."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        sys.exit(f"FAILED ({out.returncode}): {' '.join(cmd)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return time.perf_counter() - t0, out.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="sppo-wheel-"))
    uv = str(Path(sys.executable).parent / "uv")
    tree = work / "tree"
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
                            dirs_exist_ok=True)
        else:
            tree.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tree / name)
    build_s, _ = sh([uv, "build", "--wheel", "--no-build-isolation", "--python", sys.executable, "-o",
                     str(work / "dist"), str(tree)])
    (wheel,) = (work / "dist").glob("sppo_runner-*.whl")
    conf = [n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("sppo_runner/conf/")]
    print(f"built {wheel.name} in {build_s:.1f} s ({len(conf)} files under sppo_runner/conf/)", flush=True)

    venv = work / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    venv_s, _ = sh([uv, "venv", "-q", "--python", sys.executable, str(venv)])
    torch_from = ["--find-links", "/opt/wheels"] if list(Path("/opt/wheels").glob("torch-*.whl")) else \
        ["--extra-index-url", "https://download.pytorch.org/whl/cpu", "--index-strategy", "unsafe-best-match"]
    install_s, _ = sh([uv, "pip", "install", "-q", "--compile-bytecode", "--python", str(venv / "bin" / "python"),
                       "--constraint", str(REPO / "requirements" / "lock.txt"), *torch_from, str(wheel)])
    print(f"fresh venv {venv_s:.1f} s, install {install_s:.1f} s", flush=True)

    elsewhere = work / "elsewhere"
    shutil.rmtree(elsewhere, ignore_errors=True)
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("SPPO_CONF_DIR", "PYTHONPATH", "VIRTUAL_ENV")}
    bin_ = str(venv / "bin" / "sppo-run")
    cfg_s, cfg = sh([bin_, "--cfg", "job"], cwd=elsewhere, env=env)
    assert cfg.startswith("algorithm:"), cfg[:200]
    run_s, _ = sh([bin_, f"trainer.steps={args.steps}", *SMALL], cwd=elsewhere, env=env)
    (summary_path,) = (elsewhere / "outputs").glob("*/*/summary.json")
    summary = json.loads(summary_path.read_text())
    ok = summary["steps"] == args.steps
    print(f"sppo-run --cfg job {cfg_s:.1f} s; sppo-run trainer.steps={args.steps} {run_s:.1f} s in {elsewhere}: "
          f"{summary['steps']} steps, held-out {summary['heldout_accuracy_before']:.3f} -> "
          f"{summary['heldout_accuracy_after']:.3f}", flush=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"ok": ok, "wheel": wheel.name, "conf_files": len(conf), "build_s": round(build_s, 1),
                      "install_s": round(install_s, 1), "cfg_job_s": round(cfg_s, 1), "run_s": round(run_s, 1),
                      "steps": summary["steps"]}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
