#!/usr/bin/env bash
# Large-model rehearsal (issues #11 and #14): random-weight checkpoints with Llama-3-8B's layer
# shape (hidden 4096, 32 / 8 heads, intermediate 14336, vocab 128256, BF16, sharded), 2 and 4
# layers. For each: calibrate (2 × 256 tokens), quantize (paper recipe), then `fireq eval` of the
# BF16 source on the FP32 reference and of the packed folder on the INT4-FP8 runtime (4 windows of
# 256); wall time and peak RSS of every step, the runtime's resident bytes after load against the
# packed folder's bytes, and the growth from 2 to 4 layers (per layer).
# Needs ~8 GB of free disk under .cache/rehearsal (each size is deleted after it is measured,
# unless KEEP=1); ~10 minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=.build/release/fireq
py=.cache/venv/bin/python
[ -x "$bin" ] || swift build -c release
[ -x "$py" ] || { echo "error: $py missing: run bash Scripts/install-deps.sh first" >&2; exit 1; }
text=../shared/data/wikitext-2-raw-test.raw
calib=../shared/data/tinyshakespeare.txt
out=.cache/rehearsal
mkdir -p "$out"
results=$out/results.txt
: > "$results"
measure() {   # name, command...: appends "name seconds peak_kib"
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$out/time.txt" "$@" > "$out/$name.out" 2> "$out/$name.err" || { cat "$out/$name.err" >&2; exit 1; }
  echo "$name $(cat "$out/time.txt")" | tee -a "$results"
}
for layers in 2 4; do
  m=$out/llama3-8b-${layers}l
  [ -f "$m/model.safetensors.index.json" ] || $py Scripts/make_random_checkpoint.py --shape llama3-8b --layers $layers --out "$m"
  measure calibrate-$layers $bin calibrate --model "$m" --text "$calib" --samples 2 --seq-len 256 --out "$m.stats.h5" --force --threads 2
  measure quantize-$layers $bin quantize --model "$m" --stats "$m.stats.h5" --recipe Calibration/recipes/fireq.json --out "$m.fireq" --force
  measure eval-fp32-$layers $bin eval --model "$m" --text "$text" --context 256 --windows 4 --threads 2 --json
  measure eval-int4-$layers $bin eval --model "$m.fireq" --text "$text" --context 256 --windows 4 --threads 2 --json
  $py - "$out/eval-int4-$layers.out" "$out/eval-fp32-$layers.out" "$layers" <<'PY' | tee -a "$results"
import json, sys
q, f = (json.load(open(p)) for p in sys.argv[1:3])
print(f"layers {sys.argv[3]}: packed folder {q['weights_file_bytes'] / 2**20:.0f} MiB, runtime resident after load "
      f"{q['resident_bytes_after_load'] / 2**20:.0f} MiB ({q['resident_bytes_after_load'] / q['weights_file_bytes']:.3f}x); "
      f"BF16 source {f['weights_file_bytes'] / 2**20:.0f} MiB, FP32 reference resident after load {f['resident_bytes_after_load'] / 2**20:.0f} MiB "
      f"({f['resident_bytes_after_load'] / f['weights_file_bytes']:.3f}x); tokens/s runtime {q['tokens_per_second']:.1f}, reference {f['tokens_per_second']:.1f}")
PY
  [ "${KEEP:-0}" = 1 ] || rm -rf "$m" "$m.fireq" "$m.stats.h5"   # ~5-7 GB per size; KEEP=1 keeps them
done
$py - "$results" <<'PY'
import sys
r = {}
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) == 3 and p[0][-1].isdigit():
        r[p[0]] = (float(p[1]), int(p[2]) / 1024)
for step in ("calibrate", "quantize", "eval-fp32", "eval-int4"):
    (t2, m2), (t4, m4) = r[f"{step}-2"], r[f"{step}-4"]
    print(f"{step:10s} 2 layers {t2:7.1f} s {m2:7.0f} MiB | 4 layers {t4:7.1f} s {m4:7.0f} MiB | "
          f"per extra layer {(t4 - t2) / 2:6.1f} s {(m4 - m2) / 2:+6.0f} MiB peak")
PY
