#!/usr/bin/env bash
# Downloads CIFAR-10, binary version, into DIR/cifar-10-batches-bin (DIR: the first argument,
# default ./data), where cnn::find_data_dir("cifar-10-batches-bin") finds it.
#
#   tools/get_cifar10.sh            # -> ./data/cifar-10-batches-bin
#   tools/get_cifar10.sh /big/disk  # -> /big/disk/cifar-10-batches-bin (then CNN_DATA=/big/disk)
#
# Source: https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz (162 MiB), checked against
# its md5 c32a1d4ab5d03f1284b67883e8d87530; the unpacked files are checked against their own
# md5 sums. CIFAR10_URL overrides the address (a local mirror, file:///...). Running it again
# when the data are already there and intact does nothing.
set -euo pipefail

URL="${CIFAR10_URL:-https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz}"
ARCHIVE_MD5="c32a1d4ab5d03f1284b67883e8d87530"
FILE_MD5S="5dd7e06a14cb22eb9f671a540d1b7c25  data_batch_1.bin
5ea93a67294ea407fff1d09f752e9692  data_batch_2.bin
942cd6a4bcdd0dd3c604fbe906cb4421  data_batch_3.bin
ae636b3ba5c66a11e91e8cb52e771fcb  data_batch_4.bin
53f37980c15c3d472c316c40844f3f0d  data_batch_5.bin
803d5f7f4d78ea53de84dbe85f74fb6d  test_batch.bin"

die() { echo "get_cifar10.sh: error: $*" >&2; exit 1; }
say() { echo "get_cifar10.sh: $*"; }

if [ "$#" -gt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 0
fi
DEST="${1:-data}"
TARGET="$DEST/cifar-10-batches-bin"
ARCHIVE="$DEST/cifar-10-binary.tar.gz"

md5_of() {
  if command -v md5sum >/dev/null 2>&1; then md5sum "$1" | cut -d' ' -f1
  elif command -v md5 >/dev/null 2>&1; then md5 -q "$1"
  else die "neither md5sum nor md5 is installed"
  fi
}

# True when every file is present with its md5 sum.
files_ok() {
  local sum name
  while read -r sum name; do
    [ -f "$TARGET/$name" ] || return 1
    [ "$(md5_of "$TARGET/$name")" = "$sum" ] || { say "$TARGET/$name has the wrong md5 sum"; return 1; }
  done <<< "$FILE_MD5S"
}

if [ -d "$TARGET" ] && files_ok; then
  say "CIFAR-10 is already in $TARGET (all md5 sums match); nothing to do"
  exit 0
fi

mkdir -p "$DEST" || die "cannot create $DEST"
if [ -f "$ARCHIVE" ] && [ "$(md5_of "$ARCHIVE")" = "$ARCHIVE_MD5" ]; then
  say "using the archive already downloaded: $ARCHIVE"
else
  say "downloading $URL -> $ARCHIVE"
  if command -v curl >/dev/null 2>&1; then
    curl -fL --retry 3 --connect-timeout 30 -o "$ARCHIVE.part" "$URL" || die "download failed: $URL"
  elif command -v wget >/dev/null 2>&1; then
    wget -O "$ARCHIVE.part" "$URL" || die "download failed: $URL"
  else
    die "neither curl nor wget is installed"
  fi
  mv "$ARCHIVE.part" "$ARCHIVE"
  got="$(md5_of "$ARCHIVE")"
  if [ "$got" != "$ARCHIVE_MD5" ]; then
    rm -f "$ARCHIVE"
    die "md5 of the download is $got, expected $ARCHIVE_MD5 (archive removed; run again)"
  fi
  say "md5 ok ($ARCHIVE_MD5)"
fi

say "unpacking into $TARGET"
rm -rf "$TARGET"
tar -xzf "$ARCHIVE" -C "$DEST" || die "cannot unpack $ARCHIVE"
[ -d "$TARGET" ] || die "$ARCHIVE did not hold cifar-10-batches-bin/"
files_ok || die "the unpacked files in $TARGET do not match their md5 sums"
rm -f "$ARCHIVE"
say "done: CIFAR-10 is in $TARGET (50,000 training and 10,000 test images)"
