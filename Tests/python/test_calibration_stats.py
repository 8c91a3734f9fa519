"""h5py reads a `fireq calibrate` file: names, shapes, dtypes, attributes (Formats/calibration-stats.md).

Run by Scripts/test.sh with FIREQ_STATS pointing at a file made for the default model.
"""
import os

import h5py
import numpy as np

PATH = os.environ["FIREQ_STATS"]
LAYERS, HIDDEN, HEADS, KV, D, INTER = 30, 576, 9, 3, 64, 1536


def test_root_attributes_are_str():
    with h5py.File(PATH, "r") as f:
        a = f.attrs
        for name in ["format", "format_version", "tool_version", "model_sha256", "model_path", "source_kind",
                     "source_path", "source_sha256", "samples", "seq_len", "selection", "seed", "tokens",
                     "layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size"]:
            assert isinstance(a[name], str), name
        assert a["format"] == "fireq-calibration-stats" and a["format_version"] == "1"
        assert "created" not in a  # no time stamp: the same inputs give the same bytes
        assert len(a["model_sha256"]) == 64 and len(a["source_sha256"]) == 64
        assert int(a["tokens"]) == int(a["samples"]) * int(a["seq_len"])
        assert int(a["layers"]) == LAYERS


def test_datasets_names_shapes_dtypes():
    with h5py.File(PATH, "r") as f:
        assert sorted(f["layers"].keys(), key=int) == [str(i) for i in range(LAYERS)]
        tokens = int(f.attrs["tokens"])
        for i in range(LAYERS):
            g = f[f"layers/{i}"]
            for name, shape in [("k_pre_rope_pair_norm_max", (KV, D // 2)), ("k_post_rope_absmax", (KV, D)),
                                ("q_post_rope_absmax", (HEADS, D)), ("v_absmax", (KV * D,))]:
                assert g[name].shape == shape and g[name].dtype == np.float32, (i, name)
                assert np.all(np.isfinite(g[name][...])) and np.all(g[name][...] >= 0)
            for tap, c in [("attn", HIDDEN), ("o_proj", HEADS * D), ("mlp", HIDDEN), ("down_proj", INTER)]:
                t = g[f"inputs/{tap}"]
                assert int(t.attrs["token_count"]) == tokens
                for s in ["absmax", "mean_abs", "mean_sq"]:
                    assert t[s].shape == (c,) and t[s].dtype == np.float32, (i, tap, s)
                # mean|x| <= max|x| and mean x^2 <= max|x|^2, channel by channel.
                assert np.all(t["mean_abs"][...] <= t["absmax"][...] * (1 + 1e-6))
                assert np.all(t["mean_sq"][...] <= t["absmax"][...] ** 2 * (1 + 1e-5))
            # Post-RoPE |k| is bounded by the pre-RoPE pair norm of its pair (rotation keeps the norm).
            pair = g["k_pre_rope_pair_norm_max"][...]
            post = g["k_post_rope_absmax"][...]
            bound = np.concatenate([pair, pair], axis=1)
            assert np.all(post <= bound * (1 + 1e-5) + 1e-6)
            assert g["k_post_rope_absmax"].compression == "gzip"


def test_calibration_windows_are_stored():
    """Dataset `tokens` int32 [samples, seq_len]: the windows GPTQ streams again, equal to what
    the reference tokenizer (Hugging Face tokenizers) gives for the calibration text."""
    with h5py.File(PATH, "r") as f:
        a = f.attrs
        n, length = int(a["samples"]), int(a["seq_len"])
        t = f["tokens"]
        assert t.shape == (n, length) and t.dtype == np.int32
        ids = t[...]
        assert ids.min() >= 0 and ids.max() < 49152
        assert a["source_kind"] == "text" and a["selection"] == "in-order"
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(os.path.join(os.environ["FIREQ_MODEL"], "tokenizer.json"))
        source = open(a["source_path"], "rb").read().decode("utf-8")
        expected = tok.encode(source, add_special_tokens=False).ids[: n * length]
        assert ids.reshape(-1).tolist() == expected


def test_integrity_block_is_the_sha256_of_the_rest():
    # Formats/calibration-stats.md "Integrity block": hashlib, not the tool's SHA-256, is the oracle.
    import hashlib
    data = open(PATH, "rb").read()
    with h5py.File(PATH, "r") as f:
        assert f.userblock_size == 512
    line = b"fireq-calibration-stats sha256 " + hashlib.sha256(data[512:]).hexdigest().encode() + b"\n"
    assert data[:len(line)] == line
    assert data[len(line):512] == bytes(512 - len(line))
    assert data[512:520] == b"\x89HDF\r\n\x1a\n"
