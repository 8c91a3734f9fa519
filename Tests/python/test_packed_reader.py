"""The Formats/ reference reader and the Swift dequantization agree bit for bit, and the reader
rejects a corrupted file. Run by Scripts/test.sh with FIREQ_PACKED (a packed folder) and
FIREQ_DEQUANT (Swift's `fireq inspect --dequantize-to` output)."""
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "Formats"))
import fireq_packed_reader as reader  # noqa: E402

PACKED = os.environ["FIREQ_PACKED"]
DEQUANT = os.environ["FIREQ_DEQUANT"]


def test_dequantization_bit_for_bit():
    meta, tensors = reader.open_packed(PACKED)
    mine = reader.dequantize(meta, tensors)
    _, swift = reader.read_safetensors(DEQUANT)
    assert sorted(mine) == sorted(swift) and len(mine) == 210
    for name, w in mine.items():
        s = swift[name][1]
        assert s.shape == w.shape, name
        assert np.array_equal(w.view(np.uint32), s.view(np.uint32)), name


def test_int4_layout_and_sizes():
    meta, tensors = reader.open_packed(PACKED)
    q = reader.unpack_int4(tensors["model.layers.0.mlp.down_proj.weight"][1])
    assert q.shape == (576, 1536) and q.min() >= -8 and q.max() <= 7
    assert tensors["model.layers.0.mlp.down_proj.weight_scale"][0] == "F8_E4M3"
    assert tensors["model.layers.0.mlp.down_proj.weight_scale"][1].shape == (576, 1536 // 64)


def test_flipped_byte_is_rejected():
    d = tempfile.mkdtemp()
    try:
        bad = os.path.join(d, "p")
        shutil.copytree(PACKED, bad)
        path = os.path.join(bad, "model.safetensors")
        with open(path, "r+b") as f:
            f.seek(-1000, 2)
            b = f.read(1)
            f.seek(-1000, 2)
            f.write(bytes([b[0] ^ 0x01]))
        with pytest.raises(reader.PackedError, match="crc32 mismatch"):
            reader.open_packed(bad)
    finally:
        shutil.rmtree(d)


def test_sharded_folder_reads_as_the_single_file():
    """Formats/fireq-packed-v1.md "Shards": the same quantization with --max-shard-size 30MB is
    three shards and an index, and reads as the same tensors, metadata and weights."""
    sharded = os.environ["FIREQ_PACKED_SHARDED"]
    names = sorted(os.listdir(sharded))
    shards = [n for n in names if n.startswith("model-")]
    assert shards == [f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)] and "model.safetensors" not in names
    index = json.load(open(os.path.join(sharded, "model.safetensors.index.json")))
    assert index["metadata"]["fireq.format"] == "fireq-packed"
    m1, t1 = reader.open_packed(PACKED)
    m2, t2 = reader.open_packed(sharded)
    assert set(t1) == set(t2) == set(index["weight_map"])
    assert all(t1[k][2] == t2[k][2] for k in t1)
    assert index["metadata"]["total_size"] == sum(len(t[2]) for t in t1.values())
    assert {k: v for k, v in m1.items() if k != "fireq.crc32"} == {k: v for k, v in m2.items() if k != "fireq.crc32"}
    assert json.loads(m1["fireq.crc32"]) == json.loads(m2["fireq.crc32"])
    d1, d2 = reader.dequantize(m1, t1), reader.dequantize(m2, t2)
    assert all(np.array_equal(d1[k], d2[k]) for k in d1)
