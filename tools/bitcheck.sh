#!/usr/bin/env bash
# Do two builds of `cnn` train bit for bit alike on the CPU? For refactors that must not change
# the arithmetic. Runs the same fixed-seed `cnn train` cases with each binary and compares the
# saved weights (cmp of the .safetensors files) and the printed output (timings masked).
#
#   tools/bitcheck.sh OLD/cnn NEW/cnn [CIFAR-10 folder]   # exit 0: every case IDENTICAL
#
# Cases: LeNet-5 RGB (Adam, cosine, flips) and grayscale, the CLI's optimizer/schedule/
# augmentation/EMA/TTA flags, cifar_cnn, airbench94 (patch whitening, BatchNorm, GELU,
# onecycle, alternate flips, translate, TTA), a saved model trained further with another
# optimizer, and a checkpoint resumed. A few hundred images each: about 10 s per binary.
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: tools/bitcheck.sh OLD/cnn NEW/cnn [CIFAR-10 folder]" >&2; exit 2; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OLD="$(realpath "$1")"; NEW="$(realpath "$2")"
DATA="${3:-$("$NEW" data-dir)}"
WORK="$(mktemp -d /tmp/bitcheck.XXXXXX)"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
M="$ROOT/models"
cases=(
  "lenet5|--model $M/lenet5.json --limit 600 --test-limit 100 --epochs 2 --seed 7"
  "lenet5_gray|--model $M/lenet5_gray.json --limit 600 --test-limit 100 --epochs 2 --seed 3"
  "lenet5_flags|--model $M/lenet5.json --limit 400 --test-limit 50 --epochs 2 --optimizer sgd --momentum 0.9 --lr 0.02 --lr-schedule step --augment-translate 2 --augment-flip alternate --augment-cutout 4 --ema 0.9 --tta-flip --validation-split 0.2"
  "cifar_cnn|--model $M/cifar_cnn.json --limit 128 --test-limit 50 --epochs 1 --batch-size 64 --seed 5"
  "airbench94|--model $M/airbench94.json --limit 192 --test-limit 50 --epochs 1 --batch-size 64"
  "from_saved|--model DEST/lenet5_gray.safetensors --limit 300 --test-limit 50 --epochs 1 --optimizer adam --lr 0.001"
  "ckpt_first|--model $M/lenet5.json --limit 300 --test-limit 50 --epochs 1 --seed 9 --checkpoint DEST/run.ckpt"
  "ckpt_resume|--resume DEST/run.ckpt --limit 300 --test-limit 50 --epochs 2"
)
run_all() {  # binary, folder
  local cnn="$1" dest="$2"
  mkdir -p "$dest"
  for c in "${cases[@]}"; do
    local name="${c%%|*}" args="${c#*|}"
    args="${args//DEST/$dest}"
    # shellcheck disable=SC2086
    (cd "$dest" && "$cnn" train --data "$DATA" --verbose 2 $args --save "$dest/$name.safetensors" >"$dest/$name.raw" 2>&1
     echo "exit $?" >>"$dest/$name.raw")
    # timings masked ("13ms", "1ms/step", "0.0 s"), the folder's own name too
    sed -E "s#$dest#DIR#g; s/[0-9]+(\.[0-9]+)?(ms|us|s)(\/step)?/T/g; s/[0-9]+(\.[0-9]+)? s\b/T s/g" "$dest/$name.raw" >"$dest/$name.out"
  done
}
run_all "$OLD" "$WORK/old"
run_all "$NEW" "$WORK/new"
status=0
for c in "${cases[@]}"; do
  name="${c%%|*}"
  problems=()
  cmp -s "$WORK/old/$name.safetensors" "$WORK/new/$name.safetensors" || problems+=("weights differ")
  diff -q "$WORK/old/$name.out" "$WORK/new/$name.out" >/dev/null || problems+=("output differs: diff $WORK/old/$name.out $WORK/new/$name.out")
  grep -q "^exit 0$" "$WORK/new/$name.raw" || problems+=("new run failed: $WORK/new/$name.raw")
  if ((${#problems[@]})); then echo "DIFFERENT  $name: ${problems[*]}"; status=1; else echo "IDENTICAL  $name"; fi
done
echo "outputs in $WORK"
exit $status
