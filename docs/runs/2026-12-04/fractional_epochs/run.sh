#!/usr/bin/env bash
# Fractional epochs and drop_last, ours against the PyTorch twin (tools/bench_torch.py --train
# --our-rng: our initial weights, shuffles and augmentation draws): models/airbench94.json
# (drop_last true) on 1,000 CIFAR-10 images at batch 256, i.e. 3 whole batches an epoch and
# 232 rows left out, for 1.5 epochs: ceil(1.5 x 3) = 5 steps, 3 then 2. Run from the repository
# root with the CPU build in build/dev and Debian's python3-torch.
set -euo pipefail
D=${D:-../shared/data/cifar-10-batches-bin}
flags=(--model models/airbench94.json --data "$D" --limit 1000 --test-limit 512 --epochs 1.5 --batch-size 256
       --seed 1)
echo "== $(date -u) $(hostname); commit $(git rev-parse --short HEAD)"
echo "== ours: build/dev/cnn train ${flags[*]} --verbose 2"
build/dev/cnn train "${flags[@]}" --verbose 2 --save /tmp/frac.safetensors
echo "== PyTorch twin: /usr/bin/python3 tools/bench_torch.py --train (same flags) --our-rng --device cpu"
/usr/bin/python3 tools/bench_torch.py --train "${flags[@]}" --our-rng --device cpu
