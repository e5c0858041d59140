#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU (no network needed):
#   1. builds Release for this GPU's architecture,
#   2. runs every test: the CPU tests and the GPU tests,
#   3. runs the GPU tests again under compute-sanitizer memcheck and racecheck,
#   4. trains LeNet-5 for 2 epochs on the GPU on whatever CIFAR-10 batches the data folder has
#      (synthetic data of CIFAR's shape when there are none),
#   5. compares LeNet-5 and the larger CIFAR net on the GPU with the CPU reference (cnn check),
#   6. benches airbench94, the bf16 policy and the tuner,
#   7. compares with PyTorch (tools/compare.sh cuda: default kernels, then CNN_CUDA_CONV_KERNELS
#      fast and tune against the same PyTorch numbers; then tf32 and bf16 on both sides),
#   8. profiles a LeNet-5 step at batch 128 with ncu (the hottest kernels: duration, achieved
#      occupancy, SM and DRAM throughput; default and fast kernels),
# and prints a summary table last.
#
# Parts (GPU_CHECK_PARTS, comma-separated; default all): tests (CPU and GPU tests),
# sanitizers, train, check, bench, compare (fp32), profile, precision (the compare in tf32 and
# bf16). The build (without --prebuilt) runs in every call. A lent machine with a 10-minute
# limit per command runs it in calls, e.g.
#   GPU_CHECK_PARTS=tests,sanitizers,train,check,bench bash tools/gpu_check.sh --prebuilt DIR
#   GPU_CHECK_PARTS=compare,profile bash tools/gpu_check.sh --prebuilt DIR
#   GPU_CHECK_PARTS=precision bash tools/gpu_check.sh --prebuilt DIR
# which write summary-<parts>.txt each (summary.txt when every part ran).
# Debian packages the machine lacks (GoogleTest, nlohmann-json, CLI11, stb, zlib headers) are
# taken from devdeps/root when present (tools/prepare_device_deps.sh makes it).
#   bash tools/gpu_check.sh            # everything (target: under 8 minutes on an H100)
#   SKIP_SANITIZERS=1 bash tools/gpu_check.sh
#   bash tools/gpu_check.sh --prebuilt DIR   # binaries built elsewhere for this GPU (cnn,
#        cnn_tests, cnn_gpu_tests, libstb.so.0 and source_dir.txt in DIR, made by
#        tools/prebuild_gpu.sh): skips configure and build
#
# Raw outputs, small text only, under fixed names that the docs cite (docs/runs/README.md), go to
#   docs/gpu_runs/<date>-<gpu>/     date: UTC YYYY-MM-DD; gpu: nvidia-smi's name without
#                                   "NVIDIA ", lower case, other characters as "-"
#                                   (2026-11-26-h200, 2026-12-02-h100-80gb-hbm3)
# or, when $OUT is set (a lent machine sends $OUT back), $OUT/<date>-<gpu>/: commit that folder
# as docs/gpu_runs/<date>-<gpu>/. The files:
#   machine.txt            GPU name, compute capability, driver, memory; date; commit; how built
#   configure.log, build.log   (not with --prebuilt)
#   cpu-tests.log          the CPU tests (ctest -L cpu; with --prebuilt cnn_tests, less the
#                          tests that need the build machine's paths: the filter is in the log)
#   gpu-tests.log          the GPU test binary, every GPU test ("[  PASSED  ] N tests.")
#   gpu-tests-fast-conv.log  the GPU tests again with CNN_CUDA_CONV_KERNELS=fast ([fast-gpu] kernels)
#   gpu-tests-mma-conv.log   the [bf16] tensor-core convolution tests again, with each
#                          comparison's error and tolerance printed (CNN_GPU_COMPARE_VERBOSE)
#   memcheck.log, racecheck.log   compute-sanitizer over the GPU tests (filters in the logs)
#   train-lenet5-gpu.log   cnn train on the GPU, 2 epochs
#   check-lenet5.log, check-cifar_cnn.log, check-airbench94.log   cnn check tables
#   check-bf16-cifar_cnn.log, check-bf16-airbench94.log   the same under --precision bf16 (the
#                          tensor-core convolutions; advisory: a failure is reported, not fatal)
#   bench-airbench94.log   cnn bench of airbench94 at batch 1024
#   bench-bf16-airbench94.log, bench-bf16-nomma-airbench94.log, bench-bf16-cifar_cnn.log   cnn bench
#                          under --precision bf16, with the tensor cores and with CNN_CUDA_CONV_MMA=0
#                          (the fp32 kernels on rounded operands); advisory
#   bench-tune-lenet5.log  cnn bench --tune of LeNet-5 at batch 128: each conv pass's candidates
#                          timed on this GPU and the kept one ([fast-gpu]); conv-tuning.txt its file
#   compare-cuda/, compare-cuda-fast/, compare-cuda-tune/   tools/compare.sh cuda (table.txt, raw
#                          JSON); fast and tune reuse compare-cuda's PyTorch JSON
#   compare-cuda-tf32/, compare-cuda-bf16/   the same at --precision tf32 / bf16 on both sides
#                          (PyTorch eager and graph; part precision)
#   ncu-lenet5-default.csv, ncu-lenet5-fast.csv   ncu's CSV of every kernel of a 5-step LeNet-5
#                          bench at batch 128; ncu-lenet5-*-top.log the ten hottest (tools/ncu_summary.py)
#   summary.txt            the summary table printed last (summary-<parts>.txt for some parts)
# Scratch files (synthetic data, the trained model) go to out/gpu_check/, never into that folder.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
scratch=out/gpu_check
build=build/gpu
prebuilt=""
[ "${1:-}" = --prebuilt ] && prebuilt=$(cd "$2" && pwd)
jobs=$(nproc)
rows=()
overall=0
all_parts=tests,sanitizers,train,check,bench,compare,profile,precision
parts=${GPU_CHECK_PARTS:-$all_parts}
for p in ${parts//,/ }; do
  case ",$all_parts," in *",$p,"*) ;;
    *) echo "gpu_check: unknown part '$p' in GPU_CHECK_PARTS (${all_parts//,/, })"; exit 2 ;;
  esac
done
part() { [[ ",$parts," == *",$1,"* ]]; }

# step NAME TIMEOUT_SECONDS COMMAND...: runs it with its output in $log_dir/NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS status
  if timeout "$limit" "$@" >"$log_dir/$name.log" 2>&1; then status=PASS; else
    local rc=$?
    status="FAIL (exit $rc)"
    [ $rc = 124 ] && status="FAIL (timed out after ${limit}s)"
    overall=1
  fi
  rows+=("$(printf '%-28s %-28s %5ss' "$name" "$status" $((SECONDS - t0)))")
  echo "== $name: $status ($((SECONDS - t0)) s)"
  [ "${status%% *}" = PASS ] || tail -n 25 "$log_dir/$name.log"
}

# advisory NAME TIMEOUT_SECONDS COMMAND...: a step whose failure is reported but leaves the exit
# status alone (a model the bf16 comparison rejects is a finding, not a broken check).
advisory() {
  local keep=$overall
  step "$@"
  overall=$keep
}

gpu=$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
arch=$(echo "$gpu" | awk -F', ' '{gsub(/\./, "", $2); print $2}')
[ -n "$arch" ] || { echo "gpu_check: no NVIDIA GPU found (nvidia-smi)"; exit 2; }
echo "GPU: $gpu"
gpu_slug=$(echo "${gpu%%,*}" | sed -e 's/^NVIDIA //' | tr '[:upper:]' '[:lower:]' | sed -e 's/[^a-z0-9]\{1,\}/-/g' -e 's/^-//' -e 's/-$//')
run_name=$(date -u +%Y-%m-%d)-$gpu_slug
if [ -n "${OUT:-}" ]; then log_dir=$OUT/$run_name; else log_dir=docs/gpu_runs/$run_name; fi
mkdir -p "$log_dir" "$scratch"
echo "raw outputs: $log_dir/"
summary=$log_dir/summary.txt
[ "$parts" = "$all_parts" ] || summary=$log_dir/summary-${parts//,/-}.txt
{
  echo "gpu (name, compute capability, driver, memory): $gpu"
  echo "date: $(date -u -Iseconds)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo 'unknown (no git here)')"
  if [ -n "$prebuilt" ]; then
    echo "binaries: prebuilt in $prebuilt (built from $(cat "$prebuilt/source_dir.txt" 2>/dev/null))"
  else
    echo "binaries: built here in $build for sm_$arch"
  fi
  echo "host: $(uname -srm), $(nproc) CPUs"
} >"$log_dir/machine.txt"
prefix=()
[ -d devdeps/root/usr ] && prefix=(-DCMAKE_PREFIX_PATH="$PWD/devdeps/root/usr")

if [ -n "$prebuilt" ]; then
  export LD_LIBRARY_PATH="$prebuilt:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  cnn=$prebuilt/cnn
  gpu_tests=$prebuilt/cnn_gpu_tests
  # The binaries know the source folder they were built from; make it resolve here.
  src=$(cat "$prebuilt/source_dir.txt" 2>/dev/null || true)
  [ -n "$src" ] && [ ! -e "$src" ] && mkdir -p "$(dirname "$src")" && ln -s "$PWD" "$src"
  # Not here: the CLI and picture tests (the built CLI and fonts at the build machine's paths)
  # and the kill tests (the crash helper is not among the prebuilt binaries).
  part tests && step gpu-tests 300 "$gpu_tests"
  part tests && step cpu-tests 300 "$prebuilt/cnn_tests" --gtest_filter=-Cli*:Pictures*:CrashSafety*
else
  step configure 300 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCNN_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" -DCNN_WERROR=OFF "${prefix[@]}"
  step build 900 cmake --build "$build" -j "$jobs"
  part tests && step cpu-tests 600 bash -c "cd $build && ctest -L cpu --output-on-failure -j $jobs --timeout 300"
  cnn=$build/cnn
  gpu_tests=$(find "$build" -name cnn_gpu_tests -type f -perm -u+x | head -1)
  part tests && step gpu-tests 300 "$gpu_tests"
fi
if part tests && [ -n "$gpu_tests" ]; then
  step gpu-tests-fast-conv 300 env CNN_CUDA_CONV_KERNELS=fast "$gpu_tests"
  step gpu-tests-mma-conv 300 env CNN_GPU_COMPARE_VERBOSE=1 "$gpu_tests" --gtest_filter='*Mma*:*ConvPolicy*'
fi
if part sanitizers && [ -z "${SKIP_SANITIZERS:-}" ] && [ -n "$gpu_tests" ]; then
  # API errors are expected (the tests provoke out-of-memory and bad copies on purpose), and
  # the caching allocator keeps its blocks until exit, so neither is reported.
  step memcheck 300 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 1 "$gpu_tests" \
    --gtest_filter=-*256*:GpuModel.*
  step racecheck 300 compute-sanitizer --tool racecheck --error-exitcode 1 "$gpu_tests" \
    --gtest_filter=*Softmax*:*DenseChain*:*BiasGrad*:*Metric*:*BatchNorm*:*Pool*:*Loss*:*Conv2DGpu*batch7*:*Conv2DGpu*64ch*:*MmaConvGpu.*batch7*:*MmaConvGpu.*batch1_c8*:-*256*
fi

# Data: the CIFAR-10 batches found, else a synthetic set of CIFAR's shape and layout.
data=$("$cnn" data-dir 2>/dev/null) || {
  data=$scratch/synthetic-cifar
  mkdir -p "$data"
  python3 - "$data" <<'PY'
import os, random, sys
random.seed(0)
for name, n in (("data_batch_1.bin", 10000), ("test_batch.bin", 10000)):
    with open(os.path.join(sys.argv[1], name), "wb") as f:
        for _ in range(n):
            f.write(bytes([random.randrange(10)]) + os.urandom(3072))
PY
  echo "no CIFAR-10 found: training on synthetic data in $data"
}
echo "data: $data"
if part train; then
  step train-lenet5-gpu 300 "$cnn" train --model models/lenet5.json --data "$data" --epochs 2 --device cuda \
    --verbose 2 --save "$scratch/lenet5_gpu.safetensors"
  # Data-parallel GPU ranks (docs/DISTRIBUTED.md): one rank under mpirun, and two reducing over
  # NCCL wherever 2 GPUs exist (one GPU per rank, by local rank).
  if command -v mpirun >/dev/null 2>&1; then
    mpirun_local="mpirun --allow-run-as-root --oversubscribe --mca btl self,vader"
    step train-lenet5-mpi1 300 $mpirun_local -n 1 "$cnn" train --model models/lenet5.json --data "$data" --epochs 1 \
      --device cuda --verbose 2 --save "$scratch/lenet5_mpi1.safetensors"
    if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
      step train-lenet5-mpi2-nccl 300 $mpirun_local -n 2 "$cnn" train --model models/lenet5.json --data "$data" \
        --epochs 1 --device cuda --verbose 2 --save "$scratch/lenet5_mpi2.safetensors"
      # Synchronised BatchNorm's sums over NCCL, in order with the gradient buckets.
      step train-airbench94-mpi2-sync-bn 300 $mpirun_local -n 2 "$cnn" train --model models/airbench94.json \
        --data "$data" --limit 4096 --epochs 1 --batch-size 256 --device cuda --sync-batchnorm --verbose 2 \
        --save "$scratch/airbench94_mpi2.safetensors"
    fi
  fi
fi
if part check; then
  step check-lenet5 120 "$cnn" check --model models/lenet5.json --batch-size 32
  step check-cifar_cnn 120 "$cnn" check --model models/cifar_cnn.json --batch-size 16
  step check-airbench94 120 "$cnn" check --model models/airbench94.json --batch-size 8
  advisory check-bf16-cifar_cnn 120 "$cnn" check --model models/cifar_cnn.json --batch-size 16 --precision bf16
  advisory check-bf16-airbench94 120 "$cnn" check --model models/airbench94.json --batch-size 8 --precision bf16
fi
if part bench; then
  # airbench94's step at its batch size (BatchNorm, GELU, SGD steps replayed as a CUDA graph);
  # images/s here x 10 epochs of 50,000 gives the training time of the [94] recipe.
  step bench-airbench94 120 "$cnn" bench --model models/airbench94.json --device cuda --batch-size 1024 \
    --steps 10 --warmup 3 --repeats 3
  # The bf16 policy on the tensor cores ([bf16]; CNN_CUDA_CONV_MMA=0 is the fp32 kernels on rounded
  # operands): the step time, both paths for airbench94 (the device comparisons are in `check`).
  advisory bench-bf16-airbench94 120 "$cnn" bench --model models/airbench94.json --device cuda --batch-size 1024 \
    --steps 10 --warmup 3 --repeats 3 --precision bf16
  advisory bench-bf16-nomma-airbench94 120 env CNN_CUDA_CONV_MMA=0 "$cnn" bench --model models/airbench94.json \
    --device cuda --batch-size 1024 --steps 10 --warmup 3 --repeats 3 --precision bf16
  advisory bench-bf16-cifar_cnn 120 "$cnn" bench --model models/cifar_cnn.json --device cuda --batch-size 256 \
    --steps 20 --warmup 3 --repeats 3 --precision bf16
  # Let the GPU choose LeNet-5's conv kernels (CNN_CUDA_CONV_KERNELS=tune): the table of candidates.
  step bench-tune-lenet5 120 "$cnn" bench --model models/lenet5.json --device cuda --batch-size 128 \
    --steps 20 --warmup 3 --repeats 3 --tune --tuning-file "$log_dir/conv-tuning.txt"
fi

# Against PyTorch on this GPU ([fast-gpu]'s table): fp32, every PyTorch variant once; then our
# [fast-gpu] kernels and the tuner against those same PyTorch numbers.
if part compare; then
  compare_env=(env CNN="$cnn" REPEATS=5 WARMUP=3)
  step compare-cuda 420 "${compare_env[@]}" OUT="$log_dir/compare-cuda" tools/compare.sh cuda
  advisory compare-cuda-fast 120 "${compare_env[@]}" OUT="$log_dir/compare-cuda-fast" \
    TORCH_FROM="$log_dir/compare-cuda" CNN_CUDA_CONV_KERNELS=fast tools/compare.sh cuda
  advisory compare-cuda-tune 120 "${compare_env[@]}" OUT="$log_dir/compare-cuda-tune" \
    TORCH_FROM="$log_dir/compare-cuda" CNN_CUDA_CONV_KERNELS=tune tools/compare.sh cuda
fi
# [bf16]'s table: the same cases with tensor-core products on both sides (PyTorch's eager and
# graph variants; torch.compile's compile time is left to the fp32 run).
if part precision; then
  for precision in tf32 bf16; do
    advisory compare-cuda-$precision 300 env CNN="$cnn" REPEATS=5 WARMUP=3 PRECISION=$precision \
      TORCH_VARIANTS=eager,graph OUT="$log_dir/compare-cuda-$precision" tools/compare.sh cuda
  done
fi

# ncu over every kernel of a short LeNet-5 bench at batch 128 (2 warm-up steps, the first
# eager, then 3 replayed from the CUDA graph; graph kernels are profiled one by one), default
# kernels and [fast-gpu]'s; the ten hottest by total time, per step.
if part profile; then
  if command -v ncu >/dev/null 2>&1; then
    ncu_metrics=gpu__time_duration.sum,sm__warps_active.avg.pct_of_peak_sustained_active
    ncu_metrics+=,sm__throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed
    for kernels in default fast; do
      advisory ncu-lenet5-$kernels 240 env CNN_CUDA_CONV_KERNELS=$kernels ncu --metrics "$ncu_metrics" --csv \
        --print-units base --log-file "$log_dir/ncu-lenet5-$kernels.csv" "$cnn" bench --model models/lenet5.json \
        --device cuda --batch-size 128 --steps 3 --warmup 2 --repeats 1
      advisory ncu-lenet5-$kernels-top 30 python3 tools/ncu_summary.py "$log_dir/ncu-lenet5-$kernels.csv" \
        --top 10 --steps 5
    done
  else
    rows+=("$(printf '%-28s %-28s %5ss' ncu-lenet5 "SKIPPED (no ncu)" 0)")
  fi
fi

{
  echo "Summary ($gpu)"
  printf '%-28s %-28s %6s\n' step result time
  for r in "${rows[@]}"; do echo "$r"; done
  part train && grep -h -E "^Test:|Trained" "$log_dir"/train-lenet5-gpu.log 2>/dev/null
  for f in cpu-tests gpu-tests gpu-tests-mma-conv memcheck racecheck; do
    part tests || part sanitizers || break
    grep -h -E "tests passed|tests failed|PASSED|FAILED  \]|ERROR SUMMARY|RACECHECK SUMMARY" "$log_dir/$f.log" 2>/dev/null |
      sed "s/^/$f: /"
  done
  for t in compare-cuda compare-cuda-fast compare-cuda-tune compare-cuda-tf32 compare-cuda-bf16; do
    { part compare || part precision; } && [ -f "$log_dir/$t/table.txt" ] && { echo "$t:"; cat "$log_dir/$t/table.txt"; }
  done
  for k in default fast; do
    part profile && [ -f "$log_dir/ncu-lenet5-$k-top.log" ] && { echo "ncu, LeNet-5 batch 128, $k kernels:"; cat "$log_dir/ncu-lenet5-$k-top.log"; }
  done
  echo "parts: $parts"
  echo "raw outputs: $log_dir/"
} >"$summary"
echo
cat "$summary"
exit $overall
