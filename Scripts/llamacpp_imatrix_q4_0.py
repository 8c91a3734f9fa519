#!/usr/bin/env python3
"""llama.cpp's Q4_0 quantizer reproduced in numpy, with our calibration statistics as its
importance matrix (docs/accuracy.md "Bounded clipping"):

    llamacpp_imatrix_q4_0.py HF_DIR STATS.h5 OUT_DIR [--plain]

Every decoder linear (q/k/v/o, gate/up/down) of the HF folder is quantized to Q4_0 blocks of 32
as ggml-quants.c does — `quantize_row_q4_0_impl` with an importance matrix: per row σ² = mean w²,
weights qw_j · √(σ² + w_j²), `make_qx_quants(32, 8, …, rmse_type 1)`: codes from
iscale = −(8 + 0.1·i)/max for i = −9 … 9 (the plain −8/max first), each rounding's weighted
least-squares scale, the best kept, the scale stored as FP16 — and written back dequantized
(d·q, float32) into OUT_DIR, an HF folder our FP32 reference (`fireq eval`, `fireq compare`)
runs like any other. The importance matrix qw is the statistics file's E[x²] of each linear's
input (`layers/L/inputs/{attn,o_proj,mlp,down_proj}/mean_sq`), where `llama-imatrix` would
collect the same mean of squares on its own run. Embeddings, norms and the lm_head stay as
stored (llama.cpp keeps a tied Q8_0 table when the hidden size is not a multiple of 256).

--plain: `quantize_row_q4_0_ref` (no importance matrix: d = max/−8, codes ⌊x/d + 8.5⌋ clamped to
15) — on the default model this writes llama.cpp's own Q4_0 weights bit for bit (checked against
the `gguf` package's dequantization of llama.cpp's GGUF, tensors not permuted by the converter).
"""
import os
import shutil
import sys

import h5py
import numpy as np
from safetensors.numpy import load_file, save_file

INPUTS = {"q_proj": "attn", "k_proj": "attn", "v_proj": "attn", "o_proj": "o_proj",
          "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "down_proj"}


def q4_0_plain(x):
    rows, n = x.shape
    xb = x.reshape(rows, n // 32, 32)
    i = np.argmax(np.abs(xb), axis=2)
    mx = np.take_along_axis(xb, i[..., None], 2)[..., 0]
    d = mx / np.float32(-8)
    inv = np.where(d != 0, 1 / np.where(d != 0, d, 1), 0).astype(np.float32)
    q = np.minimum(np.floor(xb * inv[..., None] + np.float32(8.5)), 15) - 8
    d16 = d.astype(np.float16).astype(np.float32)
    return (q * d16[..., None]).reshape(rows, n)


def seq_sum(a):
    """Σ over the last axis in index order, in float32 (ggml's loops; numpy's sum is pairwise)."""
    acc = np.zeros(a.shape[:-1], np.float32)
    for j in range(a.shape[-1]):
        acc = acc + a[..., j]
    return acc


def q4_0_imatrix(x, qw):
    rows, n = x.shape
    xb = x.reshape(rows, n // 32, 32)
    sigma2 = seq_sum(x * x) / np.float32(n)
    w = qw.reshape(1, n // 32, 32) * np.sqrt(sigma2[:, None, None] + xb * xb)
    i = np.argmax(np.abs(xb), axis=2)
    mx = np.take_along_axis(xb, i[..., None], 2)[..., 0]
    safe = np.where(mx != 0, mx, 1).astype(np.float32)

    def rounding(iscale):
        # nearest_int (round half to even); + 0 makes rint's −0 the integer 0 ggml stores
        lv = np.clip(np.rint(iscale[..., None] * xb), -8, 7) + np.float32(0)
        return lv, seq_sum(w * xb * lv), seq_sum(w * lv * lv)

    codes, sumlx, suml2 = rounding(np.float32(-8) / safe)
    scale = np.where(suml2 > 0, sumlx / np.where(suml2 > 0, suml2, 1), 0).astype(np.float32)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        lv, sx, s2 = rounding(-(np.float32(8) + np.float32(0.1) * np.float32(step)) / safe)
        take = (s2 > 0) & (sx * sx > best * s2)
        codes = np.where(take[..., None], lv, codes)
        scale = np.where(take, sx / np.where(s2 > 0, s2, 1), scale).astype(np.float32)
        best = np.where(take, scale * sx, best)
    zero = np.abs(mx) < 1e-15  # GROUP_MAX_EPS: an all-zero block stores code 0 (= −8) and d 0
    scale = np.where(zero, 0, scale)
    codes = np.where(zero[..., None], np.float32(-8), codes)
    d16 = scale.astype(np.float16).astype(np.float32)
    return (codes * d16[..., None]).reshape(rows, n)


def main():
    args = [a for a in sys.argv[1:] if a != "--plain"]
    if len(args) != 3:
        sys.exit(__doc__)
    src, stats, out = args
    plain = "--plain" in sys.argv
    files = sorted(f for f in os.listdir(src) if f.endswith(".safetensors"))
    if not files:
        sys.exit(f"{src}: no .safetensors files")
    s = h5py.File(stats, "r")
    tmp = out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name in files:
        tensors = {}
        for key, v in load_file(os.path.join(src, name)).items():
            v = v.astype(np.float32)
            p = key.split(".")
            if len(p) > 4 and p[1] == "layers" and p[4] in INPUTS and p[-1] == "weight":
                if plain:
                    v = q4_0_plain(v)
                else:
                    qw = s[f"layers/{p[2]}/inputs/{INPUTS[p[4]]}/mean_sq"][:].astype(np.float32)
                    v = q4_0_imatrix(v, qw)
            tensors[key] = v
        save_file(tensors, os.path.join(tmp, name), metadata={"format": "pt"})
    for f in os.listdir(src):
        if not f.endswith(".safetensors") and not f.startswith(".") and os.path.isfile(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    print(f"wrote {out} ({'plain' if plain else 'importance-matrix'} Q4_0 of {src}'s decoder linears, as F32)")


if __name__ == "__main__":
    main()
