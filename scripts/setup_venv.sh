#!/usr/bin/env bash
# Creates (or updates) a virtual environment for the project.
#
#   scripts/setup_venv.sh VENV locked    every package at the version in requirements/lock.txt
#   scripts/setup_venv.sh VENV latest    the newest releases the floors in pyproject.toml allow
#
# Installs go through uv (pinned in the lock), which is several times faster than pip here.
# torch: machines without CUDA get the lock's CPU build (from /opt/wheels where that folder holds
# it, else from PyTorch's CPU index); a torch already in the venv (say a CUDA build) is kept;
# machines with `nvidia-smi` get the lock's torch version from PyPI (a CUDA build).
set -euo pipefail

venv=${1:?usage: setup_venv.sh VENV locked|latest}
mode=${2:?usage: setup_venv.sh VENV locked|latest}
lock=requirements/lock.txt
source "$(dirname "$0")/venv_common.sh"
venv_start "$venv" "$lock" requirements/lock.in

if [ "$mode" = locked ] && [ "$have_python" != "$lock_python" ]; then
  echo "NOTE: $lock is resolved for CPython $lock_python; this venv runs $have_python." >&2
  echo "      Installing the newest releases instead (not reproducible). For the locked set use" >&2
  echo "      PYTHON=python$lock_python, or resolve a lock for this Python with 'make lock'." >&2
  mode=latest
fi
sources=("${torch_sources[@]}")

if "$py" -c 'import torch' 2>/dev/null && ! "$py" -c 'import torch; assert "+cpu" in torch.__version__' 2>/dev/null; then
  torch_note="keeping the installed torch $("$py" -c 'import torch; print(torch.__version__)')"
  torch_spec=()
elif command -v nvidia-smi >/dev/null 2>&1; then
  torch_note="GPU machine: torch ${torch_version%+cpu} (CUDA build) from PyPI"
  torch_spec=("torch==${torch_version%+cpu}")
  sources=()
else
  torch_note="CPU machine: torch $torch_version"
  torch_spec=()
fi
echo "setup_venv: $mode install into $venv ($torch_note)"

if [ "$mode" = locked ]; then
  if [ "$torch_note" = "CPU machine: torch $torch_version" ]; then
    # Exactly the lock: anything else in the venv is removed.
    "$uv" pip sync -q --python "$py" "${sources[@]}" "$lock"
  else
    grep -v '^torch==' "$lock" > "$venv/lock-without-torch.txt"
    "$uv" pip install -q --python "$py" "${sources[@]}" -r "$venv/lock-without-torch.txt" "${torch_spec[@]}"
    rm "$venv/lock-without-torch.txt"
  fi
  "$uv" pip install -q --python "$py" --no-deps --no-build-isolation -e .
  # What tests/test_lock.py holds the venv to: the lock, less torch where torch did not come from it.
  if [ "$torch_note" = "CPU machine: torch $torch_version" ]; then
    cp "$lock" "$venv/sppo-lock.txt"
  else
    grep -v '^torch==' "$lock" > "$venv/sppo-lock.txt"
  fi
  rm -f "$venv/sppo-unlocked.txt"
else
  if [ "$torch_note" = "CPU machine: torch $torch_version" ]; then torch_spec=("torch==$torch_version"); fi
  "$uv" pip install -q --upgrade --python "$py" "${sources[@]}" "${torch_spec[@]}" -e ".[dev]"
  echo "installed with the newest releases (setup_venv.sh $mode on Python $have_python), not from $lock" > "$venv/sppo-unlocked.txt"
  rm -f "$venv/sppo-lock.txt"
fi
