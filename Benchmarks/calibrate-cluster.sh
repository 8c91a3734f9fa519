#!/usr/bin/env bash
# Calibration over a cluster against one node (issue #29): the wall time of `fireq calibrate` of
# SAMPLES × SEQ Tiny Shakespeare tokens on one node, against `fireq calibrate-slurm` with PARTS
# array tasks and the dependent merge job on a private one-node Slurm cluster
# (Scripts/slurm-cluster.sh; root), and `cmp` of the two statistics files (byte-identical by
# design: per-window partial results combined in a fixed order, Formats/calibration-stats.md).
#
# Usage: bash Benchmarks/calibrate-cluster.sh [MODEL_DIR]   (default: Qwen2.5-Coder-1.5B,
#        fetched by Scripts/fetch-qwen2-model.sh)
#   env: SAMPLES, SEQ (10, 2048), PARTS (4), CPUS_PER_TASK (1), FIREQ (the binary),
#        SINGLE=STATS.h5 SINGLE_SECONDS=S: reuse a single-node run of the same settings (e.g. the
#        calibration stage of `fireq convert --keep-work`) instead of running one here.
# Writes .cache/calibrate-cluster/results.json. On one 2-core node the array tasks share the same
# two cores, so the times should match: this proves the protocol and measures its overhead; on a
# cluster the tasks run on PARTS nodes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)
say() { echo "[calibrate-cluster $(( $(date +%s) - START ))s] $*"; }
die() { say "FAILED: $*"; exit 1; }
source Scripts/slurm-cluster.sh
slurm_install
MODEL=${1:-$ROOT/.cache/models/qwen2.5-coder-1.5b-instruct}
[ -n "${1:-}" ] || bash Scripts/fetch-qwen2-model.sh
MODEL=$(cd "$MODEL" && pwd)
FIREQ=${FIREQ:-$ROOT/.build/release/fireq}
[ -x "$FIREQ" ] || swift build -c release
FIREQ=$(cd "$(dirname "$FIREQ")" && pwd)/$(basename "$FIREQ")
SAMPLES=${SAMPLES:-10} SEQ=${SEQ:-2048} PARTS=${PARTS:-4} CPT=${CPUS_PER_TASK:-1}
SHK=$(cd "$ROOT/../shared/data" && pwd)/tinyshakespeare.txt
OUT=$ROOT/.cache/calibrate-cluster
mkdir -p "$OUT"

SINGLE_SECONDS_GIVEN=${SINGLE:+1}
if [ -z "${SINGLE:-}" ]; then
    SINGLE=$OUT/single.h5
    say "single node: $SAMPLES × $SEQ tokens, --threads $(nproc)"
    t0=$(date +%s.%N)
    "$FIREQ" calibrate --model "$MODEL" --text "$SHK" --samples "$SAMPLES" --seq-len "$SEQ" --threads "$(nproc)" \
        --out "$SINGLE" > "$OUT/single.log" 2>&1
    SINGLE_SECONDS=$(python3 -c "import time; print(round(time.time() - $t0, 1))")
fi

trap 'slurm_stop; say "daemons stopped"' EXIT
slurm_start "$OUT/slurm" bench
MAXWAIT=${MAXWAIT:-14400}
say "calibrate-slurm: $PARTS array tasks (--cpus-per-task $CPT, $(( CPUS / CPT )) at once) + a dependent merge job"
rm -rf "$OUT/cluster"
"$FIREQ" calibrate-slurm --model "$MODEL" --text "$SHK" --samples "$SAMPLES" --seq-len "$SEQ" --parts "$PARTS" \
    --partition bench --cpus-per-task "$CPT" --max-parallel $(( CPUS / CPT )) --time 4:00:00 \
    --out "$OUT/cluster/stats.h5" > "$OUT/cluster.sh"
t0=$(date +%s.%N)
bash "$OUT/cluster.sh"
wait_for_queue "calibration jobs"
CLUSTER_SECONDS=$(python3 -c "import time; print(round(time.time() - $t0, 1))")
[ -f "$OUT/cluster/stats.h5" ] || { tail -5 "$OUT"/cluster/stats.h5.parts/logs/*.log; die "the merge job wrote no statistics"; }
same=false
cmp "$OUT/cluster/stats.h5" "$SINGLE" && same=true
# What differs when the bytes do (h5py from the project's venv): every dataset and attribute.
differs=$(.cache/venv/bin/python - "$OUT/cluster/stats.h5" "$SINGLE" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
out = []
def attrs(x, y, where):
    for k in sorted(set(x.attrs) | set(y.attrs)):
        if k not in x.attrs or k not in y.attrs or not np.array_equal(np.asarray(x.attrs[k]), np.asarray(y.attrs[k])):
            out.append(f"{where}@{k}")
attrs(a, b, "/")
names = set()
a.visit(names.add); b.visit(names.add)
for n in sorted(names):
    if n not in a or n not in b:
        out.append(n); continue
    if isinstance(a[n], h5py.Dataset):
        if a[n].dtype != b[n].dtype or not np.array_equal(a[n][()], b[n][()]):
            out.append(n)
    attrs(a[n], b[n], n)
print(" ".join(out) if out else "nothing")
PY
)
say "single node ${SINGLE_SECONDS:-?} s; $PARTS array tasks + merge ${CLUSTER_SECONDS} s; byte-identical: $same (differs: $differs)"
python3 - "$OUT/results.json" <<PY
import json, sys
json.dump({"model": "$MODEL", "samples": $SAMPLES, "seq_len": $SEQ, "parts": $PARTS, "cpus_per_task": $CPT,
           "node_cpus": $CPUS, "single": "$SINGLE", "single_seconds": ${SINGLE_SECONDS:-None},
           "cluster_seconds": $CLUSTER_SECONDS, "byte_identical": $( $same && echo True || echo False ),
           "differs": "$differs"}, open(sys.argv[1], "w"), indent=1)
PY
# A reused single run may name the model and the text by other paths (the cluster's scripts use
# absolute ones): only those two attributes may differ then; a single run made here must be equal.
if ! $same; then
    [ -n "${SINGLE_SECONDS_GIVEN:-}" ] && [ -z "$(echo "$differs" | tr ' ' '\n' | grep -v -x -e /@model_path -e /@source_path)" ] \
        || die "the merged statistics differ from the single run's: $differs"
fi
