# CASA — `make run` and `make test` are the two commands a newcomer needs (see README.md).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
SUDO  := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup run test test-fast clean help

help:
	@echo "make run            set up if needed, then run the whole stack under supervisord (Ctrl-C stops it)"
	@echo "make test           set up if needed, then run the whole test suite"
	@echo "make bench          benchmarks: bench/results/latest.json and a table (docs/performance.md)"
	@echo "make eval           the 30-case evaluation against the real OpenClaw (evaluation/README.md)"
	@echo "make eval-overhead  the six overhead workloads, monitored vs not"
	@echo "make eval-install   only the pinned Node 24 + OpenClaw into evaluation/node/"
	@echo "make eval-attacks   the attack suite: malicious and benign scenarios, root and unprivileged (evaluation/README.md)"
	@echo "make eval-attacks-openclaw  a subset of the attack suite through the real OpenClaw (gateway and --local)"

# setup.sh is idempotent and fast once done (about a second): it also recreates /run/casa,
# which does not survive a reboot.
setup:
	@$(SUDO) ./setup.sh

run: setup
	$(SUDO) $(VENV)/bin/supervisord -n -c supervisord.conf

test: setup
	$(SUDO) $(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not root and not stack and not openclaw"

clean:
	rm -rf $(VENV) .pytest_cache

# Evaluation (evaluation/eval.mk) and benchmark (bench/bench.mk) targets live beside their code.
-include evaluation/eval.mk
-include bench/bench.mk
