"""Scripts/llamacpp_imatrix_q4_0.py (docs/accuracy.md "Bounded clipping") against llama.cpp itself:
random rows quantized to Q4_0 by ggml's own `ggml_quantize_chunk` (libggml-base of the pinned
llama-cpp-python, called through ctypes), with and without an importance matrix, dequantized by
the `gguf` package — equal bit for bit to the script's numpy reproduction. With numpy's pairwise
sums instead of ggml's float32 loops 58–95 of the 36 864 weights differ: the test catches it.
"""
import ctypes
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "Scripts"))
import gguf  # noqa: E402
import llama_cpp  # noqa: E402
from gguf.quants import dequantize  # noqa: E402
import llamacpp_imatrix_q4_0 as ours  # noqa: E402

GGML_TYPE_Q4_0 = 2


def ggml_q4_0(x, imatrix):
    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))
    f = lib.ggml_quantize_chunk
    f.restype = ctypes.c_size_t
    f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                  ctypes.c_void_p]
    rows, n = x.shape
    dst = np.zeros(rows * n // 32 * 18, np.uint8)  # block_q4_0: FP16 d + 16 bytes of codes
    size = f(GGML_TYPE_Q4_0, x.ctypes.data, dst.ctypes.data, 0, rows, n,
             None if imatrix is None else imatrix.ctypes.data)
    assert size == dst.size
    return np.asarray(dequantize(dst, gguf.GGMLQuantizationType.Q4_0), np.float32).reshape(rows, n)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_numpy_reproduction_equals_ggml(seed):
    rng = np.random.default_rng(seed)
    rows, n = 64, 576
    # heavy-tailed rows (outliers in some groups), one all-zero block, and an exact tie of extremes
    x = (rng.standard_normal((rows, n)) * np.exp(rng.standard_normal((rows, n)))).astype(np.float32) * 0.02
    x[3, 32:64] = 0
    x[5, 0], x[5, 1] = 0.5, -0.5
    qw = (rng.uniform(0, 1, n) ** 4 * 10).astype(np.float32)
    plain, imx = ggml_q4_0(x, None), ggml_q4_0(x, qw)
    assert np.array_equal(ours.q4_0_plain(x).view(np.uint32), plain.view(np.uint32))
    mine = ours.q4_0_imatrix(x, qw)
    diff = np.flatnonzero(mine.view(np.uint32) != imx.view(np.uint32))
    assert diff.size == 0, f"{diff.size} weights differ from ggml's, first at {diff[0]}"
    # the importance matrix changes the result (the test would not pass with the plain quantizer)
    assert not np.array_equal(plain, imx)
    assert np.all(imx[3, 32:64] == 0)
