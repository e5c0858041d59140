#!/usr/bin/env bash
# Makes (or refreshes) the virtual environment holding the real readers the interop tests check
# our files with: onnx (its checker), onnxruntime (runs the exported models) and tensorboard (its
# event-file reader). Usage: tools/interop_venv.sh [DIR] (default build/interop-venv); prints the
# venv's python, which CMake takes as -DCNN_INTEROP_PYTHON=... to register those tests.
set -euo pipefail
venv="${1:-build/interop-venv}"
python="${CNN_INTEROP_BASE_PYTHON:-python3}"
if ! "$venv/bin/python" -c "import onnx, onnxruntime, tensorboard, numpy" >/dev/null 2>&1; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check onnx onnxruntime tensorboard numpy >&2
fi
echo "$(cd "$venv/bin" && pwd)/python"
