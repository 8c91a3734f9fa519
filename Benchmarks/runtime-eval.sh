#!/usr/bin/env bash
# INT4-FP8 runtime against its baselines, in one run (issues #5, #14):
#   1. `fireq bench`: the INT4×FP8 linear (FP8 activation quantization + GEMM on the resident INT4
#      codes + epilogue) and the lm_head GEMM against OpenBLAS SGEMM at the model's shapes
#      (medians of 7), and the INT8 lm_head (recipe lm_head.format "int8") against the 16-bit one
#      at 256 rows and at 1 row;
#   2. perplexity throughput at context 512 on 2 threads, 40 windows of WikiText-2: the packed
#      FireQ model (paper recipe, fireq-plus, and both with the INT8 lm_head) on the runtime and the
#      FP32 reference, alternating, 3 runs each; medians, ratio, peak RSS, and resident memory right
#      after loading against the weight files' bytes;
#   3. single-token decode (`fireq generate`, 128 greedy tokens after a short prompt, 2 threads),
#      3 runs each, medians: the runtime as it is (INT4 codes resident, decoded in registers;
#      persistent thread pool), the previous runtime (FIREQ_INT4_RESIDENT=0 FIREQ_POOL=0: ŵ
#      expanded to binary16 panels, Dispatch threads — "today's binary16 decoder" of issue #14),
#      the expanded weights with the pool (FIREQ_INT4_RESIDENT=0), the runtime with the INT8
#      lm_head, and the FP32 reference decoder;
#   4. the packed models' perplexity (2 windows; paper recipe without and with the INT8 lm_head)
#      on every kernel path the CPU has: equal digits.
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
# The default recipe (fireq-plus: groups of 32, INT4 K/V in groups of 16 with searched scales) as well.
plus=.cache/bench/smollm2-fireq-plus
if [ ! -f "$plus/model.safetensors" ]; then
  # (statistics from before the integrity block are refused: recalibrate once)
  $bin quantize --model "$model" --stats .cache/bench/stats.h5 --recipe Calibration/recipes/fireq-plus.json --out "$plus" --force \
    || { $bin calibrate --model "$model" --text ../shared/data/tinyshakespeare.txt --samples 10 --seq-len 2048 --out .cache/bench/stats.h5 --force
         $bin quantize --model "$model" --stats .cache/bench/stats.h5 --recipe Calibration/recipes/fireq-plus.json --out "$plus" --force; }
fi
# The same two recipes with the INT8 lm_head (the packed weights are identical; only the recipe differs).
for r in fireq-int8-head fireq-plus-int8-head; do
  [ -f ".cache/bench/smollm2-$r/model.safetensors" ] || \
    $bin quantize --model "$model" --stats .cache/bench/stats.h5 --recipe "Calibration/recipes/$r.json" --out ".cache/bench/smollm2-$r" --force
done
packed8=.cache/bench/smollm2-fireq-int8-head; plus8=.cache/bench/smollm2-fireq-plus-int8-head
$bin bench --threads 2
for i in 1 2 3; do
  for lm in "fp32-reference:$model" "int4-fp8-runtime:$packed" "int4-fp8-runtime-fireq-plus:$plus" \
            "int4-fp8-runtime-int8-head:$packed8" "int4-fp8-runtime-fireq-plus-int8-head:$plus8"; do
    label=${lm%%:*}; m=${lm#*:}
    /usr/bin/time -f "%M" -o .cache/bench/rss.txt $bin eval --model "$m" --text "$text" --context 512 --windows 40 --threads 2 --json \
      > .cache/bench/eval.json
    python3 -c "import json,sys; j=json.load(open('.cache/bench/eval.json')); print('$label', j['tokens_per_second'], j['perplexity'], open('.cache/bench/rss.txt').read().split()[-1], j['resident_bytes_after_load'], j['weights_file_bytes'])"
  done
done | tee .cache/bench/runs.txt
python3 - .cache/bench/runs.txt <<'PY'
import sys, statistics
runs = {}
for line in open(sys.argv[1]):
    e, tps, ppl, rss, loaded, files = line.split()
    runs.setdefault(e, []).append((float(tps), float(ppl), int(rss) // 1024, int(loaded) / 2**20, int(files) / 2**20))
for e, r in runs.items():
    print(f"{e}: tokens/s {[round(x[0], 1) for x in r]} median {statistics.median(x[0] for x in r):.1f}; ppl {r[0][1]:.4f}; "
          f"peak RSS {max(x[2] for x in r)} MiB; resident after load {r[0][3]:.0f} MiB for {r[0][4]:.0f} MiB of weight files "
          f"({r[0][3] / r[0][4]:.2f}x)")
q, f = (statistics.median(x[0] for x in runs[k]) for k in ("int4-fp8-runtime", "fp32-reference"))
rq, rf = (max(x[2] for x in runs[k]) for k in ("int4-fp8-runtime", "fp32-reference"))
print(f"runtime / FP32 reference throughput: {q / f:.2f}x; peak RSS runtime / reference: {rq / rf:.2f}x")
p = statistics.median(x[0] for x in runs["int4-fp8-runtime-fireq-plus"])
print(f"runtime with fireq-plus (the default recipe) / FP32 reference throughput: {p / f:.2f}x")
for k, what in (("int4-fp8-runtime-int8-head", "paper recipe"), ("int4-fp8-runtime-fireq-plus-int8-head", "fireq-plus")):
    h = statistics.median(x[0] for x in runs[k])
    print(f"runtime with the INT8 lm_head ({what}) / FP32 reference throughput: {h / f:.2f}x; peak RSS / reference: {max(x[2] for x in runs[k]) / rf:.2f}x")
PY
for i in 1 2 3; do
  for variant in "int4-resident:" "previous-binary16:FIREQ_INT4_RESIDENT=0 FIREQ_POOL=0" "binary16-with-pool:FIREQ_INT4_RESIDENT=0" "int8-head:" "fp32-reference:"; do
    name=${variant%%:*}; envs=${variant#*:}
    m=$packed; [ "$name" = fp32-reference ] && m=$model; [ "$name" = int8-head ] && m=$packed8
    env $envs X=1 $bin generate --model "$m" --prompt "The history of the city begins" --max-tokens 128 --no-stop-at-eos \
      --threads 2 2>&1 >/dev/null | sed -n "s/.*generated \([0-9]*\) tokens \([0-9.]*\) tokens\/s.*/$name \2/p"
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
print(f"decode, INT4-resident runtime / previous binary16 decoder: {m['int4-resident'] / m['previous-binary16']:.2f}x; "
      f"/ binary16 with the pool: {m['int4-resident'] / m['binary16-with-pool']:.2f}x; / FP32 reference decoder: {m['int4-resident'] / m['fp32-reference']:.2f}x")
print(f"decode, with the INT8 lm_head / previous binary16 decoder: {m['int8-head'] / m['previous-binary16']:.2f}x; / without it: {m['int8-head'] / m['int4-resident']:.2f}x")
PY
for pm in "$packed" "$packed8"; do
  for isa in avx512 avx2 portable; do
    FIREQ_ISA=$isa $bin eval --model "$pm" --text "$text" --context 512 --windows 2 --threads 2 --json 2>/dev/null \
      | python3 -c "import json,sys; j=json.load(sys.stdin); print('$(basename "$pm")', '$isa', repr(j['perplexity']), repr(j['mean_nll']))" 2>/dev/null || echo "$isa: not on this CPU"
  done
done
# 5. Two jobs on one machine (oversubscribed: 2 × 2 threads on the cores): per-process decode and
#    eval throughput against the same command alone, 3 runs each; a fair share is 0.5×.
for i in 1 2 3; do
  for kind in alone together; do
    gen() { $bin generate --model "$packed" --prompt "The history of the city begins" --max-tokens 128 --no-stop-at-eos --threads 2 2>&1 >/dev/null \
      | sed -n "s/.*generated [0-9]* tokens \([0-9.]*\) tokens\/s.*/decode-$kind \1/p"; }
    ev() { $bin eval --model "$packed" --text "$text" --context 512 --windows 8 --threads 2 --json 2>/dev/null \
      | python3 -c "import json,sys; print('eval-$kind', json.load(sys.stdin)['tokens_per_second'])"; }
    if [ $kind = alone ]; then gen; ev; else { gen & gen; wait; }; { ev & ev; wait; }; fi
  done
done | tee .cache/bench/contended.txt
python3 - .cache/bench/contended.txt <<'PY'
import sys, statistics
runs = {}
for line in open(sys.argv[1]):
    k, v = line.split(); runs.setdefault(k, []).append(float(v))
for what in ("decode", "eval"):
    a, t = statistics.median(runs[what + "-alone"]), statistics.median(runs[what + "-together"])
    print(f"{what}: alone median {a:.1f} tokens/s; two jobs at once, per job {sorted(round(x, 1) for x in runs[what + '-together'])} median {t:.1f} ({t / a:.2f}x of alone; fair share 0.5x)")
PY
