"""CASA benchmarks (`make bench`, `python -m bench`): see bench/__main__.py and docs/performance.md."""
