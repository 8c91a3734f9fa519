#!/usr/bin/env bash
# The test command of the README: prepares test inputs (default model, codec goldens), runs the
# Swift suite in release (model-level tests are 10-50x slower in debug builds), then the Python
# interop tests (h5py reads a calibration statistics file made by the built tool).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash Scripts/fetch-default-model.sh
mkdir -p .cache/golden
if [ ! -f .cache/golden/codecs.bin ]; then
  .cache/venv/bin/python Scripts/make_codec_golden.py .cache/golden/codecs.bin
fi
swift test -c release "$@"

stats=$(mktemp -d)/stats.h5
.build/release/fireq calibrate --model .cache/models/smollm2-135m-instruct \
  --text ../shared/data/tinyshakespeare.txt --samples 2 --seq-len 256 --out "$stats" 2>/dev/null
FIREQ_STATS="$stats" .cache/venv/bin/python -m pytest -q Tests/python
rm -rf "$(dirname "$stats")"
