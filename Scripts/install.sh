#!/usr/bin/env bash
# Builds fireq in release and puts it on the PATH: bash Scripts/install.sh [PREFIX]
# (default PREFIX ~/.local; the binary goes to PREFIX/bin/fireq). Needs the system libraries of
# Scripts/install-deps.sh (OpenBLAS, HDF5, zlib; installed first when missing). A first build takes
# about 4 minutes on 2 cores, a rebuild seconds. `fireq --version` then names the commit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=${1:-$HOME/.local}
cd "$root"
echo "[install] system libraries (apt: OpenBLAS, HDF5, zlib; a no-op when present) ..." >&2
bash Scripts/install-deps.sh
echo "[install] swift build -c release (first build ~4 min on 2 cores) ..." >&2
swift build -c release --product fireq
mkdir -p "$prefix/bin"
install -m 0755 .build/release/fireq "$prefix/bin/fireq.tmp-$$"
mv -f "$prefix/bin/fireq.tmp-$$" "$prefix/bin/fireq"
echo "[install] $("$prefix/bin/fireq" --version) -> $prefix/bin/fireq" >&2
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "[install] $prefix/bin is not on your PATH: add  export PATH=\"$prefix/bin:\$PATH\"  to your shell's profile" >&2 ;;
esac
