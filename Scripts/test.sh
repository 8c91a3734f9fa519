#!/usr/bin/env bash
# The test command of the README: prepares test inputs (default model, codec goldens), runs the
# Swift suite in release (model-level tests are 10-50x slower in debug builds), then the Python
# interop tests (h5py reads a calibration statistics file made by the built tool; the Formats/
# reference reader dequantizes a packed model bit for bit like the Swift code; each export is
# loaded by gguf / compressed-tensors / mlx and run by llama.cpp / transformers / mlx-lm).
#
#   bash Scripts/test.sh            everything (what CI runs)
#   bash Scripts/test.sh --quick    the developer's subset: the Swift suites below the pipeline
#                                   level (kernels, codecs, formats, config, tokenizer, folds,
#                                   decoders, families, calibration parts), no end-to-end
#                                   convert/export/batch/quantize suites and no Python interop
#                                   tests; it says so when it ends
#   bash Scripts/test.sh ARGS…      ARGS passed to `swift test` (e.g. --filter FamilyTests)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
started=$(date +%s)
fresh=0
[ -x .cache/venv/bin/python ] && [ -f .build/release/fireq ] || fresh=1
quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi
slow='ConvertTests|ExportTests|BatchTests|QuantizeTests|CalibrationTests|ModelTests|HardeningTests|ShardTests'
bash Scripts/install-deps.sh
bash Scripts/fetch-default-model.sh
# The third-party runtimes of the export tests (same venv; pinned; a no-op when present).
.cache/venv/bin/pip install -q --disable-pip-version-check -r Scripts/requirements-model.txt -r Scripts/requirements-runtimes.txt
bash Scripts/install-llama-cpp-python.sh   # a portable build, never a cached -march=native wheel
mkdir -p .cache/golden
if [ ! -f .cache/golden/codecs.bin ]; then
  .cache/venv/bin/python Scripts/make_codec_golden.py .cache/golden/codecs.bin
fi
# Small random-weight checkpoints of each family, saved by transformers with its logits as goldens
# (FamilyTests, test_families.py); remade when the script changes.
fam_stamp=$(sha256sum Scripts/make_family_checkpoints.py | cut -c1-64)
if [ "$(cat .cache/families/.made-by 2>/dev/null)" != "$fam_stamp" ]; then
  rm -rf .cache/families
  .cache/venv/bin/python Scripts/make_family_checkpoints.py .cache/families >/dev/null 2>&1 \
    || .cache/venv/bin/python Scripts/make_family_checkpoints.py .cache/families
  echo "$fam_stamp" > .cache/families/.made-by
fi
# Every temporary file of the run (tests' folders, swift's, pytest's) under one folder in the
# clone, removed when the run ends, passed or not (they are ~0.8 GB per converted model).
export TMPDIR="$root/.cache/test-tmp/run-$$"
mkdir -p "$TMPDIR"
trap 'rm -rf "$TMPDIR"' EXIT
if [ $quick -eq 1 ]; then
  swift test -c release --disable-xctest --skip "$slow" "$@"
  echo "quick subset passed; not run: the suites $slow and the Python interop tests (bash Scripts/test.sh runs everything)"
  exit 0
fi
swift_log=$TMPDIR/swift-test.log
swift test -c release --disable-xctest "$@" 2>&1 | tee "$swift_log"

stats=$(mktemp -d)/stats.h5
.build/release/fireq calibrate --model .cache/models/smollm2-135m-instruct \
  --text ../shared/data/tinyshakespeare.txt --samples 2 --seq-len 256 --out "$stats" 2>/dev/null
.build/release/fireq quantize --model .cache/models/smollm2-135m-instruct --stats "$stats" \
  --recipe Calibration/recipes/fireq.json --out "$(dirname "$stats")/packed" 2>/dev/null
# The same model cut into shards (the embedding alone is 56 MB: 3 shards at 30 MB).
.build/release/fireq quantize --model .cache/models/smollm2-135m-instruct --stats "$stats" \
  --recipe Calibration/recipes/fireq.json --max-shard-size 30MB --out "$(dirname "$stats")/packed-sharded" 2>/dev/null
.build/release/fireq inspect "$(dirname "$stats")/packed" --dequantize-to "$(dirname "$stats")/dequant.safetensors" >/dev/null
# The same from a BF16 copy of the model (the export tests' second source).
tmp=$(dirname "$stats")
.cache/venv/bin/python Scripts/make_bf16_copy.py .cache/models/smollm2-135m-instruct "$tmp/bf16"
.build/release/fireq calibrate --model "$tmp/bf16" --text ../shared/data/tinyshakespeare.txt --samples 2 --seq-len 256 \
  --out "$tmp/stats-bf16.h5" 2>/dev/null
.build/release/fireq quantize --model "$tmp/bf16" --stats "$tmp/stats-bf16.h5" --recipe Calibration/recipes/fireq.json \
  --out "$tmp/packed-bf16" 2>/dev/null
FIREQ_STATS="$stats" FIREQ_PACKED="$(dirname "$stats")/packed" FIREQ_DEQUANT="$(dirname "$stats")/dequant.safetensors" \
  FIREQ_BIN="$root/.build/release/fireq" FIREQ_MODEL="$root/.cache/models/smollm2-135m-instruct" FIREQ_PACKED_BF16="$tmp/packed-bf16" \
  FIREQ_FAMILIES="$root/.cache/families" FIREQ_PACKED_SHARDED="$(dirname "$stats")/packed-sharded" \
  .cache/venv/bin/python -m pytest -q -p no:cacheprovider --basetemp "$TMPDIR/pytest" Tests/python 2>&1 | tee "$TMPDIR/pytest.log"
# What ran and how long it took (the README's test line is generated from this by Scripts/readme_numbers.py).
if [ $# -eq 0 ]; then
  python3 Scripts/readme_numbers.py tests "$swift_log" "$TMPDIR/pytest.log" "$(( $(date +%s) - started ))" "$fresh" > .cache/test-timing.json
fi
