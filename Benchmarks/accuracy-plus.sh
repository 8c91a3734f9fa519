#!/usr/bin/env bash
# Accuracy beyond the paper (docs/accuracy.md "Beyond the paper"): every new technique alone and
# combined, against FP16, RTN and the paper recipe, on the same windows:
#   * WikiText-2 raw test, context 512, 40 windows (both protocols from the same passes);
#   * held-out Tiny Shakespeare: the file's last 400 000 bytes (never in the calibration windows,
#     which are its first 10 × 2048 tokens ≈ 80 000 bytes), context 2048, its first 5 windows.
# Then `fireq convert` time and peak RSS of fireq-plus next to the paper recipe (same run).
# Usage: bash Benchmarks/accuracy-plus.sh [windows512]   (~40 min on 2 cores, alone)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
w512=${1:-40}
model=.cache/models/smollm2-135m-instruct
work=.cache/accuracy-plus
bin=.build/release/fireq
wiki=../shared/data/wikitext-2-raw-test.raw
mkdir -p "$work/recipes" docs/accuracy
[ -x "$bin" ] || swift build -c release
[ -f "$model/model.safetensors" ] || bash Scripts/fetch-default-model.sh
tail -c 400000 ../shared/data/tinyshakespeare.txt > "$work/shakespeare-heldout.txt"
if [ ! -f "$work/stats.h5" ]; then
  $bin calibrate --model "$model" --text ../shared/data/tinyshakespeare.txt --samples 10 --seq-len 2048 --out "$work/stats.h5"
fi
# One technique at a time on top of the paper recipe, then the combinations.
python3 - Calibration/recipes/fireq.json "$work/recipes" Calibration/recipes/fireq-plus.json <<'PY'
import json, sys, copy
paper, plus = (json.load(open(p)) for p in (sys.argv[1], sys.argv[3]))
def variant(name, desc, edit):
    r = copy.deepcopy(plus if name.startswith("fireq-plus") else paper); r["name"] = name; r["description"] = desc; edit(r)
    json.dump(r, open(f"{sys.argv[2]}/{name}.json", "w"), indent=2)
variant("fireq-g32", "paper recipe, groups of 32", lambda r: r["weights"].update(group_size=32))
variant("fireq+search", "paper recipe + scale search", lambda r: r["weights"].update(scale_search=True))
variant("fireq+gptq", "paper recipe + GPTQ", lambda r: r["weights"].update(gptq={}))
variant("fireq+v-hadamard", "paper recipe + V rotation folded into v_proj/o_proj", lambda r: r["smoothing"].update(v_hadamard=True))
variant("fireq+qk-hadamard", "paper recipe + run-time Q/K rotation", lambda r: r["attention"].update(qk_hadamard=True))
variant("fireq+kv-g16", "paper recipe + INT4 K/V in groups of 16", lambda r: r["attention"].update(kv_group_size=16))
variant("fireq+kv-search", "paper recipe + searched INT4 K/V scales", lambda r: r["attention"].update(kv_scale_search=True))
variant("fireq-plus-w4a8", "fireq-plus weights and FP8 activations, Q/K/V in FP32", lambda r: r["attention"].update(q_format="fp32", kv_bits=None))
variant("fireq-plus+gptq", "fireq-plus + GPTQ", lambda r: r["weights"].update(gptq={}))
search = json.load(open(sys.argv[3].replace("fireq-plus.json", "fireq-plus-search.json")))["search"]
variant("fireq+constants", "paper recipe + FireQ constants searched per layer (fireq-plus-search's grid)", lambda r: r.update(search=search))
PY
r=$work/recipes
recipes="Calibration/recipes/rtn.json Calibration/recipes/fireq.json $r/fireq-g32.json $r/fireq+search.json $r/fireq+gptq.json
$r/fireq+v-hadamard.json $r/fireq+qk-hadamard.json $r/fireq+kv-g16.json $r/fireq+kv-search.json $r/fireq+constants.json
Calibration/recipes/fireq-plus-g64.json Calibration/recipes/fireq-plus.json $r/fireq-plus-w4a8.json $r/fireq-plus+gptq.json
Calibration/recipes/fireq-plus-search.json"
models=()
for r in $recipes; do
  name=$(basename "$r" .json)
  $bin quantize --model "$model" --stats "$work/stats.h5" --recipe "$r" --out "$work/$name" --force 2>/dev/null
  models+=(--model "$work/$name")
done
$bin compare --baseline "$model" "${models[@]}" --text "$wiki" --context 512 --windows "$w512" \
  --title "Beyond the paper: WikiText-2, context 512, $w512 windows" --report docs/accuracy/plus-512
# The second text, every row again.
$bin compare --baseline "$model" "${models[@]}" --text "$work/shakespeare-heldout.txt" \
  --context 2048 --windows 5 --title "Beyond the paper: held-out Tiny Shakespeare (last 400 000 bytes), context 2048, 5 windows" \
  --report docs/accuracy/plus-heldout-2048
# Convert time and peak memory, paper recipe vs fireq-plus (same calibration, evaluation and machine).
for r in fireq fireq-plus fireq-plus-search; do
  /usr/bin/time -f "$r %e s %M KiB" -o "$work/time-$r.txt" $bin convert --model "$model" --out "$work/convert-$r" \
    --recipe Calibration/recipes/$r.json --text ../shared/data/tinyshakespeare.txt --samples 10 --seq-len 2048 \
    --eval-text "$wiki" --eval-context 512 --eval-windows 8 --force > /dev/null 2>&1
done
python3 - docs/accuracy/plus-512.json docs/accuracy/plus-heldout-2048.json "$work/time-fireq.txt" "$work/time-fireq-plus.txt" "$work/time-fireq-plus-search.txt" > docs/accuracy/plus-summary.md <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
print(f"| method | WikiText-2 ctx 512, all ({a['protocol']['windows']} windows) | Δ | llama.cpp protocol | Δ | KL | top-1 | held-out Shakespeare ctx 2048 ({b['protocol']['windows']} windows) | Δ | KL | top-1 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
def cells(x, base):
    if base: return [f"{x['perplexity_all']:.3f}", "–", f"{x['perplexity_llamacpp']:.3f}", "–", "–", "–"]
    return [f"{x['perplexity_all']:.3f}", f"{x['delta_perplexity_all_percent']:+.1f} %", f"{x['perplexity_llamacpp']:.3f}",
            f"{x['delta_perplexity_llamacpp_percent']:+.1f} %", f"{x['kl_mean']:.4f}", f"{100 * x['top1_agreement']:.1f} %"]
def held(x, base):
    if base: return [f"{x['perplexity_all']:.3f}", "–", "–", "–"]
    return [f"{x['perplexity_all']:.3f}", f"{x['delta_perplexity_all_percent']:+.1f} %", f"{x['kl_mean']:.4f}", f"{100 * x['top1_agreement']:.1f} %"]
print("| " + " | ".join(["FP16 weights (FP32 reference)"] + cells(a["baseline"], True) + held(b["baseline"], True)) + " |")
heldout = {y["label"]: y for y in b["models"]}
for x in a["models"]:
    y = heldout.get(x["label"])
    print("| " + " | ".join([x["label"]] + cells(x, False) + (held(y, False) if y else ["", "", "", ""])) + " |")
print()
for p in sys.argv[3:]:
    name, secs, _, kib, _ = open(p).read().split()
    print(f"* `fireq convert` with {name}: {float(secs):.0f} s, peak RSS {int(kib) // 1024} MiB")
PY
cat docs/accuracy/plus-summary.md
