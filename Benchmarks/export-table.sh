#!/usr/bin/env bash
# Perplexity of each export in its own runtime next to what fireq predicts (docs/exports.md):
# one packed model of the default model (paper recipe, 10 × 2048 calibration tokens; the main
# job's, or made here), exported to GGUF, compressed-tensors and MLX, then run on the same
# WikiText-2 windows (context 512, protocol 'all' and llama.cpp's) by llama.cpp (llama-cpp-python),
# transformers + compressed-tensors (torch CPU; as exported = W4A8-FP8, and W4A16) and mlx-lm
# (CPU, float32), and by `fireq eval` with --numerics fireq | weights-only | weights-fp8act.
# Usage: bash Benchmarks/export-table.sh [windows] [mlx_windows]   (defaults 40 and 4: MLX's Linux
# CPU build takes about a minute per 512-token window)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
w=${1:-40}
wm=${2:-4}
model=.cache/models/smollm2-135m-instruct
work=.cache/export-table
packed=.cache/main-job/smollm2-fireq
text=../shared/data/wikitext-2-raw-test.raw
bin=.build/release/fireq
py=.cache/venv/bin/python
mkdir -p "$work" docs
[ -x "$bin" ] || swift build -c release
[ -f "$model/model.safetensors" ] || bash Scripts/fetch-default-model.sh
"$py" -m pip install -q --disable-pip-version-check -r Scripts/requirements-model.txt -r Scripts/requirements-runtimes.txt
bash Scripts/install-llama-cpp-python.sh
if [ ! -f "$packed/model.safetensors" ]; then
  packed=$work/packed
  [ -f "$work/stats.h5" ] || $bin calibrate --model "$model" --text ../shared/data/tinyshakespeare.txt --samples 10 --seq-len 2048 --out "$work/stats.h5"
  [ -f "$packed/model.safetensors" ] || $bin quantize --model "$model" --stats "$work/stats.h5" --recipe Calibration/recipes/fireq.json --out "$packed"
fi
for f in gguf compressed-tensors mlx; do
  $bin export "$packed" --format $f --out "$work/export.$f" --force > "$work/export.$f.txt"
done
run_fireq() {  # numerics windows protocol
  $bin eval --model "$packed" --text "$text" --context 512 --windows "$2" --numerics "$1" --protocol "$3" --json
}
run_rt() {  # runtime export windows protocol
  "$py" Scripts/runtime_perplexity.py --runtime "$1" --export "$2" --fireq $bin --tokenizer "$packed" --text "$text" \
    --context 512 --windows "$3" --protocol "$4"
}
: > "$work/rows.jsonl"
row() { echo "{\"row\": \"$1\", \"windows\": $2, \"all\": $3, \"llamacpp\": $4}" >> "$work/rows.jsonl"; }
for n in fireq weights-only weights-fp8act; do
  row "fireq eval --numerics $n" $w "$(run_fireq $n $w all)" "$(run_fireq $n $w llamacpp)"
done
row "fireq eval --numerics weights-only" $wm "$(run_fireq weights-only $wm all)" "$(run_fireq weights-only $wm llamacpp)"
# One pass per runtime; both protocols come from the same logits.
rt_row() {  # label runtime export windows
  local j; j=$(run_rt "$2" "$3" "$4" all)
  row "$1" "$4" "$j" "{\"perplexity\": $(echo "$j" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["perplexity_llamacpp"])')}"
}
rt_row "llama.cpp (GGUF Q4_0)" llama.cpp "$work/export.gguf" $w
rt_row "transformers (compressed-tensors as exported: W4A8-FP8)" transformers "$work/export.compressed-tensors" $w
rt_row "transformers (compressed-tensors, W4A16)" transformers-w4a16 "$work/export.compressed-tensors" $w
rt_row "mlx-lm (MLX affine 4-bit, float32)" mlx "$work/export.mlx" $wm
"$py" - "$work/rows.jsonl" "$packed" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ref = {r["windows"]: r for r in rows if r["row"] == "fireq eval --numerics weights-only"}
print(f"Packed model: `{sys.argv[2]}`; WikiText-2 raw test, context 512, the same windows for every engine.\n")
print("| engine | windows | ppl, protocol all | vs weights-only | ppl, llama.cpp protocol | vs weights-only | seconds |")
print("|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    base = ref[r["windows"]]
    cells = []
    for p in ("all", "llamacpp"):
        x, b = r[p]["perplexity"], base[p]["perplexity"]
        cells += [f"{x:.3f}", "–" if r is base else f"{100 * (x / b - 1):+.2f} %"]
    secs = r["all"].get("seconds", r["all"].get("eval_seconds"))
    print(f"| {r['row']} | {r['windows']} | " + " | ".join(cells) + f" | {secs:.0f} |")
PY
