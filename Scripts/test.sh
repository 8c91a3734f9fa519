#!/usr/bin/env bash
# The test command of the README: prepares test inputs (default model, codec goldens) and runs
# the whole suite in release (model-level tests are 10-50x slower in debug builds).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash Scripts/fetch-default-model.sh
mkdir -p .cache/golden
if [ ! -f .cache/golden/codecs.bin ]; then
  .cache/venv/bin/python Scripts/make_codec_golden.py .cache/golden/codecs.bin
fi
swift test -c release "$@"
