#!/usr/bin/env python3
"""Golden data for the low-precision codecs, computed by PyPI ml_dtypes (pinned in
Scripts/requirements-model.txt). Writes one little-endian binary file:

  magic "FQCODEC1", u32 n_inputs
  f32[n]  inputs (random bit patterns, ranged values, exact ties of every format, specials)
  u16[n]  float16   (round-to-nearest-even; overflow -> Inf)
  u16[n]  bfloat16  (round-to-nearest-even; overflow -> Inf; NaN -> NaN)
  u8[n]   float8_e4m3fn, IEEE-style   (overflow and Inf -> NaN, the format has no Inf)
  u8[n]   float8_e4m3fn, saturating   (values clipped to +-448 first; NaN stays NaN)
  u8[n]   float8_e5m2, IEEE-style     (overflow -> Inf)
  u8[n]   float8_e5m2, saturating     (clipped to +-57344 first)
  f32[256] decode of every e4m3fn code, f32[256] of every e5m2 code, f32[65536] of every float16 code

NaN outputs are compared as "is NaN" by the tests (payloads differ between libraries).
"""
import struct
import sys

import ml_dtypes
import numpy as np

np.seterr(all="ignore")
rng = np.random.default_rng(20261129)
parts = []
# 1) random float32 bit patterns: every exponent, NaN, Inf, subnormals.
parts.append(rng.integers(0, 2**32, size=460_000, dtype=np.uint64).astype(np.uint32).view(np.float32))
# 2) log-uniform magnitudes over each format's range and a bit beyond, both signs.
for lo, hi in ((-30, 20), (-12, 10), (-20, 18), (-140, 130)):
    mag = np.exp2(rng.uniform(lo, hi, size=100_000)).astype(np.float32)
    parts.append(mag * rng.choice(np.array([-1, 1], dtype=np.float32), size=mag.size))
# 3) exact ties (midpoints of consecutive representable values) and the values themselves.
def ties(dtype, codes):
    v = np.array(codes, dtype=np.uint8 if np.dtype(dtype).itemsize == 1 else np.uint16).view(dtype).astype(np.float64)
    v = np.unique(v[np.isfinite(v)])
    mids = (v[1:] + v[:-1]) / 2
    return np.concatenate([v, mids]).astype(np.float32)
parts.append(ties(ml_dtypes.float8_e4m3fn, range(256)))
parts.append(ties(ml_dtypes.float8_e5m2, range(256)))
parts.append(ties(np.float16, range(65536)))
bf = np.arange(0, 65536, 7, dtype=np.uint32)  # a sample of bfloat16 codes and their midpoints
parts.append(ties(ml_dtypes.bfloat16, bf))
# 4) specials.
parts.append(np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 448, 464, 464.0001, 479.99, 480, -464, 57344, 61440,
                       65504, 65520, 65519.996, 2.0**-9, 2.0**-10, 3 * 2.0**-11, 2.0**-24, 2.0**-25, 2.0**-26,
                       1.5 * 2.0**-16, 2.0**-17, np.finfo(np.float32).max, np.finfo(np.float32).tiny, 1e-45],
                      dtype=np.float32))
x = np.concatenate(parts).astype(np.float32)
assert x.size >= 1_000_000, x.size

def sat(v, m):
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(v), v, np.clip(v, -m, m)).astype(np.float32)

with np.errstate(over="ignore", invalid="ignore"):
    out = [
        x.astype(np.float16).view(np.uint16),
        x.astype(ml_dtypes.bfloat16).view(np.uint16),
        x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8),
        sat(x, 448).astype(ml_dtypes.float8_e4m3fn).view(np.uint8),
        x.astype(ml_dtypes.float8_e5m2).view(np.uint8),
        sat(x, 57344).astype(ml_dtypes.float8_e5m2).view(np.uint8),
    ]
dec = [
    np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float32),
    np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e5m2).astype(np.float32),
    np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32),
]
with open(sys.argv[1], "wb") as f:
    f.write(b"FQCODEC1" + struct.pack("<I", x.size))
    f.write(x.tobytes())
    for o in out:
        f.write(o.astype(o.dtype.newbyteorder("<")).tobytes())
    for d in dec:
        f.write(d.tobytes())
print(f"wrote {x.size} inputs to {sys.argv[1]}")
