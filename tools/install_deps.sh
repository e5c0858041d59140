#!/usr/bin/env bash
# Installs the Debian packages CNNFromScratch builds and tests with (idempotent: only what
# is missing is installed). Used by tools/train.sh and .ci/run. With --ci it also installs the
# tools only CI's robustness steps use: clang with libFuzzer and the sanitizer runtimes (the
# fuzzers in tests/fuzz), clang's OpenMP, and valgrind.
set -euo pipefail
ci_packages=()
if [ "${1:-}" = "--ci" ]; then
  ci_packages=(
    clang-14 libclang-rt-14-dev libomp-14-dev   # tests/fuzz: clang++-14 -fsanitize=fuzzer,address,undefined
    valgrind                                    # memcheck over a subset of the CPU tests
  )
fi
packages=(
  cmake ninja-build g++ pkg-config       # build
  libgtest-dev libgmock-dev              # tests (GoogleTest)
  nlohmann-json3-dev libcli11-dev        # model JSON, command line
  libstb-dev zlib1g-dev                  # images (stb_image, stb_image_write, stb_truetype), .gz files
  fonts-dejavu-core                      # text in pictures
  protobuf-compiler libprotobuf-dev      # ONNX export and TensorBoard event files (protobuf schemas)
  openmpi-bin libopenmpi-dev             # data-parallel training (CNN_MPI) and its 2-rank tests
  "${ci_packages[@]}"
  ${CNN_EXTRA_PACKAGES:-}
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install_deps: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq || true
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
