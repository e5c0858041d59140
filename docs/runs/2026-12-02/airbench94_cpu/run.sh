#!/usr/bin/env bash
# airbench94 on the CPU, shortened as docs/RESULTS.md's run (5,000 training images, 8 epochs,
# batch 256 at lr 0.375, 2,000 test images with TTA): the model file before the 2026-12-02
# fidelity changes (airbench94_before.json: glorot_uniform convs and head, equal TTA weights)
# and after (airbench94_after.json, models/airbench94.json at 81a1366: airbench's
# PyTorch-default-plus-identity conv init, PyTorch's Linear init, airbench's TTA weights), and
# with airbench's lookahead too (lookahead: models/airbench94.json since), same seed. Run from
# the checkout root, naming the variants (train.log: before after; train_lookahead.log: lookahead):
#   bash docs/runs/2026-12-02/airbench94_cpu/run.sh build/dev/cnn before after > docs/runs/2026-12-02/airbench94_cpu/train.log 2>&1
set -euo pipefail
cnn=${1:-build/dev/cnn}
shift || true
variants=${*:-before after lookahead}
here=docs/runs/2026-12-02/airbench94_cpu
data=/work/shared/data/cifar-10-batches-bin
echo "== $(date -u) $(uname -n); nproc $(nproc); uptime: $(uptime); commit $(git rev-parse --short HEAD)"
for variant in $variants; do
  case $variant in
    before | after) model=$here/airbench94_$variant.json ;;
    lookahead) model=models/airbench94.json ;;
    *) echo "unknown variant $variant (before, after, lookahead)"; exit 2 ;;
  esac
  echo "== $variant: $model"
  $cnn train --model "$model" --data "$data" --limit 5000 --test-limit 2000 --epochs 8 --batch-size 256 --lr 0.375 \
    --validation-split 0 --seed 1 --verbose 2 --log "$here/$variant.csv" --save "/tmp/airbench94_cpu_$variant.safetensors"
done
echo "== end $(date -u)"
