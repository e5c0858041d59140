#!/usr/bin/env bash
# Runs each libFuzzer harness for a while on its seed corpus; exits non-zero on any finding.
#   tests/fuzz/run.sh <fuzz build dir> <seconds per target> [target ...]
# Targets: model_file model_json cifar10 mnist image_folder (all by default). New inputs that
# reach new code go to <build>/fuzz-work/<target>/ (the committed seeds are never modified);
# a crashing input is saved as <build>/fuzz-work/<target>-crash-* and named in the output.
# Extra libFuzzer flags can be passed in CNN_FUZZ_FLAGS (e.g. "-jobs=2 -workers=2").
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:?usage: run.sh <fuzz build dir> <seconds per target> [target ...]}"
seconds="${2:?usage: run.sh <fuzz build dir> <seconds per target> [target ...]}"
shift 2
targets=("$@")
((${#targets[@]})) || targets=(model_file model_json cifar10 mnist image_folder)
work="$build/fuzz-work"
mkdir -p "$work"
failed=()
for t in "${targets[@]}"; do
  exe="$build/tests/fuzz/fuzz_$t"
  [ -x "$exe" ] || { echo "run.sh: $exe is missing (build the 'fuzzers' target with -DCNN_FUZZ=ON)"; exit 2; }
  mkdir -p "$work/$t"
  echo "== fuzz_$t: ${seconds}s"
  # A unit taking over 20 s, more than 2 GiB of memory or one allocation over 1 GiB is a finding.
  # The ASan/UBSan options are the sanitizers' defaults plus leak checking.
  if ! ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}" \
       UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
       "$exe" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
              -print_final_stats=1 -artifact_prefix="$work/$t-" ${CNN_FUZZ_FLAGS:-} \
              "$work/$t" "$here/corpus/$t" 2>"$work/$t.log"; then
    tail -n 60 "$work/$t.log"
    failed+=("$t")
  else
    grep -E "^(#[0-9]+ +DONE|Done [0-9]+ runs|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)" "$work/$t.log" || true
    echo "corpus: $(ls "$work/$t" | wc -l) new + $(ls "$here/corpus/$t" | wc -l) seed inputs"
  fi
done
if ((${#failed[@]})); then
  echo "fuzzing found problems in: ${failed[*]} (inputs saved under $work)"
  exit 1
fi
echo "fuzzing: no findings"
