#!/usr/bin/env bash
# FP32 reference benchmark (issue #2): kernel GEMMs against OpenBLAS in the same run, then
# `fireq eval` throughput (context 512, 2 threads, 20 windows of WikiText-2) and peak RSS,
# three runs, medians. Baseline for the end-to-end number: transformers/PyTorch FP32 CPU
# measured on this machine class at 250–330 tokens/s (issue #2; PyTorch is not installable
# here, so it is not re-measured in this run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=${FIREQ_MODEL:-$root/.cache/models/smollm2-135m-instruct}
text=$root/../shared/data/wikitext-2-raw-test.raw
[ -f "$model/model.safetensors" ] || bash Scripts/fetch-default-model.sh
swift build -c release >/dev/null
bin=.build/release/fireq
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

echo "== GEMM kernels (2 threads): packed FP32 kernel vs OpenBLAS SGEMM, same run"
$bin bench --threads 2

echo "== fireq eval (FP32 reference), context 512, 20 windows, 2 threads"
tps=(); rss=()
for i in 1 2 3; do
  out=$(/usr/bin/time -f "%M" -o /tmp/fireq-bench-rss.$$ $bin eval --model "$model" --text "$text" --context 512 --windows 20 --threads 2 --json)
  tps+=("$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_second"])')")
  rss+=("$(cat /tmp/fireq-bench-rss.$$)")
  echo "run $i: $(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.1f tokens/s, ppl %.4f" % (d["tokens_per_second"], d["perplexity"]))'), peak RSS $(( ${rss[-1]} / 1024 )) MiB"
done
rm -f /tmp/fireq-bench-rss.$$
python3 - "${tps[@]}" "${rss[@]}" <<'PY'
import statistics, sys
v = [float(x) for x in sys.argv[1:]]
tps, rss = v[:3], v[3:]
m = statistics.median(tps)
print(f"median {m:.1f} tokens/s = {m/330:.2f}x .. {m/250:.2f}x PyTorch FP32 (250-330 tokens/s); "
      f"peak RSS median {statistics.median(rss)/1024:.0f} MiB (limit 1024 MiB, PyTorch 1.4 GB)")
PY
