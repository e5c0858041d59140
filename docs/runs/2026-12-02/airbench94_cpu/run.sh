#!/usr/bin/env bash
# airbench94 on the CPU, shortened as docs/RESULTS.md's run (5,000 training images, 8 epochs,
# batch 256 at lr 0.375, 2,000 test images with TTA): the model file before the 2026-12-02
# fidelity changes (airbench94_before.json: glorot_uniform convs and head, equal TTA weights)
# and after (models/airbench94.json: airbench's PyTorch-default-plus-identity conv init,
# PyTorch's Linear init, airbench's TTA weights), same seed. Run from the checkout root:
#   bash docs/runs/2026-12-02/airbench94_cpu/run.sh build/dev/cnn > docs/runs/2026-12-02/airbench94_cpu/train.log 2>&1
set -euo pipefail
cnn=${1:-build/dev/cnn}
here=docs/runs/2026-12-02/airbench94_cpu
data=/work/shared/data/cifar-10-batches-bin
echo "== $(date -u) $(uname -n); nproc $(nproc); uptime: $(uptime); commit $(git rev-parse --short HEAD)"
for variant in before after; do
  model=models/airbench94.json
  [ "$variant" = before ] && model=$here/airbench94_before.json
  echo "== $variant: $model"
  $cnn train --model "$model" --data "$data" --limit 5000 --test-limit 2000 --epochs 8 --batch-size 256 --lr 0.375 \
    --validation-split 0 --seed 1 --verbose 2 --log "$here/$variant.csv" --save "/tmp/airbench94_cpu_$variant.safetensors"
done
echo "== end $(date -u)"
