"""A built wheel carries conf/ and runs from any folder (issue #12, item 9).

The whole path (a fresh venv from the lock, the ``sppo-run`` console script, two steps) is
``scripts/check_wheel.py``; it takes over a minute, so the suite checks the wheel's contents and
runs the installed package (``--cfg job`` and one step) from another folder.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, cli_env

UV = Path(sys.executable).parent / "uv"
pytestmark = pytest.mark.slow
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "conf", "src")


def build_wheel(dest: Path) -> Path:
    """Builds the project's wheel from a copy of its sources (the working tree stays clean)."""
    tree = dest / "tree"
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            tree.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tree / name)
    out = subprocess.run([str(UV), "build", "--wheel", "--no-build-isolation", "--python", sys.executable,
                          "-o", str(dest / "dist"), str(tree)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (dest / "dist").glob("sppo_runner-*.whl")
    return wheel


@pytest.mark.skipif(not UV.exists() or not all(importlib.util.find_spec(m) for m in ("setuptools", "wheel")),
                    reason="needs uv, setuptools and wheel in the venv (requirements/lock.txt has them)")
def test_a_built_wheel_ships_conf_and_runs_from_another_folder(tmp_path):
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = {f"sppo_runner/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    assert conf and conf <= names, sorted(conf - names)[:5]
    assert "sppo_runner/assets/policy/model.safetensors" in names
    site = tmp_path / "site"
    out = subprocess.run([str(UV), "pip", "install", "-q", "--no-deps", "--target", str(site), "--python",
                          sys.executable, str(wheel)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The installed package (first on the path), not the checkout, run as the sppo-run entry point does.
    main = "import sys, sppo_runner.cli as c; print('CONF', c.CONF_DIR, flush=True); sys.argv[0] = 'sppo-run'; c.train_main()"
    env = cli_env(PYTHONPATH=str(site))
    env.pop("SPPO_CONF_DIR", None)
    out = subprocess.run([sys.executable, "-c", main, "--cfg", "job"], cwd=elsewhere, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"CONF {site / 'sppo_runner' / 'conf'}" in out.stdout and "algorithm:\n  name: sppo" in out.stdout
    small = ["trainer.steps=1", "logger.wandb.mode=disabled", "logger.progress=false", "data.prompts_per_step=4",
             "eval.n_problems=4", "eval.k=1", "eval.greedy=false", "rollout.max_new_tokens=8", "verifier.workers=1",
             "trainer.threads=1", "rollout.backend=hf", "trainer.checkpoint_every=0"]
    out = subprocess.run([sys.executable, "-c", main, *small], cwd=elsewhere, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (summary,) = (elsewhere / "outputs").glob("*/*/summary.json")
    assert json.loads(summary.read_text())["steps"] == 1
