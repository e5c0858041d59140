#!/usr/bin/env bash
# Unpacks the Debian packages the GPU machine lacks (it has no network) into devdeps/root,
# an ignored folder to carry there with the checkout; tools/gpu_check.sh finds it.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p devdeps/debs devdeps/root
grep -qx '/devdeps/' .git/info/exclude 2>/dev/null || echo '/devdeps/' >>.git/info/exclude
(cd devdeps/debs && apt-get download libgtest-dev libgmock-dev nlohmann-json3-dev libcli11-dev libstb-dev libstb0 zlib1g-dev)
for f in devdeps/debs/*.deb; do dpkg -x "$f" devdeps/root; done
rm -f devdeps/root/usr/lib/x86_64-linux-gnu/libz.so  # an absolute link; libz.a is used instead
du -sh devdeps/root
