#!/usr/bin/env bash
# Remakes the fuzzers' fixtures (Fuzz/fixtures: a 1-layer, hidden-64 random model with a byte-level
# tokenizer, its statistics and packed folders) and seed corpora (Fuzz/corpus/TARGET) from the
# built tool and the repository's own files. Both are committed; run this after a format change.
#   bash Fuzz/make-seeds.sh      (needs .build/release/fireq and .cache/venv: Scripts/test.sh makes both)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
fireq=.build/release/fireq
py=.cache/venv/bin/python
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rm -rf Fuzz/fixtures Fuzz/corpus
mkdir -p Fuzz/fixtures Fuzz/corpus
"$py" Scripts/make_random_checkpoint.py --shape tiny --layers 1 --dtype f16 --out Fuzz/fixtures/tiny-model >/dev/null
"$fireq" calibrate --model Fuzz/fixtures/tiny-model --text ../shared/data/tinyshakespeare.txt --samples 2 --seq-len 32 \
  --out Fuzz/fixtures/tiny-stats.h5 >/dev/null 2>&1
for r in fireq fireq-plus; do
  "$fireq" quantize --model Fuzz/fixtures/tiny-model --stats Fuzz/fixtures/tiny-stats.h5 --recipe Calibration/recipes/$r.json \
    --out "$tmp/packed-$r" >/dev/null 2>&1
done
cp -r "$tmp/packed-fireq" Fuzz/fixtures/tiny-packed

seed() { mkdir -p "Fuzz/corpus/$1"; cp "$2" "Fuzz/corpus/$1/${3:-$(basename "$2")}"; }
text() { mkdir -p "Fuzz/corpus/$1"; printf '%s' "$3" > "Fuzz/corpus/$1/$2"; }

# safetensors: the tiny source shard, both packed files, the empty file and a header-only file.
seed safetensors Fuzz/fixtures/tiny-model/model-00001-of-00001.safetensors source.safetensors
seed safetensors "$tmp/packed-fireq/model.safetensors" packed-fireq.safetensors
seed safetensors "$tmp/packed-fireq-plus/model.safetensors" packed-plus.safetensors
"$py" - Fuzz/corpus/safetensors <<'PY'
import json, struct, sys
d = sys.argv[1]
def st(name, header, data=b""):
    h = json.dumps(header, separators=(",", ":")).encode()
    open(f"{d}/{name}", "wb").write(struct.pack("<Q", len(h)) + h + data)
st("empty-header.safetensors", {})
st("dtypes.safetensors", {"__metadata__": {"format": "pt"},
    "a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
    "b": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [8, 12]},
    "c": {"dtype": "I64", "shape": [], "data_offsets": [12, 20]},
    "d": {"dtype": "F32", "shape": [0, 3], "data_offsets": [20, 20]}}, bytes(range(20)))
PY
# shard-index: the tiny model's index, and one naming a missing shard.
seed shard-index Fuzz/fixtures/tiny-model/model.safetensors.index.json
text shard-index missing-shard.json '{"metadata":{},"weight_map":{"model.norm.weight":"model-00002-of-00002.safetensors"}}'
# config: the tiny model's, the default model's and every family's, when present.
seed config Fuzz/fixtures/tiny-model/config.json tiny.json
[ -f .cache/models/smollm2-135m-instruct/config.json ] && seed config .cache/models/smollm2-135m-instruct/config.json smollm2.json
for f in .cache/families/*/config.json; do [ -f "$f" ] && seed config "$f" "$(basename "$(dirname "$f")").json"; done
# tokenizer: the tiny byte-level one.
seed tokenizer Fuzz/fixtures/tiny-model/tokenizer.json tiny.json
# tokenize: real text.
head -c 2000 ../shared/data/tinyshakespeare.txt > "$tmp/shakespeare.txt"; seed tokenize "$tmp/shakespeare.txt"
head -c 2000 ../shared/data/wikitext-2-raw-test.raw > "$tmp/wikitext.txt"; seed tokenize "$tmp/wikitext.txt"
text tokenize specials.txt $'<|im_start|>user\nWhat is 12345 + 678?<|im_end|>\n<|im_start|>assistant\n'
text tokenize unicode.txt $'caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80  \t\r\n   x'
# recipe: every shipped recipe.
for f in Calibration/recipes/*.json; do seed recipe "$f"; done
# packed: both packed files of the tiny model.
seed packed "$tmp/packed-fireq/model.safetensors" fireq.safetensors
seed packed "$tmp/packed-fireq-plus/model.safetensors" fireq-plus.safetensors
# stats: the tiny model's statistics.
seed stats Fuzz/fixtures/tiny-stats.h5 tiny.h5
# manifest: a valid two-entry manifest and a broken one.
text manifest two.jsonl $'{"id": "a", "model": "m", "out": "o1", "text": "t.txt", "samples": 2, "seq_len": 64, "export": "gguf,mlx"}\n\n{"model": "m", "out": "o2", "generate": true, "temperature": 0.8, "max_shard_size": "2GB", "eval_text": "e.txt"}\n'
text manifest bad.jsonl $'{"model": 1, "out": "o", "samples": -1}\n[1,2]\n{"model": "m", "model": "m"}\n'
# byte-size
for s in 5GB 500MB 2GiB 123456 "1.5 KiB" 0; do text byte-size "$(echo "$s" | tr ' .' '_p')" "$s"; done
# gguf-metadata
text gguf-metadata general.json '{"general.name": "SmolLM2 135M Instruct", "general.license": "apache-2.0", "general.size_label": "135M", "general.tags": ["a", "b"]}'
# json: assorted shapes.
text json nested.json '{"a": [1, -2.5e-3, true, false, null, "s\u00e9\ud83d\ude00\n"], "b": {"c": {}}, "d": []}'
cp Fuzz/fixtures/tiny-model/config.json Fuzz/corpus/json/config.json
echo "fixtures: $(du -sh Fuzz/fixtures | cut -f1), corpus: $(du -sh Fuzz/corpus | cut -f1) in $(find Fuzz/corpus -type f | wc -l) files"
