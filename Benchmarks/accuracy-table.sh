#!/usr/bin/env bash
# Accuracy table of the default model (docs/accuracy.md): every shipped recipe plus a loss
# breakdown of FireQ (weights only, weights + FP8 activations, no FP8 re-rounding, G = 32),
# compared with the FP32 reference on WikiText-2 raw test at context 512 (40 windows; both
# protocols come from the same windows) and context 2048 (10 windows).
# Usage: bash Benchmarks/accuracy-table.sh [windows512] [windows2048]   (~30 min on 2 cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
w512=${1:-40}
w2048=${2:-10}
model=.cache/models/smollm2-135m-instruct
work=.cache/accuracy
text=../shared/data/wikitext-2-raw-test.raw
bin=.build/release/fireq
mkdir -p "$work/recipes" docs/accuracy
[ -x "$bin" ] || swift build -c release
[ -f "$model/model.safetensors" ] || bash Scripts/fetch-default-model.sh
if [ ! -f "$work/stats.h5" ]; then
  $bin calibrate --model "$model" --text ../shared/data/tinyshakespeare.txt --samples 10 --seq-len 2048 --out "$work/stats.h5"
fi
# Breakdown recipes derived from fireq.json (same smoothing, one numeric option changed).
python3 - Calibration/recipes/fireq.json "$work/recipes" <<'PY'
import json, sys, copy
base = json.load(open(sys.argv[1]))
def variant(name, desc, edit):
    r = copy.deepcopy(base); r["name"] = name; r["description"] = desc; edit(r)
    json.dump(r, open(f"{sys.argv[2]}/{name}.json", "w"), indent=2)
variant("fireq-w4-only", "FireQ weights (INT4, FP8 scales, smoothing) with FP32 activations, Q, K and V: the weights' share of the loss.",
        lambda r: (r["activations"].update(format="fp32"), r["attention"].update(q_format="fp32", kv_bits=None)))
variant("fireq-w4a8", "FireQ weights and FP8 activations, Q/K/V in FP32: adds the activations' share.",
        lambda r: r["attention"].update(q_format="fp32", kv_bits=None))
variant("fireq-no-reround", "FireQ without the FP8 re-rounding of q*s (Decision, FIREQ-METHOD 2.5).",
        lambda r: r["weights"].update(fp8_rerounding=False))
variant("fireq-g32", "FireQ with groups of 32: matches the Q4_1 grid of this model's source weights, so it flatters this model only.",
        lambda r: r["weights"].update(group_size=32))
PY
recipes="Calibration/recipes/rtn.json Calibration/recipes/smoothquant.json Calibration/recipes/ablation-linear.json
Calibration/recipes/ablation-pre-rope.json Calibration/recipes/fireq.json Calibration/recipes/fireq-bf16-scales.json
$work/recipes/fireq-w4-only.json $work/recipes/fireq-w4a8.json $work/recipes/fireq-no-reround.json $work/recipes/fireq-g32.json"
models=()
for r in $recipes; do
  name=$(basename "$r" .json)
  $bin quantize --model "$model" --stats "$work/stats.h5" --recipe "$r" --out "$work/$name" --force 2>/dev/null
  models+=(--model "$work/$name")
done
$bin compare --baseline "$model" "${models[@]}" --text "$text" --context 512 --windows "$w512" \
  --title "SmolLM2-135M-Instruct on WikiText-2: context 512, $w512 windows" --report docs/accuracy/context-512
$bin compare --baseline "$model" "${models[@]}" --text "$text" --context 2048 --windows "$w2048" \
  --title "SmolLM2-135M-Instruct on WikiText-2: context 2048, $w2048 windows" --report docs/accuracy/context-2048
# Where the loss comes from, layer by layer (each layer alone on the FP16 model's input to it), for
# the ablation ladder and the breakdown, on 16 windows of 512.
$bin compare --baseline "$model" --model "$work/rtn" --model "$work/ablation-linear" --model "$work/ablation-pre-rope" \
  --model "$work/fireq" --model "$work/fireq-w4-only" --model "$work/fireq-w4a8" --text "$text" --context 512 --windows 16 \
  --title "SmolLM2-135M-Instruct on WikiText-2: loss by layer (context 512, 16 windows)" --report docs/accuracy/layers-512
# One combined table (docs/accuracy/summary.md) from the two reports.
python3 - docs/accuracy/context-512.json docs/accuracy/context-2048.json > docs/accuracy/summary.md <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
print(f"| method | ctx 512, all ({a['protocol']['windows']} windows) | Δ | ctx 512, llama.cpp protocol | Δ | ctx 2048, all ({b['protocol']['windows']} windows) | Δ | KL mean (512) | top-1 (512) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
def row(name, x, y, base=False):
    cells = [name, f"{x['perplexity_all']:.3f}", "–" if base else f"{x['delta_perplexity_all_percent']:+.1f} %",
             f"{x['perplexity_llamacpp']:.3f}", "–" if base else f"{x['delta_perplexity_llamacpp_percent']:+.1f} %",
             f"{y['perplexity_all']:.3f}", "–" if base else f"{y['delta_perplexity_all_percent']:+.1f} %",
             "–" if base else f"{x['kl_mean']:.4f}", "–" if base else f"{100 * x['top1_agreement']:.1f} %"]
    print("| " + " | ".join(cells) + " |")
row("FP16 weights (FP32 reference)", a["baseline"], b["baseline"], True)
for x, y in zip(a["models"], b["models"]):
    row(x["label"], x, y)
PY
cat docs/accuracy/summary.md
