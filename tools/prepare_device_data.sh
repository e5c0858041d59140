#!/usr/bin/env bash
# CIFAR-10 (and the prebuilt `cnn`) for a lent GPU machine, in two parts that each fit one
# `run` call (64 MiB per call: the working tree plus the carried paths). The six raw batches
# are 176 MiB, so each file is packed losslessly (per-plane MED pixel prediction, G-relative
# residuals, then xz/LZMA: 56% of the raw size, 16.4 MiB a file) and checked by md5 on unpacking.
#
#   devdata/part1/  data_batch_1..3 (packed)                                       ~49 MiB
#   devdata/part2/  data_batch_4..5, test_batch (packed), batches.meta.txt, and
#                   bin/ = devbin's cnn, libstb.so.0, source_dir.txt (not the test binaries)  ~54 MiB
#
# Here (once; packing takes a few minutes of one core the first time, then comes from a cache
# in ${CNN_DEVDATA_CACHE:-~/.cache/cnn-devdata}):
#   bash tools/prebuild_gpu.sh                  # when devbin/ is older than the sources (this warns)
#   bash tools/prepare_device_data.sh all       # or: part1, part2; [CIFAR_DIR] (default: build-cpu/cnn data-dir)
#
# Then, on the device, exactly two `run` calls, the second IMMEDIATELY after the first returns
# (a machine stays warm only about 30 s after a call; status's idle_release_s says how long):
#   1. run(command="bash tools/prepare_device_data.sh unpack",
#          carry=["devdata/part1"], timeout_s=120)
#   2. run(command="bash tools/run_airbench94_gpu.sh", carry=["devdata/part2"], timeout_s=600)
#      (run_airbench94_gpu.sh unpacks part2 first, then trains; BUDGET_S=... SEEDS=... to size it)
# Each call carries its own sub-folder, never "devdata" itself: a carried path replaces that
# path on the device, so carrying "devdata" twice would drop what the first call unpacked
# into devdata/cifar-10-batches-bin/ (ignored files are otherwise kept on a warm machine).
# If call 2 reports data_batch_1..3 missing, the machine was given back in between: repeat both.
# (To carry devbin/ instead of part2/bin, it must be trimmed to cnn + libstb.so.0: the test
# binaries alone take 11 MiB.)
#
#   bash tools/prepare_device_data.sh unpack [OUT_DIR]   # devdata/part*/ -> OUT_DIR (default
#        devdata/cifar-10-batches-bin), in parallel, each file md5-checked; skips good files
#   bash tools/prepare_device_data.sh check [CIFAR_DIR]  # here: unpack into a temporary folder
#        and compare with the originals byte for byte
#   bash tools/prepare_device_data.sh status             # sizes of the parts
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache=${CNN_DEVDATA_CACHE:-$HOME/.cache/cnn-devdata}
part1_files="data_batch_1.bin data_batch_2.bin data_batch_3.bin"
part2_files="data_batch_4.bin data_batch_5.bin test_batch.bin"

# A Python with numpy (the device's python3 has it; here Debian's /usr/bin/python3 may be the one).
PY=""
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import numpy, lzma' 2>/dev/null; then PY=$p; break; fi
done

read -r -d '' CODEC <<'PYCODE'
import hashlib, lzma, os, sys
import numpy as np

MAGIC = b"CIFMED1"
REC = 3073

def med(a, b, c):
    mx, mn = np.maximum(a, b), np.minimum(a, b)
    return np.where(c >= mx, mn, np.where(c <= mn, mx, a + b - c))

def encode(src, dst):
    raw = open(src, "rb").read()
    if len(raw) % REC:
        sys.exit(f"{src}: {len(raw)} bytes is not a whole number of {REC}-byte records")
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, REC)
    x = rec[:, 1:].reshape(-1, 3, 32, 32).astype(np.int16)
    a = np.zeros_like(x); b = np.zeros_like(x); c = np.zeros_like(x)
    a[..., :, 1:] = x[..., :, :-1]; b[..., 1:, :] = x[..., :-1, :]; c[..., 1:, 1:] = x[..., :-1, :-1]
    p = med(a, b, c)  # MED (LOCO-I) inside; the first row from the left, the first column from above
    p[..., 0, 1:] = x[..., 0, :-1]; p[..., 1:, 0] = x[..., :-1, 0]; p[..., 0, 0] = 0
    r = (x - p) & 255
    g = r.copy(); g[:, 0] = (r[:, 0] - r[:, 1]) & 255; g[:, 2] = (r[:, 2] - r[:, 1]) & 255
    header = b"%s %s %d %s\n" % (MAGIC, os.path.basename(src).encode(), rec.shape[0], hashlib.md5(raw).hexdigest().encode())
    body = lzma.compress(rec[:, 0].tobytes() + g.astype(np.uint8).tobytes(), preset=6)
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header + body)
    os.replace(tmp, dst)

def header_of(path):
    with open(path, "rb") as f:
        magic, name, n, md5 = f.readline().split()
    if magic != MAGIC:
        sys.exit(f"{path}: not a packed CIFAR-10 file")
    return name.decode(), int(n), md5.decode()

def decode(src, out_dir):
    name, n, md5 = header_of(src)
    dst = os.path.join(out_dir, name)
    if os.path.exists(dst) and os.path.getsize(dst) == n * REC:
        if hashlib.md5(open(dst, "rb").read()).hexdigest() == md5:
            print(f"{name}: present, md5 ok"); return
    blob = open(src, "rb").read()
    body = lzma.decompress(blob[blob.index(b"\n") + 1:])
    labels = np.frombuffer(body[:n], dtype=np.uint8)
    g = np.frombuffer(body[n:], dtype=np.uint8).reshape(n, 3, 32, 32).astype(np.int16)
    r = g.copy(); r[:, 0] = (g[:, 0] + g[:, 1]) & 255; r[:, 2] = (g[:, 2] + g[:, 1]) & 255
    x = np.zeros_like(r)
    x[..., 0, 0] = r[..., 0, 0]
    for q in range(1, 32):
        x[..., 0, q] = (r[..., 0, q] + x[..., 0, q - 1]) & 255
    for row in range(1, 32):
        x[..., row, 0] = (r[..., row, 0] + x[..., row - 1, 0]) & 255
        for q in range(1, 32):
            x[..., row, q] = (r[..., row, q] + med(x[..., row, q - 1], x[..., row - 1, q], x[..., row - 1, q - 1])) & 255
    out = np.empty((n, REC), dtype=np.uint8)
    out[:, 0] = labels
    out[:, 1:] = x.reshape(n, -1).astype(np.uint8)
    data = out.tobytes()
    got = hashlib.md5(data).hexdigest()
    if got != md5:
        sys.exit(f"{name}: md5 {got} after unpacking, expected {md5}")
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, dst)
    print(f"{name}: unpacked, {n} records, md5 ok")

if __name__ == "__main__":
    {"encode": encode, "decode": decode}[sys.argv[1]](sys.argv[2], sys.argv[3])
PYCODE

need_py() { [ -n "$PY" ] || { echo "prepare_device_data: no python3 with numpy found" >&2; exit 2; }; }

source_dir() {
  local d=${1:-}
  [ -n "$d" ] || d=$(build-cpu/cnn data-dir 2>/dev/null || build/cnn data-dir 2>/dev/null || true)
  [ -n "$d" ] && [ -f "$d/data_batch_1.bin" ] || { echo "prepare_device_data: no CIFAR-10 folder (give it as an argument)" >&2; exit 2; }
  echo "$d"
}

# pack_file SRC DST: from the cache when the source's md5 was packed before.
pack_file() {
  local src=$1 dst=$2 sum
  sum=$(md5sum "$src" | cut -d' ' -f1)
  mkdir -p "$cache"
  if [ ! -s "$cache/$sum.cifmed" ]; then
    echo "packing $(basename "$src") (about a minute)..."
    nice "$PY" -c "$CODEC" encode "$src" "$cache/$sum.cifmed" || exit 1
  fi
  cp "$cache/$sum.cifmed" "$dst"
}

make_part() {
  local part=$1 src=$2 files
  [ "$part" = part1 ] && files=$part1_files || files=$part2_files
  rm -rf "devdata/$part" && mkdir -p "devdata/$part"
  for f in $files; do pack_file "$src/$f" "devdata/$part/${f%.bin}.cifmed"; done
  if [ "$part" = part2 ]; then
    [ -f "$src/batches.meta.txt" ] && cp "$src/batches.meta.txt" devdata/part2/
    if [ -x devbin/cnn ]; then
      mkdir -p devdata/part2/bin
      cp devbin/cnn devbin/libstb.so.0 devdata/part2/bin/ 2>/dev/null || cp devbin/cnn devdata/part2/bin/
      [ -f devbin/source_dir.txt ] && cp devbin/source_dir.txt devdata/part2/bin/
      newer=$(find src include tools/cnn CMakeLists.txt -newer devbin/cnn -type f 2>/dev/null | head -3)
      [ -z "$newer" ] || echo "WARNING: devbin/cnn is older than $(echo $newer | tr '\n' ' ')...: run tools/prebuild_gpu.sh, then this again"
    else
      echo "WARNING: no devbin/cnn (run tools/prebuild_gpu.sh first): part2 carries no binary"
    fi
  fi
  du -sh "devdata/$part" | sed 's/^/size: /'
}

status() {
  local tree
  tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  echo "working tree that travels with every call: $((tree / 1024)) KiB"
  for p in part1 part2; do
    if [ -d "devdata/$p" ]; then
      local b
      b=$(du -sb "devdata/$p" | cut -f1)
      awk -v p="$p" -v b="$b" -v t="$tree" 'BEGIN { printf "%s: %.1f MiB, with the tree %.1f MiB of the 64 MiB per call\n", p, b / 1048576, (b + t) / 1048576 }'
      ls -l "devdata/$p" | tail -n +2 | awk '{print "  " $5, $9}'
    else
      echo "$p: missing"
    fi
  done
}

unpack() {
  need_py
  local out=${1:-devdata/cifar-10-batches-bin} failed=0 f flag
  local jobs=${UNPACK_JOBS:-$(nproc)}
  mkdir -p "$out"
  flag=$(mktemp)
  for f in devdata/part*/*.cifmed; do
    [ -e "$f" ] || continue
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    { "$PY" -c "$CODEC" decode "$f" "$out" || echo "$f" >>"$flag"; } &
  done
  wait
  [ -s "$flag" ] && { echo "unpacking failed: $(cat "$flag")"; failed=1; }
  rm -f "$flag"
  for f in devdata/part*/batches.meta.txt; do [ -e "$f" ] && cp "$f" "$out/"; done
  echo "in $out:"
  ls -l "$out" | tail -n +2 | awk '{print "  " $5, $9}'
  local missing=""
  for f in $part1_files $part2_files; do [ -s "$out/$f" ] || missing+=" $f"; done
  [ -z "$missing" ] && echo "CIFAR-10 complete" || echo "missing:$missing"
  return $failed
}

case "${1:-}" in
  part1 | part2)
    need_py
    src=$(source_dir "${2:-}") || exit 2
    grep -qx '/devdata/' .gitignore || echo "WARNING: .gitignore does not ignore /devdata/"
    make_part "$1" "$src"
    status
    ;;
  all)
    need_py
    src=$(source_dir "${2:-}") || exit 2
    make_part part1 "$src" && make_part part2 "$src"
    status
    ;;
  unpack) unpack "${2:-}" ;;
  check)
    need_py
    src=$(source_dir "${2:-}") || exit 2
    tmp=$(mktemp -d)
    unpack "$tmp" || { rm -rf "$tmp"; exit 1; }
    rc=0
    for f in $part1_files $part2_files; do
      if [ -e "$tmp/$f" ]; then cmp "$src/$f" "$tmp/$f" && echo "$f: identical to $src/$f" || rc=1; fi
    done
    rm -rf "$tmp"
    exit $rc
    ;;
  status) status ;;
  *)
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { print }' "$0"
    exit 2
    ;;
esac
