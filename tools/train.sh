#!/usr/bin/env bash
# Sets up and runs the main job on a fresh machine: installs dependencies, builds (with the
# CUDA backend when nvcc is present), finds CIFAR-10 (or downloads it), trains LeNet-5 with a
# progress bar, saves the model to out/ and evaluates it on the test set.
#   bash tools/train.sh                                   # LeNet-5 (RGB), 10 epochs, CPU
#   bash tools/train.sh --model models/cifar_cnn.json     # any `cnn train` flags pass through
#   bash tools/train.sh --device cuda
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target cnn_cli
args=("$@")
has_model=0
for a in "${args[@]}"; do [ "$a" = "--model" ] && has_model=1; done
[ $has_model = 1 ] || args=(--model models/lenet5.json "${args[@]}")
if ! ./build/cnn data-dir >/dev/null 2>&1; then
  echo "CIFAR-10 not found; downloading it to ./data"
  bash tools/get_cifar10.sh data
fi
exec ./build/cnn train "${args[@]}"
