#!/usr/bin/env bash
# Installs the pinned llama-cpp-python (Scripts/requirements-model.txt) into the venv as a portable
# build: compiled here from its sdist with GGML_NATIVE off (ggml's AVX/AVX2/FMA/F16C kernels, which
# every x86-64 CPU these machines have had runs), never taken from pip's wheel cache. Why: pip
# caches the wheel it compiled under the package's name and version only, and the default build
# is -march=native: it carries whatever the compiling CPU had. 2026-12-07, Intel Xeon guest: the
# cached wheel held ggml's AMX kernels (182 tile instructions in libggml-cpu.so) and the export
# tests died with "Illegal instruction" — this guest lists amx_tile but faults on `tilezero`; a
# wheel from another session's CPU can likewise use extensions the next one lacks.
# The binding only checks our exports (their perplexity), so its speed does not matter; the
# llama.cpp speed comparison builds its own native tools (Benchmarks/vs-llamacpp.sh).
#
#   Scripts/install-llama-cpp-python.sh [VENV]      (default .cache/venv; ~6 min on 2 cores)
# A no-op when VENV's marker names the pinned version. Run after the requirements' install (which
# may have put a cached wheel there): it replaces the package only, not its dependencies.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$root/.cache/venv}
pin=$(grep -E '^llama-cpp-python==' "$root/Scripts/requirements-model.txt")
marker=$venv/.llama-cpp-python-portable
[ "$(cat "$marker" 2>/dev/null)" = "$pin" ] && exit 0
echo "installing $pin as a portable build (GGML_NATIVE off; compiles ~6 min on 2 cores)" >&2
rm -f "$marker"
CMAKE_ARGS="-DGGML_NATIVE=OFF" "$venv/bin/pip" install -q --disable-pip-version-check --no-cache-dir \
  --force-reinstall --no-deps --no-binary llama-cpp-python "$pin"
echo "$pin" > "$marker"
