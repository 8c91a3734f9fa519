#!/usr/bin/env python3
"""Our own dequantizer of llama.cpp's GGUF block formats, in float32 numpy.

Written from the block layouts of ggml (ggml-common.h / ggml-quants.c dequantize_row_*), with
the same float32 operation order as ggml's reference C code (no fused multiply-add), so the
float32 values are bit-identical to ggml's and to the `gguf` package's own dequantizer, which
Scripts/verify_gguf_folder.py uses as the independent oracle.

Types: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K (what the default model's Q4_1 GGUF and the
Q4_K_M GGUFs of Qwen2.5-Coder-1.5B and Gemma 3 270M hold). Any other type is refused by name.

    dequantize(raw: np.ndarray[uint8], ggml_type: int, n_elements: int) -> np.ndarray[float32]
"""
import numpy as np

# ggml_type ids (ggml.h)
F32, F16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K, BF16 = 0, 1, 2, 3, 6, 8, 12, 14, 30
NAMES = {F32: "F32", F16: "F16", Q4_0: "Q4_0", Q4_1: "Q4_1", Q5_0: "Q5_0", Q8_0: "Q8_0", Q4_K: "Q4_K",
         Q6_K: "Q6_K", BF16: "BF16"}
# (elements per block, bytes per block), asserted against ggml-common.h's static_asserts
BLOCK = {Q4_0: (32, 18), Q4_1: (32, 20), Q5_0: (32, 22), Q8_0: (32, 34), Q4_K: (256, 144), Q6_K: (256, 210)}


def _f16(b):
    return np.ascontiguousarray(b).view(np.float16).astype(np.float32)


def _q4_0(b):
    d = _f16(b[:, 0:2])                              # (n, 1)
    qs = b[:, 2:18]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - np.int8(8)
    return d * q.astype(np.float32)                  # y = d * (q - 8)


def _q4_1(b):
    d, m = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    qs = b[:, 4:20]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
    return d * q + m                                 # y = d * q + m


def _q5_0(b):
    """ggml dequantize_row_q5_0: d (f16), qh (32 high bits, little-endian), qs (16 bytes of nibble
    pairs); element j < 16 is (qs[j] & 15 | bit j of qh << 4) - 16, element j + 16 is
    (qs[j] >> 4 | bit j + 16 of qh << 4) - 16, both times d."""
    d = _f16(b[:, 0:2])
    qh = np.ascontiguousarray(b[:, 2:6]).view("<u4").astype(np.uint32)       # (n, 1)
    qs = b[:, 6:22].astype(np.uint32)
    j = np.arange(16, dtype=np.uint32)
    lo = (qs & 0x0F) | (((qh >> j) << 4) & 0x10)
    hi = (qs >> 4) | ((qh >> (j + 12)) & 0x10)
    q = np.concatenate([lo, hi], axis=1).astype(np.int32) - 16
    return d * q.astype(np.float32)


def _q8_0(b):
    d = _f16(b[:, 0:2])
    q = np.ascontiguousarray(b[:, 2:34]).view(np.int8).astype(np.float32)
    return d * q


def _k4_scale_min(s):
    """ggml get_scale_min_k4 for j = 0..7 of a 12-byte scales field: (sc, m), each (n, 8)."""
    s = s.astype(np.uint8)
    sc = np.empty((s.shape[0], 8), np.uint8)
    mn = np.empty((s.shape[0], 8), np.uint8)
    sc[:, 0:4] = s[:, 0:4] & 63
    mn[:, 0:4] = s[:, 4:8] & 63
    sc[:, 4:8] = (s[:, 8:12] & 0x0F) | ((s[:, 0:4] >> 6) << 4)
    mn[:, 4:8] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, mn


def _q4_k(b):
    n = b.shape[0]
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])      # (n, 1)
    sc, mn = _k4_scale_min(b[:, 4:16])
    d1 = (d * sc.astype(np.float32)).reshape(n, 8, 1)       # d1 = d * sc   (float32)
    m1 = (dmin * mn.astype(np.float32)).reshape(n, 8, 1)    # m1 = dmin * m
    qs = b[:, 16:144].reshape(n, 4, 32)
    # each 32-byte chunk j holds sub-block 2j in its low nibbles and 2j+1 in its high nibbles
    q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(n, 8, 32).astype(np.float32)
    return (d1 * q - m1).reshape(n, 256)             # y = d1 * q - m1


def _q6_k(b):
    n = b.shape[0]
    ql = b[:, 0:128].reshape(n, 2, 64)
    qh = b[:, 128:192].reshape(n, 2, 32)
    sc = np.ascontiguousarray(b[:, 192:208]).view(np.int8).astype(np.float32).reshape(n, 2, 8)
    d = _f16(b[:, 208:210]).reshape(n, 1, 1)
    lo0, lo1 = ql[:, :, 0:32], ql[:, :, 32:64]
    q1 = (lo0 & 0x0F) | (((qh >> 0) & 3) << 4)
    q2 = (lo1 & 0x0F) | (((qh >> 2) & 3) << 4)
    q3 = (lo0 >> 4) | (((qh >> 4) & 3) << 4)
    q4 = (lo1 >> 4) | (((qh >> 6) & 3) << 4)
    q = np.stack([q1, q2, q3, q4], axis=2).astype(np.int16) - 32      # (n, 2, 4, 32)
    # element l of quarter k of half h uses scale sc[h, 2k + l // 16]
    scale = (d * sc).reshape(n, 2, 4, 2, 1)                              # d * sc  (float32)
    y = scale * q.reshape(n, 2, 4, 2, 16).astype(np.float32)            # (d * sc) * q
    return y.reshape(n, 256)


_KERNELS = {Q4_0: _q4_0, Q4_1: _q4_1, Q5_0: _q5_0, Q8_0: _q8_0, Q4_K: _q4_k, Q6_K: _q6_k}


def dequantize(raw, ggml_type, n_elements):
    raw = np.asarray(raw).reshape(-1).view(np.uint8)
    if ggml_type == F32:
        out = raw.view(np.float32)
    elif ggml_type == F16:
        out = raw.view(np.float16).astype(np.float32)
    elif ggml_type == BF16:
        out = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    elif ggml_type in _KERNELS:
        qk, size = BLOCK[ggml_type]
        if n_elements % qk or raw.size != n_elements // qk * size:
            raise ValueError(f"{NAMES[ggml_type]} tensor of {n_elements} elements has {raw.size} bytes, "
                             f"expected {n_elements // qk * size}")
        out = _KERNELS[ggml_type](raw.reshape(-1, size)).reshape(-1)
    else:
        raise ValueError(f"GGUF tensor type {ggml_type} is not supported by this dequantizer "
                         f"(supported: {', '.join(NAMES.values())})")
    if out.size != n_elements:
        raise ValueError(f"tensor has {out.size} values, expected {n_elements}")
    return out.astype(np.float32, copy=False)


def to_bf16(x):
    """float32 -> bfloat16 bits (uint16), round to nearest even (NaN kept NaN)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = ((u + np.uint32(0x7FFF) + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        r[nan] = 0x7FC0
    return r
