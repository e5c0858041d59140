#!/usr/bin/env bash
# The GPU part of [94], on a lent GPU machine, as one command: CNNFromScratch trains
# models/airbench94.json on all of CIFAR-10 on the GPU (`cnn train`, the model file's recipe),
# and the PyTorch twin (tools/bench_torch.py --train: the same network, initialisation, optimizer,
# schedule, augmentation and test-time augmentation) trains the same recipe, seed by seed
# (ours 1, PyTorch 1, ours 2, ...), each under a timeout, within a total time budget. Prints a
# table: test accuracy (with TTA, as `cnn train` reports it; PyTorch also without) and times.
#
#   bash tools/run_airbench94_gpu.sh      # on the device, after tools/prepare_device_data.sh's
#                                         # two-call sequence (see its header): call 2 runs this
# Environment (all optional):
#   SEEDS=3          seeds 1..SEEDS
#   BUDGET_S=500     seconds for the whole script; a run that would not fit (judged by the last
#                    run of its kind) is skipped, and each run's timeout is what is left
#   ONLY=ours|torch  one side only
#   TORCH_RESERVE_S=75  seconds kept for PyTorch's first run while ours runs before it
#   XCHECK=1         also evaluate ours' seed-1 model in the PyTorch twin (--weights): the same
#                    test accuracy from an independent implementation, and ours without TTA
#   BIN=DIR          the prebuilt cnn (default devdata/part2/bin/, else devbin/)
#   DATA=DIR         CIFAR-10 (default devdata/cifar-10-batches-bin, unpacked from devdata/part*/ first)
#   DEVICE=cuda      cpu for a dry run; EPOCHS, BATCH, LR, LIMIT, TEST_LIMIT pass to both sides
#   PRECISION=bf16   --precision for both sides ([bf16]: ours' tensor-core products, PyTorch's
#                    autocast to bfloat16 with channels-last; fp32 or tf32 for the record)
#   TORCH_ARGS=...   more flags for bench_torch.py, e.g. "--our-rng" (start from our initial
#                    weights and draw our shuffles and shifts: the same run as ours but for
#                    rounding) or "--threads 1"
# Logs in $OUT (else out/airbench94_gpu): ours.log, torch.log, data.log, summary.txt, results.json.
set -u
cd "$(dirname "$0")/.."
log=${OUT:-out/airbench94_gpu}
mkdir -p "$log"
t_start=$SECONDS
SEEDS=${SEEDS:-3}
BUDGET_S=${BUDGET_S:-500}
DEVICE=${DEVICE:-cuda}
ONLY=${ONLY:-}
XCHECK=${XCHECK:-1}
TORCH_RESERVE_S=${TORCH_RESERVE_S:-75}
export PYTHONUNBUFFERED=1
linebuf=""
command -v stdbuf >/dev/null 2>&1 && linebuf="stdbuf -oL -eL"  # a run killed at its timeout keeps its epoch lines
model=models/airbench94.json
PY=python3
python3 -c 'import torch' 2>/dev/null || PY=/usr/bin/python3
summary=$log/summary.txt
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }

# ---- data -------------------------------------------------------------------------------
if [ -z "${DATA:-}" ]; then
  DATA=devdata/cifar-10-batches-bin
  if ls devdata/part*/*.cifmed >/dev/null 2>&1; then
    t0=$SECONDS
    bash tools/prepare_device_data.sh unpack "$DATA" >"$log/data.log" 2>&1
    note "data: unpacked devdata/part*/ in $((SECONDS - t0)) s: $(tail -n 1 "$log/data.log")"
  fi
fi
train_batches=$(ls "$DATA"/data_batch_[1-5].bin 2>/dev/null | wc -l)
[ -s "$DATA/test_batch.bin" ] && has_test=yes || has_test=no
note "data: $DATA: $train_batches of 5 training batches, test batch: $has_test"
if [ "$train_batches" = 0 ]; then
  note "no training data: stopping"
  exit 2
fi
[ "$train_batches" = 5 ] || note "WARNING: not the whole training set (the machine was given back between the calls?)"

# ---- our binary ---------------------------------------------------------------------------
if [ -z "${BIN:-}" ]; then
  if [ -x devdata/part2/bin/cnn ]; then BIN=devdata/part2/bin; else BIN=devbin; fi
fi
BIN=$(cd "$BIN" 2>/dev/null && pwd) || BIN=""
cnn=${BIN:+$BIN/cnn}
if [ -n "$BIN" ] && [ -x "$cnn" ]; then
  export LD_LIBRARY_PATH="$BIN:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  src=$(cat "$BIN/source_dir.txt" 2>/dev/null || true)
  [ -n "$src" ] && [ ! -e "$src" ] && mkdir -p "$(dirname "$src")" && ln -s "$PWD" "$src"
else
  note "no prebuilt cnn (BIN=${BIN:-unset}): ours is skipped"
  cnn=""
fi

gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
note "GPU: ${gpu:-none found}; $($PY -c 'import torch; print("PyTorch", torch.__version__, "CUDA", torch.version.cuda)' 2>&1 | tail -n 1)"
note "budget ${BUDGET_S} s for ${SEEDS} seed(s); device ${DEVICE}; precision ${PRECISION:-bf16} on both sides"

# Flags both sides share (dry runs, shortened runs).
common=()
[ -n "${EPOCHS:-}" ] && common+=(--epochs "$EPOCHS")
[ -n "${BATCH:-}" ] && common+=(--batch-size "$BATCH")
[ -n "${LR:-}" ] && common+=(--lr "$LR")
[ -n "${LIMIT:-}" ] && common+=(--limit "$LIMIT")
[ -n "${TEST_LIMIT:-}" ] && common+=(--test-limit "$TEST_LIMIT")
common+=(--precision "${PRECISION:-bf16}")

left() { echo $((BUDGET_S - (SECONDS - t_start))); }
declare -A last=()  # seconds of the last run of each kind
rows=()             # "kind seed status seconds"

# fits KIND: enough budget left for a run of KIND (its last duration + 10%, else 30 s)?
fits() {
  local need=${last[$1]:-27}
  [ $(( $(left) - 5 )) -ge $(( need + need / 10 + 3 )) ]
}

# run_one KIND SEED LOGFILE COMMAND...: appends the output to LOGFILE under a header.
run_one() {
  local kind=$1 seed=$2 file=$3 t0 rc limit status
  shift 3
  if ! fits "$kind"; then
    note "skip: $kind seed $seed (left $(left) s, the last $kind run took ${last[$kind]:-?} s)"
    rows+=("$kind $seed skipped 0")
    return
  fi
  limit=$(( $(left) - 5 ))
  # Keep time for PyTorch's first run while it has not run: ours (slow or stuck) cannot use it all.
  if [ "$kind" != torch ] && [ "$ONLY" != ours ] && [ -z "${last[torch]:-}" ]; then
    limit=$(( limit - TORCH_RESERVE_S ))
    [ "$limit" -ge 30 ] || limit=30
  fi
  printf '\n===== %s seed %s (timeout %s s): %s\n' "$kind" "$seed" "$limit" "$*" >>"$file"
  echo "== $kind seed $seed (timeout ${limit} s)"
  t0=$SECONDS
  timeout "$limit" $linebuf "$@" >>"$file" 2>&1
  rc=$?
  last[$kind]=$((SECONDS - t0))
  status=ok
  [ $rc = 0 ] || status="exit-$rc"
  [ $rc = 124 ] && status=timeout
  rows+=("$kind $seed $status ${last[$kind]}")
  echo "   $status after ${last[$kind]} s"
  [ $rc = 0 ] || tail -n 15 "$file"
}

for seed in $(seq 1 "$SEEDS"); do
  if [ -n "$cnn" ] && [ "$ONLY" != torch ]; then
    run_one ours "$seed" "$log/ours.log" "$cnn" train --model "$model" --device "$DEVICE" --data "$DATA" \
      --validation-split 0 --seed "$seed" --verbose 2 --save "/tmp/airbench94_ours_s$seed.safetensors" ${common[@]+"${common[@]}"}
    if [ "$seed" = 1 ] && [ "$XCHECK" = 1 ] && [ "$ONLY" != ours ] && [ -s /tmp/airbench94_ours_s1.safetensors ]; then
      run_one xcheck "$seed" "$log/torch.log" "$PY" tools/bench_torch.py --train --model "$model" --data "$DATA" \
        --device "$DEVICE" --weights /tmp/airbench94_ours_s1.safetensors --json ${TEST_LIMIT:+--test-limit "$TEST_LIMIT"} \
        ${TORCH_ARGS:-}
    fi
  fi
  if [ "$ONLY" != ours ]; then
    run_one torch "$seed" "$log/torch.log" "$PY" tools/bench_torch.py --train --model "$model" --data "$DATA" \
      --device "$DEVICE" --seed "$seed" --json ${common[@]+"${common[@]}"} ${TORCH_ARGS:-}
  fi
done

# ---- summary ---------------------------------------------------------------------------
printf '%s\n' "${rows[@]}" >"$log/runs.txt"
"$PY" - "$log" "$SECONDS" "$t_start" >>"$summary" <<'PY'
import json, os, re, sys
log = sys.argv[1]
runs = [l.split() for l in open(os.path.join(log, "runs.txt")) if l.strip()]
os.remove(os.path.join(log, "runs.txt"))

def sections(path, kind):
    """{seed: text} of each run's section in a log."""
    out = {}
    if not os.path.exists(path):
        return out
    for part in open(path, errors="replace").read().split("\n===== ")[1:]:
        m = re.match(r"(\w+) seed (\d+)", part)
        if m and m.group(1) == kind:
            out[int(m.group(2))] = part
    return out

ours, torch_runs, xcheck = sections(os.path.join(log, "ours.log"), "ours"), sections(os.path.join(log, "torch.log"), "torch"), sections(os.path.join(log, "torch.log"), "xcheck")

def last_json(text):
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None

results = {"runs": []}
for kind, seed, status, secs in runs:
    seed, secs = int(seed), int(secs)
    r = {"kind": kind, "seed": seed, "status": status, "process_seconds": secs}
    if kind == "ours" and seed in ours:
        t = ours[seed]
        m = re.search(r"Test: loss ([\d.]+), accuracy ([\d.]+)", t)
        if m:
            r["test_loss_tta"], r["test_accuracy_tta"] = float(m.group(1)), float(m.group(2))
        m = re.search(r"Trained (\d+) epochs in ([\d.]+) s", t)
        if m:
            r["epochs"], r["train_seconds"] = int(m.group(1)), float(m.group(2))
        r["epoch_lines"] = [l.strip() for l in t.splitlines() if re.search(r"\d+/\d+ \[=*", l)]
    elif kind in ("torch", "xcheck"):
        j = last_json((torch_runs if kind == "torch" else xcheck).get(seed, ""))
        if j:
            for k in ("test_accuracy", "test_accuracy_tta", "test_loss_tta", "train_seconds", "wall_seconds",
                      "epochs", "device_name", "torch_version", "history"):
                if k in j:
                    r[k] = j[k]
    results["runs"].append(r)

def fmt(v, pct=True):
    return "-" if v is None else (f"{100 * v:.2f}%" if pct else f"{v:.1f}")

print()
print(f"{'run':<7} {'seed':>4} {'status':<8} {'test acc (TTA)':>14} {'no TTA':>8} {'train s':>8} {'process s':>9}")
for r in results["runs"]:
    print(f"{r['kind']:<7} {r['seed']:>4} {r['status']:<8} {fmt(r.get('test_accuracy_tta')):>14} "
          f"{fmt(r.get('test_accuracy')):>8} {fmt(r.get('train_seconds'), False):>8} {r['process_seconds']:>9}")
print()
for kind in ("ours", "torch"):
    ok = [r for r in results["runs"] if r["kind"] == kind and r.get("test_accuracy_tta") is not None and r["status"] == "ok"]
    if ok:
        accs = [r["test_accuracy_tta"] for r in ok]
        mean = sum(accs) / len(accs)
        tr = [r["train_seconds"] for r in ok if "train_seconds" in r]
        results[kind + "_mean_test_accuracy_tta"] = mean
        print(f"{kind:<6} mean test accuracy (TTA) {100 * mean:.2f}% over {len(ok)} seed(s) "
              f"({', '.join(f'{100 * a:.2f}' for a in accs)}); training {sum(tr) / max(len(tr), 1):.1f} s per run")
    else:
        print(f"{kind:<6} no completed run")
print(f"script time {int(sys.argv[2]) - int(sys.argv[3])} s")
json.dump(results, open(os.path.join(log, "results.json"), "w"), indent=1)
PY
echo
cat "$summary"
