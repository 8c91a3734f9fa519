#!/usr/bin/env bash
# fireq against llama.cpp on the same machine, both benchmark models (issue #29), whole processes:
#   * perplexity: `fireq eval` of the packed default recipe (RECIPE, INT4-FP8 runtime) against
#     `llama-perplexity` on llama.cpp's Q4_0 GGUF of the same weights — WikiText-2 raw test,
#     context 512, the first W windows (llama.cpp: --chunks W; both score the second half of each
#     window); wall seconds and peak RSS (/usr/bin/time);
#   * decode: `fireq generate` (128 tokens after a 16-token prompt, greedy, no EOS stop) against
#     `llama-bench -p 0 -n 128` (tg128) on the Q4_0 GGUF; tokens/s;
#   * prompt: `llama-bench -p 512 -n 0` (pp512) against fireq eval's tokens/s at context 512.
# Each measurement runs R times (default 3), fireq and llama.cpp alternating; medians and the
# ratio fireq ÷ llama.cpp (speed) or llama.cpp ÷ fireq (time) go to a table on stdout and to
# .cache/vs-llamacpp/results.json. 2 threads for both (the machine's cores; THREADS overrides).
#
# llama.cpp: the tools are built once from the source vendored in the pinned llama-cpp-python
# sdist (the same llama.cpp the tests run; ~6 min on 2 cores, needs cmake: pip-installed into
# the venv) into .cache/llamacpp/build with GGML_NATIVE (what a user building it here gets).
#
#   bash Benchmarks/vs-llamacpp.sh [smollm2|qwen2|all]     (W=16 R=3 THREADS=2 RECIPE=fireq-plus-6)
# Needs the models (Scripts/fetch-default-model.sh, Scripts/fetch-qwen2-model.sh) and their
# statistics and Q4_0 GGUFs from Benchmarks/accuracy-models.sh (made here when missing).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
which=${1:-all}
W=${W:-16}
R=${R:-3}
threads=${THREADS:-2}
recipe=${RECIPE:-fireq-plus-6}  # the packed folder's recipe (convert's default); the speed is the runtime's
bin=.build/release/fireq
wiki=../shared/data/wikitext-2-raw-test.raw
py=.cache/venv/bin/python
out=.cache/vs-llamacpp
mkdir -p "$out"
[ -x "$bin" ] || swift build -c release

# --- llama.cpp tools -------------------------------------------------------------------------
ver=$(sed -n 's/^llama-cpp-python==\([0-9.]*\).*/\1/p' Scripts/requirements-model.txt)
lc=.cache/llamacpp
build_llamacpp() {   # build_llamacpp DIR CMAKE_OPTION…
  local dir=$1; shift
  .cache/venv/bin/cmake -S "$lc/llama_cpp_python-$ver/vendor/llama.cpp" -B "$dir" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF "$@" > "$dir.log"
  .cache/venv/bin/cmake --build "$dir" -j "$threads" --target llama-bench llama-perplexity >> "$dir.log"
}
if [ ! -x "$lc/build/bin/llama-bench" ] || [ ! -x "$lc/build/bin/llama-perplexity" ]; then
  [ -x .cache/venv/bin/cmake ] || .cache/venv/bin/pip install -q "cmake==3.31.6"
  mkdir -p "$lc"
  [ -f "$lc/llama_cpp_python-$ver.tar.gz" ] ||
    .cache/venv/bin/pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$ver" -d "$lc"
  tar xzf "$lc/llama_cpp_python-$ver.tar.gz" -C "$lc"
  build_llamacpp "$lc/build" -DGGML_NATIVE=ON
fi
bin_dir=$lc/build/bin
# AMX: a VM may list amx_tile / amx_int8 in /proc/cpuinfo and still fault on the tile instructions
# (2026-12-07, an Intel Xeon guest: SIGILL at `tilezero` in ggml_backend_amx_mul_mat, in the
# native build and in a native llama-cpp-python wheel). Probe the native build on a one-chunk
# perplexity; if it dies of SIGILL, use a build with the same x86 extensions this CPU lists but no
# AMX (GGML_NATIVE off, each extension named), and say so.
probe_model=.cache/accuracy-models/smollm2/llamacpp-q4_0.gguf
[ -f "$probe_model" ] || probe_model=.cache/accuracy-models/qwen2/llamacpp-q4_0.gguf
if [ -f "$probe_model" ]; then
  set +e
  printf 'The history of the city begins with a small settlement on the river, where %.0s' $(seq 40) > "$out/probe.txt"
  "$bin_dir/llama-perplexity" -m "$probe_model" -f "$out/probe.txt" -c 128 --chunks 1 -t "$threads" > "$out/probe.log" 2>&1
  rc=$?
  set -e
  if [ $rc -eq 132 ]; then
    has() { grep -qw "$1" /proc/cpuinfo && echo ON || echo OFF; }
    [ -x "$lc/build-noamx/bin/llama-bench" ] || build_llamacpp "$lc/build-noamx" -DGGML_NATIVE=OFF \
      -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI="$(has avx_vnni)" \
      -DGGML_AVX512="$(has avx512f)" -DGGML_AVX512_VBMI="$(has avx512vbmi)" -DGGML_AVX512_VNNI="$(has avx512_vnni)" \
      -DGGML_AVX512_BF16="$(has avx512_bf16)" -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
    bin_dir=$lc/build-noamx/bin
    echo "llama.cpp: the native build dies of SIGILL in its AMX kernels on this machine; using the same extensions without AMX ($bin_dir)" >&2
  fi
fi
bench=$bin_dir/llama-bench
perplexity=$bin_dir/llama-perplexity

# --- helpers ---------------------------------------------------------------------------------
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# timed NAME CMD…: appends "wall_s max_rss_kib" of one whole-process run to $out/NAME.time
timed() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$out/$name.one" "$@" > "$out/$name.log" 2>&1
  cat "$out/$name.one" >> "$out/$name.time"
}

run_model() {
  local name=$1 model=$2 work=.cache/accuracy-models/$1
  local packed=$work/$recipe q4=$work/llamacpp-q4_0.gguf
  if [ ! -d "$packed" ]; then
    [ -f "$work/stats.h5" ] || { echo "missing $work/stats.h5 (Benchmarks/accuracy-models.sh $name makes it)" >&2; exit 1; }
    $bin quantize --model "$model" --stats "$work/stats.h5" --recipe "Calibration/recipes/$recipe.json" --out "$packed"
  fi
  [ -f "$q4" ] || { echo "missing $q4 (Benchmarks/accuracy-models.sh $name makes it)" >&2; exit 1; }
  rm -f "$out/$name".*.time
  local prompt="The history of the city begins with a small settlement on the river, where"
  for i in $(seq "$R"); do
    echo "[$name] round $i/$R" >&2
    timed "$name.fireq-eval" $bin eval --model "$packed" --text "$wiki" --windows "$W" --protocol llamacpp --threads "$threads"
    timed "$name.llama-ppl" $perplexity -m "$q4" -f "$wiki" -c 512 --chunks "$W" -t "$threads"
    timed "$name.fireq-gen" $bin generate --model "$packed" --prompt "$prompt" --max-tokens 128 --no-stop-at-eos --threads "$threads"
    sed -n 's/.*generated [0-9]* tokens \([0-9.]*\) tokens\/s.*/\1/p' "$out/$name.fireq-gen.log" >> "$out/$name.fireq-tg.time"
    sed -n 's/^\([0-9.]*\) tokens\/s on.*/\1/p' "$out/$name.fireq-eval.log" >> "$out/$name.fireq-pp.time"
    $bench -m "$q4" -p 512 -n 128 -t "$threads" -r 1 -o csv > "$out/$name.llama-bench.csv" 2> /dev/null
    # columns: …,n_prompt,n_gen,…,avg_ts,… — read by header name
    $py - "$out/$name.llama-bench.csv" "$out/$name" << 'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for r in rows:
    kind = "pp" if int(r["n_prompt"]) > 0 else "tg"
    open(f"{sys.argv[2]}.llama-{kind}.time", "a").write(r["avg_ts"] + "\n")
EOF
  done
  local fe le fg lg fpp lpp frss lrss
  fe=$(cut -d' ' -f1 "$out/$name.fireq-eval.time" | median); le=$(cut -d' ' -f1 "$out/$name.llama-ppl.time" | median)
  frss=$(cut -d' ' -f2 "$out/$name.fireq-eval.time" | median); lrss=$(cut -d' ' -f2 "$out/$name.llama-ppl.time" | median)
  fg=$(median < "$out/$name.fireq-tg.time"); lg=$(median < "$out/$name.llama-tg.time")
  fpp=$(median < "$out/$name.fireq-pp.time"); lpp=$(median < "$out/$name.llama-pp.time")
  local fppl lppl
  fppl=$(sed -n 's/^perplexity \([0-9.]*\).*/\1/p' "$out/$name.fireq-eval.log")
  lppl=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$out/$name.llama-ppl.log")
  $py - "$name" "$fe" "$le" "$frss" "$lrss" "$fg" "$lg" "$fpp" "$lpp" "$fppl" "$lppl" "$W" "$R" "$threads" << 'EOF'
import json, os, sys
n, fe, le, frss, lrss, fg, lg, fpp, lpp, fppl, lppl, w, r, t = sys.argv[1:]
fe, le, frss, lrss, fg, lg, fpp, lpp = map(float, (fe, le, frss, lrss, fg, lg, fpp, lpp))
print(f"| {n}: perplexity {w} × 512 (whole process) | {fe:.2f} s, {frss/1024:.0f} MiB (ppl {fppl}) | "
      f"{le:.2f} s, {lrss/1024:.0f} MiB (ppl {lppl}) | **{le/fe:.2f}× faster**, memory {frss/lrss:.2f}× |")
print(f"| {n}: decode 128 tokens | {fg:.1f} tokens/s | {lg:.1f} tokens/s | **{fg/lg:.2f}×** |")
print(f"| {n}: prompt (fireq eval at 512 vs pp512) | {fpp:.1f} tokens/s | {lpp:.1f} tokens/s | {fpp/lpp:.2f}× |")
path = ".cache/vs-llamacpp/results.json"
res = json.load(open(path)) if os.path.exists(path) else {}
res[n] = dict(windows=int(w), runs=int(r), threads=int(t), eval_s=[fe, le], eval_rss_kib=[frss, lrss],
              eval_ppl=[fppl, lppl], decode_tps=[fg, lg], prompt_tps=[fpp, lpp])
json.dump(res, open(path, "w"), indent=1)
EOF
}

echo "| work | fireq ($recipe, INT4-FP8 runtime) | llama.cpp Q4_0 | ratio |"
echo "|---|---|---|---|"
if [ "$which" = all ] || [ "$which" = smollm2 ]; then run_model smollm2 .cache/models/smollm2-135m-instruct; fi
if [ "$which" = all ] || [ "$which" = qwen2 ]; then run_model qwen2 .cache/models/qwen2.5-coder-1.5b-instruct; fi
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')" >&2
