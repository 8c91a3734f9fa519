#!/usr/bin/env bash
# Crash and disk-full safety of every command that writes (issue #13), on the default model:
#   bash Scripts/crash-campaign.sh [KILLS]        (KILLS per command, default 20)
# 1. Disk full (needs root: a 400 MiB tmpfs, filled so that the output cannot fit): calibrate,
#    quantize, export and convert each fail with a message naming the output and "No space left
#    on device", exit ≠ 0, leave nothing under the final name and no temporary file; after the
#    space is freed the same command completes with the bytes of an uninterrupted run.
# 2. SIGKILL at a random moment (uniform over the command's measured run time), KILLS times per
#    command: the final name is either absent or holds exactly the uninterrupted run's bytes; then
#    the same command, rerun (convert resumes its stages), gives exactly those bytes.
# Prints one line per check and a summary; exit ≠ 0 on any violation.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
kills=${1:-20}
bin=$root/.build/release/fireq
model=$root/.cache/models/smollm2-135m-instruct
text=$root/../shared/data/tinyshakespeare.txt
recipe=$root/Calibration/recipes/fireq.json
[ -x "$bin" ] || { echo "build first: swift build -c release" >&2; exit 2; }
[ -d "$model" ] || { echo "the default model is missing: bash Scripts/fetch-default-model.sh" >&2; exit 2; }
W=$root/.cache/crash-campaign
rm -rf "$W"; mkdir -p "$W"
fail=0
bad() { echo "VIOLATION: $*"; fail=1; }
sha() { if [ -d "$1" ]; then (cd "$1" && find . -type f ! -name 'report.*' | sort | xargs sha256sum) | sha256sum | cut -c1-16; else sha256sum "$1" | cut -c1-16; fi; }

# The commands, each writing under a folder D; the output's final name is D/OUT. `args c D` sets A.
args() {
  case $1 in
    calibrate) A=(calibrate --model "$model" --text "$text" --samples 2 --seq-len 256 --out "$2/stats.h5") ;;
    quantize)  A=(quantize --model "$model" --stats "$W/ref/stats.h5" --recipe "$recipe" --out "$2/packed") ;;
    export)    A=(export "$W/ref/packed" --format gguf --out "$2/model.gguf") ;;
    convert)   A=(convert --model "$model" --recipe "$recipe" --text "$text" --samples 2 --seq-len 256 \
                  --eval-context 128 --eval-windows 2 --export gguf --out "$2/smol") ;;
  esac
}
run() { args "$1" "$2"; "$bin" "${A[@]}"; }
out_calibrate=stats.h5 out_quantize=packed out_export=model.gguf out_convert=smol
# What convert publishes besides OUT (compared too).
extra_convert=smol.gguf

declare -A ref_sha ref_secs
mkdir -p "$W/ref"
for c in calibrate quantize export convert; do
  t0=$(date +%s.%N)
  run "$c" "$W/ref" > "$W/ref/$c.log" 2>&1 || { echo "reference $c failed: $(tail -n 2 "$W/ref/$c.log")"; exit 1; }
  ref_secs[$c]=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
  o=out_$c; ref_sha[$c]=$(sha "$W/ref/${!o}")
  echo "reference $c: ${ref_secs[$c]} s, $(echo "${ref_sha[$c]}")"
done
ref_extra=$(sha "$W/ref/$extra_convert")

check_final() {   # $1 command, $2 folder; final name absent or equal to the reference
  local o=out_$1 p; p="$2/${!o}"
  if [ -e "$p" ] && [ "$(sha "$p")" != "${ref_sha[$1]}" ]; then bad "$1: $p exists with other bytes than the uninterrupted run's"; fi
  if [ "$1" = convert ] && [ -e "$2/$extra_convert" ] && [ "$(sha "$2/$extra_convert")" != "$ref_extra" ]; then
    bad "convert: $2/$extra_convert exists with other bytes"; fi
}
check_complete() {
  local o=out_$1 p; p="$2/${!o}"
  if [ ! -e "$p" ]; then bad "$1: rerun left no $p"; return; fi
  [ "$(sha "$p")" = "${ref_sha[$1]}" ] || bad "$1: rerun's $p differs from the uninterrupted run's"
  if [ "$1" = convert ]; then [ "$(sha "$2/$extra_convert")" = "$ref_extra" ] || bad "convert: rerun's $extra_convert differs"; fi
}

# 1. Disk full.
if [ "$(id -u)" = 0 ]; then
  full=$W/full
  mkdir -p "$full"
  mount -t tmpfs -o size=400m tmpfs "$full"
  trap 'umount "$full" 2>/dev/null || true' EXIT
  for c in calibrate quantize export convert; do
    rm -rf "${full:?}"/*
    o=out_$c
    # Leave half the output's size free (convert: its work folder needs ~3× the packed size).
    need=$(du -sb "$W/ref/${!o}" | cut -f1)
    avail=$(df -B1 --output=avail "$full" | tail -n 1)
    fill=$((avail - need / 2))
    [ $fill -gt 0 ] && head -c $fill /dev/zero > "$full/filler"
    rc=0; run "$c" "$full" > "$W/full-$c.log" 2>&1 || rc=$?
    msg=$(grep -i -m1 "error" "$W/full-$c.log" || tail -n 1 "$W/full-$c.log")
    if [ $rc -eq 0 ]; then bad "$c on a full disk exited 0"; fi
    grep -q "No space left on device" "$W/full-$c.log" || bad "$c on a full disk: message lacks 'No space left on device': $msg"
    [ -e "$full/${!o}" ] && bad "$c on a full disk left $full/${!o}"
    left=$(find "$full" -mindepth 1 ! -name filler ! -name '*.fireq-work' ! -path '*.fireq-work/*' ! -name '.*fireq-lock' | head -n 3)
    [ -z "$left" ] || bad "$c on a full disk left temporary files: $left"
    rm -f "$full/filler"
    run "$c" "$full" > "$W/full-$c-rerun.log" 2>&1 || bad "$c after freeing space failed: $(tail -n 1 "$W/full-$c-rerun.log")"
    check_complete "$c" "$full"
    echo "disk full: $c → exit $rc, \"${msg:0:160}\"; rerun after freeing space: same bytes"
  done
  umount "$full"; trap - EXIT
else
  bad "the disk-full checks need root (a tmpfs mount); run as root"
fi

# 2. SIGKILL at random moments.
for c in calibrate quantize export convert; do
  survived=0 killed=0
  for k in $(seq 1 "$kills"); do
    d=$W/kill-$c-$k; mkdir -p "$d"
    delay=$(python3 -c "import random; random.seed($k * 7919 + ${#c}); print(round(random.uniform(0, ${ref_secs[$c]} * 1.05), 3))")
    args "$c" "$d"
    "$bin" "${A[@]}" > "$d/run.log" 2>&1 & pid=$!   # $! is fireq itself (no subshell)
    sleep "$delay"
    if kill -9 $pid 2>/dev/null; then killed=$((killed + 1)); else survived=$((survived + 1)); fi
    wait $pid 2>/dev/null || true
    check_final "$c" "$d"
    o=out_$c
    if [ ! -e "$d/${!o}" ] || { [ "$c" = convert ] && [ ! -e "$d/$extra_convert" ]; }; then
      run "$c" "$d" > "$d/rerun.log" 2>&1 || bad "$c rerun after kill at ${delay} s failed: $(tail -n 1 "$d/rerun.log")"
    fi
    check_complete "$c" "$d"
    rm -rf "$d"
  done
  echo "SIGKILL: $c × $kills (killed mid-run $killed, finished before the kill $survived): final name never partial; every rerun gave the uninterrupted run's bytes"
done
[ $fail -eq 0 ] && echo "crash campaign passed" || echo "crash campaign FAILED"
exit $fail
