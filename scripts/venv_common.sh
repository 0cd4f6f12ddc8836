# Sourced by setup_venv.sh and setup_vllm_venv.sh: what both installs share.
#
#   venv_start VENV LOCK LOCK_IN   creates VENV with $PYTHON (default python3) if needed, installs
#                                  the lock's uv into it with pip, sets py, uv, have_python,
#                                  lock_python, torch_version and torch_sources, and exports uv's
#                                  settings.
#   locked_version LOCK NAME       NAME's version in LOCK.

locked_version() { sed -n "s/^$2==\([^ ]*\).*/\1/p" "$1"; }

venv_start() {
  local venv=$1 lock=$2 lock_in=$3
  py=$venv/bin/python
  uv=$venv/bin/uv
  torch_version=$(locked_version "$lock" torch)
  lock_python=$(sed -n 's/^# python: \([0-9.]*\).*/\1/p' "$lock_in")
  [ -x "$py" ] || "${PYTHON:-python3}" -m venv "$venv"
  have_python=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  "$py" -m pip install -q --disable-pip-version-check "uv==$(locked_version "$lock" uv)"
  # The CPU build of torch: from /opt/wheels where that folder holds it, else PyTorch's CPU index.
  if compgen -G "/opt/wheels/torch-$torch_version-*.whl" >/dev/null; then
    torch_sources=(--find-links /opt/wheels)
  else
    torch_sources=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
  fi
  export UV_LINK_MODE=${UV_LINK_MODE:-copy}
  # Byte-compile at install time as pip does: with PYTHONDONTWRITEBYTECODE set (as on this
  # machine), nothing would ever be compiled, and every import of torch and transformers would
  # take 3x longer.
  export UV_COMPILE_BYTECODE=1
}
