# CASA — `make run` and `make test` are the two commands a newcomer needs (see README.md).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
SUDO  := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup run test test-all test-fast clean help lock

help:
	@echo "make run            set up if needed, then run the whole stack under supervisord (Ctrl-C stops it)"
	@echo "make test           set up if needed, then run the test suite (all but the slow marker, < 20 min)"
	@echo "make test-all       the whole test suite, slow tests too"
	@echo "make bench          benchmarks: bench/results/latest.json and a table (docs/performance.md)"
	@echo "make eval           the 30-case evaluation against the real OpenClaw (evaluation/README.md)"
	@echo "make eval-overhead  the six overhead workloads, monitored vs not"
	@echo "make eval-install   only the pinned Node 24 + OpenClaw into evaluation/node/"
	@echo "make eval-attacks   the attack suite: malicious and benign scenarios, root and unprivileged (evaluation/README.md)"
	@echo "make eval-attacks-openclaw  a subset of the attack suite through the real OpenClaw (gateway and --local)"
	@echo "make lock           recompile requirements.txt / requirements-test.txt (hashes) from the .in files"

# setup.sh is idempotent and fast once done (about a second): it also recreates /run/casa,
# which does not survive a reboot.
setup:
	@$(SUDO) ./setup.sh

run: setup
	$(SUDO) $(VENV)/bin/supervisord -n -c supervisord.conf

# make test: everything but the `slow` marker (long runs another test here already represents),
# within 20 minutes on a 2-core machine; make test-all adds them.
test: setup
	$(SUDO) $(PY) -m pytest -m "not slow"

test-all: setup
	$(SUDO) $(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not root and not stack and not openclaw"

clean:
	rm -rf $(VENV) .pytest_cache

# The hashed locks setup.sh installs with --require-hashes. pip-tools runs in a throwaway venv
# against PyPI alone (no local pip.conf indexes), so the hashes are PyPI's for every platform.
# Pins already in the locks are kept (pip-compile only moves them with --upgrade): edit the .in
# file, then run this to add or change a package.
LOCK_VENV := $(shell mktemp -u /tmp/casa-lock.XXXXXX)
LOCK_ENV  := CUSTOM_COMPILE_COMMAND="make lock" PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_INDEX_URL=https://pypi.org/simple
LOCK_ARGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url
lock:
	python3 -m venv $(LOCK_VENV)
	$(LOCK_ENV) $(LOCK_VENV)/bin/pip install -q pip-tools==7.7.0
	$(LOCK_ENV) $(LOCK_VENV)/bin/pip-compile $(LOCK_ARGS) -o requirements.txt requirements.in
	$(LOCK_ENV) $(LOCK_VENV)/bin/pip-compile $(LOCK_ARGS) -o requirements-test.txt requirements-test.in
	rm -rf $(LOCK_VENV)

# Evaluation (evaluation/eval.mk) and benchmark (bench/bench.mk) targets live beside their code.
-include evaluation/eval.mk
-include bench/bench.mk
