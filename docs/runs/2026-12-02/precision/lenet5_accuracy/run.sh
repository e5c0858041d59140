#!/usr/bin/env bash
# [bf16]: LeNet-5's test accuracy under the bf16 and fp32 policies, same recipe (models/lenet5.json:
# 10 epochs, batch 32, Adam, cosine, random flips), 3 seeds each, on the CPU path (which rounds
# the products' operands to bf16 exactly as the GPU's policy does; the tensor-core kernels are
# the GPU's, not run here). Run from the checkout root:
#   bash docs/runs/2026-12-02/precision/lenet5_accuracy/run.sh build/dev/cnn > docs/runs/2026-12-02/precision/lenet5_accuracy/train.log
set -euo pipefail
cnn=${1:-build/dev/cnn}
data=/work/shared/data/cifar-10-batches-bin
out=$(mktemp -d)
echo "== $(date -u) $(uname -n); nproc $(nproc); uptime: $(uptime); commit $(git rev-parse --short HEAD)"
for seed in 1 2 3; do
  for precision in fp32 bf16; do
    echo "== lenet5 seed $seed precision $precision"
    $cnn train --model models/lenet5.json --data "$data" --seed "$seed" --precision "$precision" --verbose 2 \
      --save "$out/lenet5_${precision}_s$seed.safetensors"
  done
done
echo "== end $(date -u)"
rm -rf "$out"
