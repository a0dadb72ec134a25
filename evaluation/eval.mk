# Evaluation against the real OpenClaw (evaluation/README.md). Included by the top-level Makefile.
EVAL_OUT ?= evaluation/results/latest
EVAL_MODE ?= both
# The rule packs (columns): default = rules.json with the evaluation's analysis values (indexed
# history), original = config/rules.eval.json (the parity run); both = default, then original.
EVAL_PACK ?= both
EVAL_PACKS = $(if $(filter both,$(EVAL_PACK)),default original,$(EVAL_PACK))

.PHONY: eval eval-install eval-overhead

# Node 24 + openclaw into evaluation/node/ (pinned, idempotent), the casa-agent user, the fake fs.
eval-install: setup
	@$(SUDO) evaluation/install.sh

# The 30 cases, through the gateway and in --local mode, with CASA running, once per rule pack
# (EVAL_PACK); <pack>/summary.json per column + summary.md with both.
# Exits non-zero if a case that passes in evaluation/baseline.json (its column's) fails now.
eval: eval-install
	@set -e; for pack in $(EVAL_PACKS); do \
	  $(SUDO) $(PY) -m evaluation.runner --pack $$pack --mode $(EVAL_MODE) --out $(EVAL_OUT); done
	$(SUDO) $(PY) -m evaluation.score --results $(EVAL_OUT) --pack $(EVAL_PACK)

# The six overhead workloads as OpenClaw turns, monitored vs not, alternated: overhead.json + overhead.md.
eval-overhead: eval-install
	$(SUDO) $(PY) -m evaluation.overhead --out $(EVAL_OUT)

# The attack suite (evaluation/attacks, evaluation/README.md): every scenario in its own sandbox, as
# root and as the unprivileged casa-attack, through the real stack; writes
# evaluation/results/attacks/latest.json and the attack-suite section of evaluation/RESULTS.md.
# ATTACK_RULES=config/rules.original.json measures another rule pack. Exits non-zero only when a
# run is invalid (hygiene self-check, effects, collection); detection misses are the measurement.
ATTACK_RULES ?= rules.json
.PHONY: eval-attacks
eval-attacks: setup
	$(SUDO) $(PY) -m evaluation.attacks --rules $(ATTACK_RULES) --snapshot

# A subset of the attack suite through the real OpenClaw (evaluation/README.md): each scenario is one
# OpenClaw turn as casa-agent whose exec tool call is the scenario's script, in the attack suite's
# sandbox, gateway then --local; writes evaluation/results/attacks/openclaw.json and the OpenClaw block
# of the attack-suite section of evaluation/RESULTS.md. ATTACK_OPENCLAW_MODE=gateway|local|both.
ATTACK_OPENCLAW_MODE ?= both
.PHONY: eval-attacks-openclaw
eval-attacks-openclaw: eval-install
	$(SUDO) $(PY) -m evaluation.attacks.openclaw --rules $(ATTACK_RULES) --mode $(ATTACK_OPENCLAW_MODE) --snapshot
