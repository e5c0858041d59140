#!/usr/bin/env bash
# Builds the GPU binaries here (Release, for one CUDA architecture, default 90 = H100/H200)
# and gathers what tools/gpu_check.sh --prebuilt needs into devbin/ (an ignored folder small
# enough to carry to a GPU machine that lacks this project's build dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-90}
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCNN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null
cmake --build build-gpu -j "$(nproc)"
grep -qx '/devbin/' .git/info/exclude 2>/dev/null || echo '/devbin/' >>.git/info/exclude
rm -rf devbin && mkdir devbin
cp build-gpu/cnn build-gpu/tests/cnn_tests build-gpu/tests/cnn_gpu_tests devbin/
cp -L "$(ldconfig -p | awk '/libstb.so.0 /{print $NF; exit}')" devbin/libstb.so.0
strip devbin/cnn devbin/cnn_tests devbin/cnn_gpu_tests
echo "$PWD" >devbin/source_dir.txt
du -sh devbin
