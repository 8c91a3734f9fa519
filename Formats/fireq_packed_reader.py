#!/usr/bin/env python3
"""Reference reader for fireq-packed v1 folders (Formats/fireq-packed-v1.md).

Independent of the Swift code: parses the safetensors container itself, validates the
metadata, checks every crc32 (zlib), and dequantizes every linear layer to float32:

    W[n, k] = E4M3(q[n, k] * s[n, k // G]) * (1 / P)     (without E4M3(...) when fp8_rerounding is off)

Usage:  python3 fireq_packed_reader.py PACKED_DIR [--out dequantized.npz]
Needs numpy and ml_dtypes (pinned in Scripts/requirements-model.txt).
"""
import json
import os
import struct
import sys
import zlib

import ml_dtypes
import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16, "F8_E4M3": ml_dtypes.float8_e4m3fn,
          "F8_E5M2": ml_dtypes.float8_e5m2, "I8": np.int8, "U8": np.uint8, "I16": np.int16, "I32": np.int32,
          "U32": np.uint32, "I64": np.int64}


class PackedError(Exception):
    pass


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise PackedError(f"{path}: truncated")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise PackedError(f"{path}: header runs past the end of the file")
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    tensors = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        if end > len(body):
            raise PackedError(f"{path}: tensor {name} past the end of the data")
        raw = body[b:end]
        arr = np.frombuffer(raw, dtype=DTYPES[e["dtype"]]).reshape(e["shape"])
        tensors[name] = (e["dtype"], arr, raw)
    return meta, tensors


def _open_file(path):
    meta, tensors = read_safetensors(path)
    if meta.get("fireq.format") != "fireq-packed":
        raise PackedError(f"{path}: not a fireq-packed file")
    if meta.get("fireq.version") != "1":
        raise PackedError(f"{path}: unsupported fireq-packed version {meta.get('fireq.version')}")
    crc = json.loads(meta["fireq.crc32"])
    if set(crc) != set(tensors):
        raise PackedError(f"{path}: crc32 list and tensors differ")
    for name, (_, _, raw) in tensors.items():
        got = f"{zlib.crc32(raw) & 0xFFFFFFFF:08x}"
        if got != crc[name]:
            raise PackedError(f"{path}: crc32 mismatch in {name}")
    return meta, tensors


def open_packed(directory):
    """(metadata, tensors) of a packed folder: one model.safetensors, or the shards named by
    model.safetensors.index.json (the metadata is the shards' shared keys; fireq.crc32 then
    covers every tensor)."""
    index = f"{directory}/model.safetensors.index.json"
    single = f"{directory}/model.safetensors"
    if os.path.exists(single) and os.path.exists(index):
        raise PackedError(f"{directory}: holds both model.safetensors and model.safetensors.index.json")
    if not os.path.exists(index):
        meta, tensors = _open_file(single)
    else:
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        meta, tensors, crc = None, {}, {}
        for shard in sorted(set(weight_map.values())):
            m, t = _open_file(f"{directory}/{shard}")
            for name in t:
                if weight_map.get(name) != shard:
                    raise PackedError(f"{directory}/{shard}: tensor {name} is not mapped to this shard by the index")
            crc.update(json.loads(m.pop("fireq.crc32")))
            if meta is not None and m != meta:
                raise PackedError(f"{directory}/{shard}: metadata differs from the other shards'")
            meta = m
            tensors.update(t)
        if set(weight_map) != set(tensors):
            raise PackedError(f"{index}: weight_map and the shards' tensors differ")
        meta["fireq.crc32"] = json.dumps(crc, sort_keys=True)
    for f in ["config.json", "tokenizer.json"]:
        open(f"{directory}/{f}").close()
    return meta, tensors


def unpack_int4(words):
    """int32 [N, K/8] -> int8 [N, K]; element 8c+i in bits 4i..4i+3, two's complement."""
    w = words.astype(np.uint32)
    nib = np.stack([(w >> (4 * i)) & 0xF for i in range(8)], axis=-1).astype(np.int8)
    nib = np.where(nib >= 8, nib - 16, nib).astype(np.int8)
    return nib.reshape(words.shape[0], words.shape[1] * 8)


def dequantize(meta, tensors, fp8_rerounding=None):
    """Effective weights of every quantized linear; fp8_rerounding=False gives q·s·(1/P), the
    values the exports carry (Formats/exports.md), None follows the recipe."""
    recipe = json.loads(meta["fireq.recipe"])
    reround = recipe["weights"]["fp8_rerounding"] if fp8_rerounding is None else fp8_rerounding
    out = {}
    for name in sorted(t[:-len(".weight_scale")] for t in tensors if t.endswith(".weight_scale")):
        q = unpack_int4(tensors[name + ".weight"][1]).astype(np.float32)
        s = tensors[name + ".weight_scale"][1].astype(np.float32)
        inv_p = tensors[name + ".per_tensor_scale_inv"][1].astype(np.float32)[0]
        g = q.shape[1] // s.shape[1]
        v = q * np.repeat(s, g, axis=1)
        if reround:
            v = np.clip(v, -448, 448).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
        out[name] = (v * inv_p).astype(np.float32)
    return out


if __name__ == "__main__":
    d = sys.argv[1]
    meta, tensors = open_packed(d)
    deq = dequantize(meta, tensors)
    print(f"ok: {d}: {len(tensors)} tensors, crc32 verified, {len(deq)} linear layers dequantized")
    if "--out" in sys.argv:
        np.savez(sys.argv[sys.argv.index("--out") + 1], **deq)
