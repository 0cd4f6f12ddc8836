# The README's two commands: `make demo` and `make test`. Both create .venv when absent.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# CPU machines get the CPU wheel; GPU machines keep (or get) a CUDA build of torch >= 2.4.
TORCH_CPU ?= torch==2.13.0+cpu
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
ARGS ?=

.PHONY: demo test install install-dev torch bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

torch: $(PY)
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "torch already installed: $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	elif command -v nvidia-smi >/dev/null 2>&1 || [ "$$(uname)" = Darwin ]; then \
	  echo "GPU or macOS machine: torch comes from PyPI with the project"; \
	else \
	  echo "No CUDA: installing the CPU build of torch ($(TORCH_CPU))"; \
	  $(PIP) install -q "$(TORCH_CPU)" 2>/dev/null || \
	  $(PIP) install -q "$(TORCH_CPU)" --extra-index-url $(TORCH_CPU_INDEX); \
	fi

$(VENV)/.installed: pyproject.toml | torch
	$(PIP) install -q -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PIP) install -q -e ".[dev]"
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(VENV)/bin/sppo-run $(ARGS)

test: install-dev
	$(PY) -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
