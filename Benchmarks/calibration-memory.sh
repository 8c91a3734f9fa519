#!/usr/bin/env bash
# Calibration benchmark (issue #3): `fireq calibrate` on the default model and on a 2x-deeper
# copy (layers repeated, written by `fireq stack-layers`), 10 x 2048 tokens of Tiny Shakespeare,
# 2 threads. Reports wall time and peak RSS of both; the deeper model must stay within +10 % RSS.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=${FIREQ_MODEL:-$root/.cache/models/smollm2-135m-instruct}
deep=$root/.cache/models/smollm2-135m-instruct-x2
text=$root/../shared/data/tinyshakespeare.txt
[ -f "$model/model.safetensors" ] || bash Scripts/fetch-default-model.sh
swift build -c release >/dev/null
bin=.build/release/fireq
[ -f "$deep/model.safetensors" ] || $bin stack-layers --model "$model" --out "$deep" --factor 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for m in "$model" "$deep"; do
  /usr/bin/time -f "%e %M" -o "$tmp/time" $bin calibrate --model "$m" --text "$text" --samples 10 --seq-len 2048 \
    --threads 2 --out "$tmp/stats.h5" --force 2>/dev/null
  read -r wall rss < "$tmp/time"
  echo "$(basename "$m"): wall ${wall}s, peak RSS $((rss / 1024)) MiB"
  echo "$rss" >> "$tmp/rss"
done
python3 - "$tmp/rss" <<'PY'
import sys
a, b = [int(x) for x in open(sys.argv[1]).read().split()]
print(f"deeper/default peak RSS = {b / a:.3f} (limit 1.10); default {a / 1024:.0f} MiB (limit 600 MiB)")
PY
