#!/usr/bin/env bash
# CPU against CUDA for a distillation step and npp_refine (scripts/cuda_check.py says what
# is compared and the tolerances). On a GPU machine, from the repository root:
#   bash scripts/cuda_check.sh            # sets up .venv when missing, under 10 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
mkdir -p "${OUT:-runs}"
timeout 540 .venv/bin/python scripts/cuda_check.py | tee "${OUT:-runs}/cuda_check.json"
