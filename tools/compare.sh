#!/usr/bin/env bash
# CNNFromScratch vs PyTorch training throughput, same models, same measurement.
#
#   tools/compare.sh cpu     # or: tools/compare.sh cuda
#
# Builds the `cnn` command if needed (Release; CUDA on for `cuda`), then for each case runs
# `cnn bench` and tools/bench_torch.py back to back and prints images/s (median, with the
# min-max spread) and the ratio ours / PyTorch. Cases: LeNet-5 RGB and grayscale at batch
# 32, 128 and 512, and models/cifar_cnn.json at batch 128.
#
# Environment:
#   OUT        results folder (default: results/compare-<device>-<date>); the raw JSON of every
#              run goes there, with the table (table.txt) and the machine description.
#   BUILD_DIR  build folder (default: build-perf for cpu, build-perf-cuda for cuda)
#   CNN        a built `cnn` to run instead (no build: tools/gpu_check.sh passes its own)
#   TORCH_FROM an earlier run's OUT whose PyTorch JSON to reuse (only ours is run again): one
#              PyTorch measurement against several of our kernel choices (CNN_CUDA_CONV_KERNELS)
#   TORCH_VARIANTS  PyTorch variants to run (bench_torch.py --variants; default: all it has)
#   PRECISION  fp32 (default), tf32 or bf16: `cnn bench --precision` and bench_torch.py
#              --precision (TF32 products; bf16 autocast, channels-last) on both sides
#   PYTHON     Python with PyTorch (default: /usr/bin/python3)
#   THREADS    CPU threads for both (default: all cores this process may use)
#   REPEATS    timed repeats per run (default 7); WARMUP (default 5)
#   CASES      override the case list, e.g. "lenet5:128 cifar_cnn:128"
set -euo pipefail

DEVICE="${1:-}"
if [[ "$DEVICE" != "cpu" && "$DEVICE" != "cuda" ]]; then
  echo "usage: tools/compare.sh cpu|cuda" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-/usr/bin/python3}"
THREADS="${THREADS:-$(nproc)}"
REPEATS="${REPEATS:-7}"
WARMUP="${WARMUP:-5}"
PRECISION="${PRECISION:-fp32}"
case "$PRECISION" in fp32 | tf32 | bf16) ;; *) echo "compare.sh: PRECISION=$PRECISION: fp32, tf32 or bf16" >&2; exit 2 ;; esac
if [[ "$DEVICE" == "cpu" ]]; then
  BUILD_DIR="${BUILD_DIR:-$ROOT/build-perf}"
  CUDA_FLAG=OFF
else
  BUILD_DIR="${BUILD_DIR:-$ROOT/build-perf-cuda}"
  CUDA_FLAG=ON
fi
OUT="${OUT:-$ROOT/results/compare-$DEVICE-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"

# ---- Build ----------------------------------------------------------------------------------
if [[ -n "${CNN:-}" ]]; then
  [[ -x "$CNN" ]] || { echo "compare.sh: CNN=$CNN is not an executable" >&2; exit 1; }
else
  if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCNN_CUDA="$CUDA_FLAG" >"$OUT/cmake.log"
  fi
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target cnn_cli >"$OUT/build.log" 2>&1 || {
    tail -30 "$OUT/build.log" >&2
    echo "compare.sh: build failed (log: $OUT/build.log)" >&2
    exit 1
  }
  CNN="$BUILD_DIR/cnn"
fi
"$PYTHON" -c "import torch" 2>/dev/null || { echo "compare.sh: $PYTHON has no torch" >&2; exit 1; }
if [[ -n "${TORCH_FROM:-}" ]]; then
  [[ -d "$TORCH_FROM" ]] || { echo "compare.sh: TORCH_FROM=$TORCH_FROM is not a folder" >&2; exit 1; }
  grep -qx "precision: $PRECISION (both sides)" "$TORCH_FROM/machine.txt" 2>/dev/null ||
    { echo "compare.sh: TORCH_FROM=$TORCH_FROM was not measured at precision $PRECISION (its machine.txt)" >&2; exit 1; }
fi

# ---- Machine ---------------------------------------------------------------------------------
{
  echo "date: $(date -Iseconds)"
  echo "host: $(uname -srm)"
  echo "threads: $THREADS"
  echo "precision: $PRECISION (both sides)"
  lscpu 2>/dev/null | grep -E "^(Model name|CPU\(s\)|Thread|Core|Socket|L1d|L2|L3|Flags)" | sed 's/^Flags:.*avx512f.*/Flags: (avx512f present)/'
  "$PYTHON" -c "import torch; print('torch', torch.__version__)"
  [[ "$DEVICE" == "cuda" ]] && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
  echo "uptime: $(uptime)"
  echo "cnn: $CNN; CNN_CUDA_CONV_KERNELS=${CNN_CUDA_CONV_KERNELS:-} CNN_CUDA_CONV_MMA=${CNN_CUDA_CONV_MMA:-}"
  [[ -n "${TORCH_FROM:-}" ]] && echo "PyTorch JSON reused from: $TORCH_FROM"
} >"$OUT/machine.txt"

# ---- Runs ------------------------------------------------------------------------------------
CASES="${CASES:-lenet5:32 lenet5:128 lenet5:512 lenet5_gray:32 lenet5_gray:128 lenet5_gray:512 cifar_cnn:128}"
steps_for() {  # enough steps that one repeat takes a measurable time
  local model=$1 batch=$2
  if [[ "$DEVICE" == "cuda" ]]; then echo 50; return; fi
  case "$model" in
    cifar_cnn) echo 3 ;;
    *) echo $(( batch >= 512 ? 5 : batch >= 128 ? 10 : 30 )) ;;
  esac
}

for c in $CASES; do
  model="${c%%:*}"
  batch="${c##*:}"
  steps=$(steps_for "$model" "$batch")
  echo "== $model batch $batch ($steps steps x $REPEATS repeats)" >&2
  echo "$model:$batch $(cut -d' ' -f1 /proc/loadavg 2>/dev/null)" >>"$OUT/loadavg.txt"
  "$CNN" bench --model "models/$model.json" --device "$DEVICE" --batch-size "$batch" --steps "$steps" \
    --warmup "$WARMUP" --repeats "$REPEATS" --threads "$THREADS" --precision "$PRECISION" --json \
    >"$OUT/${model}_b${batch}_cnn.json"
  if [[ -n "${TORCH_FROM:-}" ]]; then
    cp "$TORCH_FROM/${model}_b${batch}_torch.json" "$OUT/" || { echo "compare.sh: no $model:$batch in $TORCH_FROM" >&2; exit 1; }
    continue
  fi
  "$PYTHON" tools/bench_torch.py --model "models/$model.json" --device "$DEVICE" --batch-size "$batch" \
    --steps "$steps" --warmup "$WARMUP" --repeats "$REPEATS" --threads "$THREADS" --precision "$PRECISION" --json \
    ${TORCH_VARIANTS:+--variants "$TORCH_VARIANTS"} >"$OUT/${model}_b${batch}_torch.json"
done

# ---- Table -----------------------------------------------------------------------------------
"$PYTHON" - "$OUT" $CASES <<'EOF' | tee "$OUT/table.txt"
import json, sys
out, cases = sys.argv[1], sys.argv[2:]
def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
def cell(r):
    if r is None or "error" in r:
        return "failed" if r else "-", None
    i = r["images_per_s"]
    return f"{i['median']:9.0f} ({i['min']:.0f}-{i['max']:.0f})", i["median"]
rows = []
variants = []
for c in cases:
    model, batch = c.split(":")
    ours = load(f"{out}/{model}_b{batch}_cnn.json")[0]
    torch = {r["variant"]: r for r in load(f"{out}/{model}_b{batch}_torch.json")}
    for v in torch:
        if v not in variants:
            variants.append(v)
    rows.append((model, batch, ours, torch))
head = f"{'model':12} {'batch':>5} | {'ours images/s (min-max)':>26}"
for v in variants:
    head += f" | {'torch ' + v + ' images/s':>26} | {'ratio':>6}"
print(head)
print("-" * len(head))
for model, batch, ours, torch in rows:
    text, mine = cell(ours)
    line = f"{model:12} {batch:>5} | {text:>26}"
    for v in variants:
        t_text, theirs = cell(torch.get(v))
        ratio = f"{mine / theirs:6.2f}" if mine and theirs else "     -"
        line += f" | {t_text:>26} | {ratio}"
    print(line)
print("\nCPU time per step, ms (all threads, median): what the processes ran, whatever else held the cores")
for model, batch, ours, torch in rows:
    line = f"{model:12} {batch:>5} | ours {ours['cpu_ms_per_step']['median']:9.2f}"
    for v in variants:
        t = torch.get(v)
        if t and "cpu_ms_per_step" in t:
            line += f" | torch {v} {t['cpu_ms_per_step']['median']:9.2f}"
    print(line)
try:
    loads = [float(l.split()[1]) for l in open(f"{out}/loadavg.txt") if len(l.split()) > 1]
    print(f"\n1-minute load average before each case: {min(loads):.2f} to {max(loads):.2f} "
          f"(cores: {len(__import__('os').sched_getaffinity(0))})")
except (OSError, ValueError):
    pass
print(f"\nimages/s: median over repeats (min-max); ratio = ours / PyTorch. Raw JSON: {out}")
EOF
