#!/usr/bin/env bash
# INT4-FP8 runtime against its baselines, in one run (issue #5):
#   1. `fireq bench`: the INT4×FP8 linear (FP8 activation quantization + GEMM + epilogue) and the
#      lm_head GEMM against OpenBLAS SGEMM at the model's shapes (medians of 7);
#   2. perplexity throughput at context 512 on 2 threads, 20 windows of WikiText-2: the packed
#      FireQ model on the runtime and the FP32 reference, alternating, 3 runs each; medians, ratio,
#      and peak RSS;
#   3. single-token decode (`fireq generate`, 128 greedy tokens after a short prompt, 2 threads):
#      the runtime's KV-cached decoder and the FP32 reference decoder, each with its single-row
#      binary16 GEMV and with it turned off (FIREQ_DECODE_GEMV=0: the FP32 GEMM with m = 1, the
#      baseline), 3 runs each, medians.
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
for i in 1 2 3; do
  for gemv in 1 0; do
    for m in "$model" "$packed"; do
      FIREQ_DECODE_GEMV=$gemv $bin generate --model "$m" --prompt "The history of the city begins" --max-tokens 128 --no-stop-at-eos \
        --threads 2 2>&1 >/dev/null | sed -n "s/^\([a-z0-9-]*\): .*generated \([0-9]*\) tokens \([0-9.]*\) tokens\/s.*/\1-gemv$gemv \3/p"
    done
  done
done | tee .cache/bench/decode.txt
python3 - .cache/bench/decode.txt <<'PY'
import sys, statistics
runs = {}
for line in open(sys.argv[1]):
    e, tps = line.split()
    runs.setdefault(e, []).append(float(tps))
for e, r in runs.items():
    print(f"decode {e}: tokens/s {r} median {statistics.median(r):.1f}")
m = {k: statistics.median(v) for k, v in runs.items()}
print(f"decode, runtime with GEMV / without: {m['int4-fp8-runtime-gemv1'] / m['int4-fp8-runtime-gemv0']:.2f}x; "
      f"runtime / FP32 reference decoder (both with GEMV): {m['int4-fp8-runtime-gemv1'] / m['fp32-reference-gemv1']:.2f}x")
PY
