#!/usr/bin/env bash
# 1- vs 2-rank CPU throughput of `cnn train` (docs/DISTRIBUTED.md), same global batch, on a
# quiet machine: 1 process at batch 2b (1 and 2 OpenMP threads) against mpirun -n 2 at batch b
# (1 thread each), the 2 ranks with the gradients all-reduced in 1 MiB buckets during backward
# (the default) and in one all-reduce after it (--allreduce-bucket-kb 0). The 2026-12-01 run's
# script plus the bucket comparison and a third repeat. Run from the checkout root:
#   bash docs/runs/2026-12-02/distributed/throughput_run.sh build/dev/cnn
set -euo pipefail
cnn=${1:-build/dev/cnn}
data=/work/shared/data/cifar-10-batches-bin
out=$(mktemp -d)
mpirun="mpirun --allow-run-as-root --oversubscribe --mca btl self,vader"
echo "== $(date -u) $(uname -n); nproc $(nproc); uptime: $(uptime)"
lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core"
for model in lenet5 cifar_cnn; do
  for repeat in 1 2 3; do
    common="train --model models/$model.json --data $data --limit 8192 --test-limit 1 --epochs 1 --validation-split 0 --augment-flip none --seed 1 --verbose 2"
    echo "== $model repeat $repeat: 1 process, batch 64, 1 thread"
    OMP_NUM_THREADS=1 $cnn $common --batch-size 64 --save $out/a.safetensors | grep -E "Training|Trained|step"
    echo "== $model repeat $repeat: 1 process, batch 64, 2 threads"
    OMP_NUM_THREADS=2 $cnn $common --batch-size 64 --save $out/b.safetensors | grep -E "Training|Trained|step"
    echo "== $model repeat $repeat: mpirun -n 2, batch 32 per rank (global 64), 1 thread per rank, 1 MiB buckets"
    $mpirun -n 2 -x OMP_NUM_THREADS=1 $cnn $common --batch-size 32 --save $out/c.safetensors | grep -E "Training|Trained|step"
    echo "== $model repeat $repeat: mpirun -n 2, batch 32 per rank (global 64), 1 thread per rank, one all-reduce after backward"
    $mpirun -n 2 -x OMP_NUM_THREADS=1 $cnn $common --batch-size 32 --allreduce-bucket-kb 0 --save $out/d.safetensors | grep -E "Training|Trained|step"
  done
done
echo "== end $(date -u); uptime: $(uptime)"
rm -rf "$out"
