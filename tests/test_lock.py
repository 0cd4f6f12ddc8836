"""The test venv holds exactly the packages of requirements/lock.txt, at the locked versions."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from conftest import REPO

VENV = Path(sys.prefix)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a uv/pip-compile lock, keyed by canonical name."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match:
            pins[canonical(match[1])] = match[2]
    return pins


def installed() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}


def requirement_closure(root: str) -> set[str]:
    """Canonical names of ``root`` and everything it requires (without extras), transitively."""
    seen, todo = set(), [root]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [canonical(re.split(r"[ ;<>=!~\[(]", r, 1)[0]) for r in requires if "extra ==" not in r]
    return seen


@pytest.mark.parametrize("lock", ["lock.txt", "lock-vllm.txt"])
def test_lock_lists_pyproject_dependencies(lock):
    """Each lock covers pyproject.toml's dependencies (`make lock` / `make lock-vllm` after a change)."""
    pins = read_pins(REPO / "requirements" / lock)
    text = (REPO / "pyproject.toml").read_text()
    deps = re.findall(r'^\s+"([A-Za-z0-9_.\-]+)[><=~!]', text, flags=re.M)
    assert len(deps) >= 10
    missing = [d for d in deps if canonical(d) not in pins]
    assert not missing, f"pyproject.toml dependencies absent from the lock (run `make lock`): {missing}"
    assert pins["torch"].endswith("+cpu") and pins["uv"] and pins["setuptools"]


def test_venv_matches_lock():
    unlocked = VENV / "sppo-unlocked.txt"
    if unlocked.exists():
        pytest.skip(unlocked.read_text().strip())
    marker = VENV / "sppo-lock.txt"
    assert marker.exists(), (
        f"{VENV} was not made by scripts/setup_venv.sh (`make test` makes it): no {marker.name}"
    )
    pins, have = read_pins(marker), installed()
    # Where torch did not come from the lock (a CUDA build kept or taken from PyPI), its own
    # requirements (nvidia-*, triton) are its installer's business.
    extra_ok = {"sppo-runner"} | (set() if "torch" in pins else requirement_closure("torch"))
    wrong = {n: (v, have.get(n)) for n, v in pins.items() if have.get(n) != v}
    unlisted = sorted(n for n in have if n not in pins and n not in extra_ok)
    assert not wrong, f"locked vs installed versions differ: {wrong}"
    assert not unlisted, f"installed but not in the lock: {unlisted}"
