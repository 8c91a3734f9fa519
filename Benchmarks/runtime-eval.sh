#!/usr/bin/env bash
# INT4-FP8 runtime against its baselines, in one run (issue #5):
#   1. `fireq bench`: the INT4×FP8 linear (FP8 activation quantization + GEMM + epilogue) and the
#      lm_head GEMM against OpenBLAS SGEMM at the model's shapes (medians of 7);
#   2. perplexity throughput at context 512 on 2 threads, 20 windows of WikiText-2: the packed
#      FireQ model on the runtime and the FP32 reference, alternating, 3 runs each; medians, ratio,
#      and peak RSS.
# Needs the default model; builds a FireQ packed model in .cache/bench if missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=.build/release/fireq
model=.cache/models/smollm2-135m-instruct
text=../shared/data/wikitext-2-raw-test.raw
mkdir -p .cache/bench
[ -x "$bin" ] || swift build -c release
packed=.cache/bench/smollm2-fireq
if [ ! -f "$packed/model.safetensors" ]; then
  $bin calibrate --model "$model" --text ../shared/data/tinyshakespeare.txt --samples 10 --seq-len 2048 --out .cache/bench/stats.h5 --force
  $bin quantize --model "$model" --stats .cache/bench/stats.h5 --recipe Calibration/recipes/fireq.json --out "$packed" --force
fi
$bin bench --threads 2
for i in 1 2 3; do
  for m in "$model" "$packed"; do
    /usr/bin/time -f "%M" -o .cache/bench/rss.txt $bin eval --model "$m" --text "$text" --context 512 --windows 20 --threads 2 --json \
      > .cache/bench/eval.json
    python3 -c "import json,sys; j=json.load(open('.cache/bench/eval.json')); print(j['engine'], j['tokens_per_second'], j['perplexity'], open('.cache/bench/rss.txt').read().split()[-1])"
  done
done | tee .cache/bench/runs.txt
python3 - .cache/bench/runs.txt <<'PY'
import sys, statistics
runs = {}
for line in open(sys.argv[1]):
    e, tps, ppl, rss = line.split()
    runs.setdefault(e, []).append((float(tps), float(ppl), int(rss) // 1024))
for e, r in runs.items():
    print(f"{e}: tokens/s {[round(x[0], 1) for x in r]} median {statistics.median(x[0] for x in r):.1f}; ppl {r[0][1]:.4f}; peak RSS {max(x[2] for x in r)} MiB")
q, f = (statistics.median(x[0] for x in runs[k]) for k in ("int4-fp8-runtime", "fp32-reference"))
print(f"runtime / FP32 reference throughput: {q / f:.2f}x")
PY
