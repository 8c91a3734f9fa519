"""Our GGUF dequantizer (Scripts/gguf_dequant.py), which builds both benchmark models, against the
`gguf` package's own dequantizer (gguf.quants, an independent implementation of ggml's formats),
bit for bit in float32, on random blocks of every type it reads; and its BF16 rounding against
torch's. CI does not download the 1.1 GB Qwen2.5-Coder GGUF: its Q4_K / Q6_K blocks are checked
here on random bytes, and the whole model by `bash Scripts/fetch-qwen2-model.sh --verify`
(every tensor against gguf, every weight against transformers' own GGUF loading, logits).
"""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "Scripts"))
import gguf  # noqa: E402
from gguf.quants import dequantize as gguf_dequantize  # noqa: E402
import gguf_dequant as ours  # noqa: E402

TYPES = {
    "Q4_0": (gguf.GGMLQuantizationType.Q4_0, [0]),
    "Q4_1": (gguf.GGMLQuantizationType.Q4_1, [0, 2]),
    "Q8_0": (gguf.GGMLQuantizationType.Q8_0, [0]),
    "Q4_K": (gguf.GGMLQuantizationType.Q4_K, [0, 2]),
    "Q6_K": (gguf.GGMLQuantizationType.Q6_K, [208]),
}


def random_blocks(name, n_blocks, rng):
    """Random block bytes whose FP16 fields (offsets in TYPES) hold finite values of ±2^-14 … 2^0."""
    qtype, f16_offsets = TYPES[name]
    size = ours.BLOCK[int(qtype)][1]
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for off in f16_offsets:
        vals = (rng.uniform(-1, 1, n_blocks) * 2.0 ** rng.integers(-14, 1, n_blocks)).astype(np.float16)
        raw[:, off:off + 2] = vals.view(np.uint8).reshape(n_blocks, 2)
    return raw


@pytest.mark.parametrize("name", list(TYPES))
def test_blocks_equal_gguf_package(name):
    rng = np.random.default_rng(len(name) * 7919 + ord(name[-1]))
    qtype = TYPES[name][0]
    qk = ours.BLOCK[int(qtype)][0]
    raw = random_blocks(name, 512, rng)
    got = ours.dequantize(raw.reshape(-1), int(qtype), 512 * qk)
    want = np.asarray(gguf_dequantize(raw.reshape(-1), qtype), dtype=np.float32).reshape(-1)
    assert got.shape == want.shape
    mismatch = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
    assert mismatch.size == 0, f"{name}: {mismatch.size} values differ, first at {mismatch[0]}: {got[mismatch[0]]} vs {want[mismatch[0]]}"
    assert np.isfinite(got).all() and np.abs(got).max() > 0


def test_refuses_unknown_type_and_bad_size():
    with pytest.raises(ValueError, match="not supported"):
        ours.dequantize(np.zeros(110, np.uint8), int(gguf.GGMLQuantizationType.Q5_K), 256)
    with pytest.raises(ValueError, match="expected 144"):
        ours.dequantize(np.zeros(100, np.uint8), int(gguf.GGMLQuantizationType.Q4_K), 256)


def test_bf16_rounding_equals_torch():
    import torch   # Scripts/requirements-runtimes.txt
    rng = np.random.default_rng(5)
    x = rng.standard_normal(200000).astype(np.float32) * 2.0 ** rng.integers(-30, 30, 200000)
    # Exact ties (the low 16 bits 0x8000) on both even and odd BF16 mantissas, and signed zeros.
    ties = (np.arange(1000, dtype=np.uint32) << 16 | 0x8000).view(np.float32)
    x = np.concatenate([x, ties, -ties, np.array([0.0, -0.0, 1e-45, 3.4e38], np.float32)])
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(ours.to_bf16(x), want)
