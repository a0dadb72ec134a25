# Benchmarks (included by the top-level Makefile). Results: bench/results/latest.json + a table.
# Root is needed for the overhead and start-up benchmarks (eBPF); see docs/performance.md.
.PHONY: bench bench-tiny

bench: setup
	$(SUDO) $(PY) -m bench

# Seconds, numbers meaningless: checks that every benchmark still runs (also tests/bench/).
bench-tiny: setup
	$(SUDO) $(PY) -m bench --tiny
