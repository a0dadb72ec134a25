# Evaluation against the real OpenClaw (evaluation/README.md). Included by the top-level Makefile.
EVAL_OUT ?= evaluation/results/latest
EVAL_MODE ?= both

.PHONY: eval eval-install eval-overhead

# Node 24 + openclaw into evaluation/node/ (pinned, idempotent), the casa-agent user, the fake fs.
eval-install: setup
	@$(SUDO) evaluation/install.sh

# The 30 cases, through the gateway and in --local mode, with CASA running; summary.json + summary.md.
# Exits non-zero if a case that passes in evaluation/baseline.json fails now.
eval: eval-install
	$(SUDO) $(PY) -m evaluation.runner --mode $(EVAL_MODE) --out $(EVAL_OUT)
	$(SUDO) $(PY) -m evaluation.score --results $(EVAL_OUT)

# The six overhead workloads as OpenClaw turns, monitored vs not, alternated: overhead.json + overhead.md.
eval-overhead: eval-install
	$(SUDO) $(PY) -m evaluation.overhead --out $(EVAL_OUT)
