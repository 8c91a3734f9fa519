#!/usr/bin/env bash
# The Swift test suite under AddressSanitizer (Swift and C) and UndefinedBehaviorSanitizer (the C
# kernels; swiftc has no -sanitize=undefined, and Swift's own overflow/bounds checks stay on in
# release), release build in .build-sanitize (issue #13). Any finding aborts the test that hit it,
# so the run fails. Extra arguments go to `swift test` (e.g. --filter KernelTests).
#   bash Scripts/sanitize.sh [--filter REGEX]
# Needs what Scripts/test.sh prepares (.cache/models, .cache/golden, .cache/families).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export TMPDIR="$root/.cache/test-tmp/sanitize-$$"
mkdir -p "$TMPDIR"
trap 'rm -rf "$TMPDIR"' EXIT
# halt_on_error / abort: a finding is a crash of the test process, never a line in a log.
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Leak checking is off here: Swift keeps caches and long-lived objects whose enum payload pointers
# LeakSanitizer cannot see (Fuzz/lsan-tokenize.supp); the fuzzers check leaks per input instead.
swift test -c release --build-path .build-sanitize --sanitize=address \
  -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined -Xcc -fno-omit-frame-pointer "$@"
