# The two commands of the README. Both set up first (idempotent: a second run reuses .venv).
.PHONY: setup demo test bench lint

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/npp demo

test: setup
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python -m pytest --benchmark-only tests/benchmarks

lint: setup
	.venv/bin/ruff check npp_plugin hooks tests
