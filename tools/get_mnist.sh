#!/usr/bin/env bash
# Downloads MNIST (the four official IDX files, gzip-compressed as distributed) into DIR/mnist
# (DIR: the first argument, default ./data), where cnn::find_data_dir("mnist") finds it. The
# loader reads the .gz files directly.
#
#   tools/get_mnist.sh            # -> ./data/mnist
#   tools/get_mnist.sh /big/disk  # -> /big/disk/mnist (then CNN_DATA=/big/disk)
#
# Source: the PyTorch mirror https://ossci-datasets.s3.amazonaws.com/mnist/ (yann.lecun.com
# no longer serves the files reliably). Official md5 sums of the .gz files:
#   f68b3c2dcbeaaa9fbdd348bbdeb94873  train-images-idx3-ubyte.gz
#   d53e105ee54ea40749a09fcbcd1e9432  train-labels-idx1-ubyte.gz
#   9fb629c4189551a2d022fa330f9573f3  t10k-images-idx3-ubyte.gz
#   ec29112dd5afa0611ce80d1b7f02629c  t10k-labels-idx1-ubyte.gz
# What is checked is the md5 of the uncompressed content (below), so a copy recompressed by
# another mirror is accepted too. Running it again when the data are intact does nothing.
set -euo pipefail

BASE_URL="${MNIST_MIRROR:-https://ossci-datasets.s3.amazonaws.com/mnist/}"
CONTENT_MD5S="6bbc9ace898e44ae57da46a324031adb  train-images-idx3-ubyte
a25bea736e30d166cdddb491f175f624  train-labels-idx1-ubyte
2646ac647ad5339dbf082846283269ea  t10k-images-idx3-ubyte
27ae3e4e09519cfbb04c329615203637  t10k-labels-idx1-ubyte"

die() { echo "get_mnist.sh: error: $*" >&2; exit 1; }
say() { echo "get_mnist.sh: $*"; }

if [ "$#" -gt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 0
fi
DEST="${1:-data}"
TARGET="$DEST/mnist"

md5_stdin() {
  if command -v md5sum >/dev/null 2>&1; then md5sum | cut -d' ' -f1
  elif command -v md5 >/dev/null 2>&1; then md5 -q
  else die "neither md5sum nor md5 is installed"
  fi
}

# md5 of a file's content: gunzip'd for .gz.
content_md5() {
  case "$1" in
    *.gz) gunzip -c "$1" 2>/dev/null | md5_stdin ;;
    *) md5_stdin < "$1" ;;
  esac
}

# True when `name` (plain or .gz) is in TARGET with the right content.
file_ok() {
  local name="$1" sum="$2" f
  for f in "$TARGET/$name" "$TARGET/$name.gz"; do
    [ -f "$f" ] && [ "$(content_md5 "$f")" = "$sum" ] && return 0
  done
  return 1
}

download() {
  local url="$1" out="$2"
  if command -v curl >/dev/null 2>&1; then
    curl -fL --retry 3 --connect-timeout 30 -o "$out" "$url"
  elif command -v wget >/dev/null 2>&1; then
    wget -O "$out" "$url"
  else
    die "neither curl nor wget is installed"
  fi
}

mkdir -p "$TARGET" || die "cannot create $TARGET"
fetched=0
while read -r sum name; do
  if file_ok "$name" "$sum"; then
    say "$name: present and intact"
    continue
  fi
  url="${BASE_URL%/}/$name.gz"
  say "downloading $url"
  download "$url" "$TARGET/$name.gz.part" || { rm -f "$TARGET/$name.gz.part"; die "download failed: $url"; }
  mv "$TARGET/$name.gz.part" "$TARGET/$name.gz"
  got="$(content_md5 "$TARGET/$name.gz")"
  if [ "$got" != "$sum" ]; then
    rm -f "$TARGET/$name.gz"
    die "$name.gz: md5 of its content is $got, expected $sum (file removed; run again)"
  fi
  fetched=$((fetched + 1))
done <<< "$CONTENT_MD5S"
if [ "$fetched" -eq 0 ]; then
  say "MNIST is already in $TARGET; nothing to do"
else
  say "done: MNIST is in $TARGET (60,000 training and 10,000 test images)"
fi
