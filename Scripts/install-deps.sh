#!/usr/bin/env bash
# Installs the Debian packages the build and tests need, if missing (idempotent).
# Runs apt-get directly as root, through sudo otherwise.
set -euo pipefail
need=()
for pkg in libopenblas-dev libhdf5-dev zlib1g-dev time; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
echo "installing ${need[*]}" >&2
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
