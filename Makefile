# The README's two commands: `make demo` and `make test`. Both create .venv when absent and
# install every package at the version pinned in requirements/lock.txt (scripts/setup_venv.sh).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARGS   ?=
# `make lock` keeps the lock's versions where pyproject.toml still allows them; UPGRADE=1 takes
# the newest releases.
UPGRADE ?=
LOCK_PYTHON := $(shell sed -n 's/^\# python: \([0-9.]*\).*/\1/p' requirements/lock.in)

.PHONY: demo test test-latest install lock run clean

$(VENV)/.installed: pyproject.toml requirements/lock.txt scripts/setup_venv.sh
	PYTHON=$(PYTHON) bash scripts/setup_venv.sh $(VENV) locked
	@touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/sppo-run $(ARGS)

# `make run ARGS="algorithm=grpo seed=3"`: sppo-run from the project's venv.
run: install
	$(VENV)/bin/sppo-run $(ARGS)

test: install
	$(PY) -m pytest -q $(ARGS)

# The suite against the newest releases that pyproject.toml's floors allow, in a venv of its own,
# so that drift is seen on purpose (the lock test is skipped there, with that reason).
test-latest:
	PYTHON=$(PYTHON) bash scripts/setup_venv.sh .venv-latest latest
	.venv-latest/bin/pip freeze --exclude-editable | sed 's/^/  /'
	.venv-latest/bin/python -m pytest -q $(ARGS)

# Resolves requirements/lock.txt from pyproject.toml (with the dev extra) and requirements/lock.in.
lock: install
	$(VENV)/bin/uv pip compile -q pyproject.toml requirements/lock.in --extra dev \
	  --find-links /opt/wheels --python-version $(LOCK_PYTHON) --python-platform x86_64-manylinux_2_28 \
	  $(if $(UPGRADE),--upgrade) --output-file requirements/lock.txt

clean:
	rm -rf $(VENV) .venv-latest build src/*.egg-info .pytest_cache
