#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer + AddressSanitizer) of every parser of untrusted input
# (issue #13): builds Fuzz/ (one binary, one target per parser, Fuzz/Sources/fireq-fuzz), then runs
# the targets one after the other for SECONDS each, or until RUNS executions with --runs.
#   bash Scripts/fuzz.sh TARGET|all SECONDS [--runs N]
# Targets (all): json safetensors shard-index config tokenizer tokenize recipe packed stats manifest
#          byte-size gguf-metadata; and stats-unsealed (libhdf5 itself, not in all)
# Exits non-zero on any finding (crash, failed property, leak, timeout > 10 s, RSS > 2 GiB, one
# allocation > 512 MiB); the input is kept under .cache/fuzz/findings/TARGET/. New corpus inputs
# accumulate in .cache/fuzz/corpus/TARGET; the committed seeds (Fuzz/corpus) are read only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
all=(json safetensors shard-index config tokenizer tokenize recipe packed stats manifest byte-size gguf-metadata)
extra=(stats-unsealed)   # not in `all`: finds crashes inside libhdf5 itself (Formats/calibration-stats.md)
if [ $# -lt 2 ]; then
  echo "usage: bash Scripts/fuzz.sh TARGET|all SECONDS [--runs N]   (targets: ${all[*]})" >&2; exit 2
fi
what=$1 seconds=$2 runs=-1
[ "${3:-}" = "--runs" ] && runs=${4:?--runs needs a count}
if [ "$what" = all ]; then targets=("${all[@]}"); else
  case " ${all[*]} ${extra[*]} " in *" $what "*) targets=("$what") ;; *) echo "unknown fuzz target '$what' (targets: ${all[*]})" >&2; exit 2 ;; esac
fi
if [ ! -f .cache/models/smollm2-135m-instruct/tokenizer.json ] && case " ${targets[*]} " in *" tokenize "*) true ;; *) false ;; esac; then
  echo "the tokenize target needs the default model's tokenizer: run bash Scripts/fetch-default-model.sh first" >&2; exit 2
fi

# swiftc keeps only the last -sanitize= flag it is given, so SwiftPM's two --sanitize flags alone
# would build without coverage; -sanitize=fuzzer,address in one flag gives both.
echo "building the fuzz targets (Fuzz/, release, -sanitize=fuzzer,address)..."
mkdir -p .cache/fuzz
if ! swift build -c release --package-path Fuzz --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address \
     > .cache/fuzz/build.log 2>&1; then
  grep -E "error:" .cache/fuzz/build.log | head -n 20 >&2 || tail -n 20 .cache/fuzz/build.log >&2
  echo "building the fuzz targets failed (log: .cache/fuzz/build.log)" >&2; exit 1
fi
bin=Fuzz/.build/release/fireq-fuzz

work=$(mktemp -d "${FIREQ_FUZZ_TMP:-/dev/shm}/fireq-fuzz.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
summary=()
for t in "${targets[@]}"; do
  case $t in packed|safetensors|stats*) max_len=131072 ;; tokenizer) max_len=16384 ;; *) max_len=8192 ;; esac
  corpus=.cache/fuzz/corpus/$t findings=.cache/fuzz/findings/$t
  mkdir -p "$corpus" "$findings"
  log=.cache/fuzz/$t.log
  echo "fuzzing $t for ${seconds} s$([ "$runs" -gt 0 ] && echo " or $runs runs")..."
  rc=0
  supp=""   # see Fuzz/lsan-tokenize.supp
  [ "$t" = tokenize ] && supp=suppressions=$root/Fuzz/lsan-tokenize.supp
  FIREQ_FUZZ_TARGET=$t FIREQ_FUZZ_WORK=$work FIREQ_FUZZ_FIXTURES=$root/Fuzz/fixtures ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=$supp \
    "$bin" -max_total_time="$seconds" -runs="$runs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
      -max_len=$max_len -artifact_prefix="$findings/" -print_final_stats=1 "$corpus" "Fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1 || echo 0)
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
  if [ $rc -ne 0 ]; then
    status=1
    echo "FINDING in $t (exit $rc): $(grep -m1 -E 'ERROR: |property violated|Fatal error|deadly signal|timeout' "$log" || echo 'see the log')"
    echo "  log: $log; inputs: $findings/"
    summary+=("$(printf '%-14s %12s execs %6s s  cov %6s  FINDING' "$t" "$execs" "$secs" "$cov")")
  else
    summary+=("$(printf '%-14s %12s execs %6s s  cov %6s  ok' "$t" "$execs" "$secs" "$cov")")
  fi
done
printf '%s\n' "${summary[@]}"
exit $status
