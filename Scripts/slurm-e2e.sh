#!/usr/bin/env bash
# End-to-end test of `fireq batch` on a real one-node Slurm cluster (Debian's slurm-wlm + munge),
# as root, start to finish on a fresh machine:
#   1. installs slurm-wlm and munge (apt) if missing; builds fireq (release) and the default model
#      if missing;
#   2. starts a private munged (own key and socket) and a one-node cluster for this host
#      (slurmctld + slurmd, config in .cache/slurm-e2e, nothing written under /etc);
#   3. writes a 3-entry manifest (default model × fireq, rtn, smoothquant; small calibration),
#      checks it, submits `fireq batch slurm`'s array job;
#   4. cancels entry 1 with scancel once its calibration stage has finished, checks that the batch
#      report calls it interrupted, resubmits it (sbatch --array=1) and checks that it resumed
#      (calibration found up to date);
#   5. waits, then checks: three outputs, `fireq inspect --verify` passes on each, the summary
#      lists three passes;
#   6. calibrates over the cluster (`fireq calibrate-slurm`: 4 array tasks + a dependent merge
#      job) and checks the merged statistics are byte-identical to a single `fireq calibrate`;
#   7. stops every daemon it started (also on failure).
# Usage: bash Scripts/slurm-e2e.sh        (exit 0: every check passed)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)
say() { echo "[slurm-e2e $(( $(date +%s) - START ))s] $*"; }
die() { say "FAILED: $*"; exit 1; }
# The one-node cluster: slurm_install, slurm_start, slurm_stop, wait_for_queue.
source Scripts/slurm-cluster.sh
slurm_install
MODEL=$ROOT/.cache/models/smollm2-135m-instruct
[ -f "$MODEL/model.safetensors" ] || bash Scripts/fetch-default-model.sh
[ -x .build/release/fireq ] || swift build -c release
swift build -c release 2>&1 | tail -1
FIREQ=$ROOT/.build/release/fireq

trap 'slurm_stop; say "daemons stopped"' EXIT
slurm_start "$ROOT/.cache/slurm-e2e" e2e

SHK=$(cd "$ROOT/../shared/data" && pwd)/tinyshakespeare.txt
[ -f "$SHK" ] || die "$SHK is missing (../shared/data beside the clone)"
M=$W/batch.jsonl
common='"text": "'$SHK'", "samples": 4, "seq_len": 128, "eval_context": 128, "eval_windows": 2, "max_delta_ppl": 1000'
cat > "$M" <<EOF
{"id": "fireq", "model": "$MODEL", "out": "out/fireq", $common}
{"id": "rtn", "model": "$MODEL", "out": "out/rtn", "recipe": "$ROOT/Calibration/recipes/rtn.json", $common}
{"id": "smoothquant", "model": "$MODEL", "out": "out/smoothquant", "recipe": "$ROOT/Calibration/recipes/smoothquant.json", $common}
EOF
"$FIREQ" batch check "$M"
"$FIREQ" batch slurm "$M" --partition e2e --cpus-per-task 1 --max-parallel "$CPUS" --time 30:00 > "$W/batch.sbatch"
grep -q -- "--array=0-2%$CPUS" "$W/batch.sbatch" || die "the array directive is missing"
JOB=$(sbatch --parsable "$W/batch.sbatch")
say "submitted array job $JOB"

# Cancel entry 1 once its calibration stage is recorded (it is then quantizing or evaluating).
LOG1=$M.fireq-batch/logs/1.log
for _ in $(seq 600); do
    grep -q '^\[2/3\] quantization' "$LOG1" 2>/dev/null && break
    sleep 0.2
done
grep -q '^\[2/3\] quantization' "$LOG1" || { cat "$LOG1" || true; die "entry 1 never reached quantization"; }
scancel "${JOB}_1"
say "cancelled ${JOB}_1 after its calibration"
for _ in $(seq 120); do
    squeue -h -j "${JOB}_1" 2>/dev/null | grep -q . || break
    sleep 0.5
done
[ -d "$W/out/rtn" ] && die "the cancelled entry published its output"
"$FIREQ" batch report "$M" --out "$W/after-cancel"
python3 - "$W/after-cancel.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
s = {e["index"]: e["status"] for e in r["entries"]}
assert s[1] == "interrupted", f"entry 1 after scancel: {s[1]}"
print("after scancel, entry 1 is", s[1])
EOF

JOB2=$(sbatch --parsable --array=1 "$W/batch.sbatch")
say "resubmitted entry 1 as job $JOB2"
wait_for_queue "jobs"
grep -q 'calibration: up to date' "$LOG1" || { cat "$LOG1"; die "entry 1 did not resume (calibration recomputed)"; }
say "entry 1 resumed: $(grep -c '== fireq batch: entry 1' "$LOG1") attempts in its log, calibration skipped on the second"

for o in fireq rtn smoothquant; do
    [ -f "$W/out/$o/model.safetensors" ] || die "out/$o is missing"
    "$FIREQ" inspect "$W/out/$o" --verify > /dev/null || die "inspect --verify failed on out/$o"
done
say "three outputs, inspect --verify passes on each"
"$FIREQ" batch report "$M" --out "$W/summary"
python3 - "$W/summary.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["counts"] == {"passed": 3}, r["counts"]
for e in r["entries"]:
    assert e["status"] == "passed" and e["exit_status"] == 0, e
    assert e["perplexity_all"] > e["baseline_perplexity_all"] > 1, e
print("summary:", ", ".join(f'{e["id"]} {e["delta_perplexity_all_percent"]:+.1f} %' for e in sorted(r["entries"], key=lambda e: e["index"])))
EOF
# Calibration over the cluster (issue #29): 4 array tasks, each one part of the windows, then a
# merge job that waits for them (afterok); the merged statistics equal a single run's bytes.
say "calibrate-slurm: 8 windows in 4 array tasks + a dependent merge job"
"$FIREQ" calibrate-slurm --model "$MODEL" --text "$SHK" --samples 8 --seq-len 128 --parts 4 --partition e2e \
    --cpus-per-task 1 --max-parallel "$CPUS" --time 30:00 --out "$W/cal/stats.h5" > "$W/cal.sh"
grep -q -- "--array=1-4%$CPUS" "$W/cal.sh" || die "the calibration array directive is missing"
bash "$W/cal.sh"
wait_for_queue "calibration jobs"
[ -f "$W/cal/stats.h5" ] || { tail -5 "$W"/cal/stats.h5.parts/logs/*.log; die "the merge job wrote no statistics"; }
for i in 1 2 3 4; do grep -q "part $i/4" "$W/cal/stats.h5.parts/logs/part-$i.log" || die "array task $i did not run its part"; done
"$FIREQ" calibrate --model "$MODEL" --text "$SHK" --samples 8 --seq-len 128 --seed 0 --out "$W/cal/single.h5" > /dev/null 2>&1
cmp "$W/cal/stats.h5" "$W/cal/single.h5" || die "the merged statistics differ from a single run's"
say "4 parts + merge on Slurm: byte-identical to a single calibrate ($(stat -c %s "$W/cal/stats.h5") bytes)"
say "PASSED in $(( $(date +%s) - START )) s (summary: $W/summary.html)"
