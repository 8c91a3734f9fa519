#!/usr/bin/env python3
"""Writes a random-weight Llama checkpoint with a real model's layer shape, for memory and time
rehearsals of models far larger than the default one (issues #11 and #14).

    python3 Scripts/make_random_checkpoint.py --shape llama3-8b --layers 2 --out DIR \
        [--dtype bf16|f16] [--seed 0] [--max-shard-bytes 2000000000] [--tokenizer-from DIR]

Weights ~ N(0, 0.02²) (norms 1), seeded, in BF16 (or F16), written in Hugging Face's sharded layout
(model-0000k-of-0000n.safetensors + model.safetensors.index.json) without holding the whole model
in memory: one tensor at a time. The tokenizer files are copied from --tokenizer-from (default:
the default model); its ids are all below the shape's vocabulary. Only numpy is needed.
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

SHAPES = {
    # hidden, heads, kv heads, intermediate, vocab, rope theta, tied
    "llama3-8b": dict(hidden=4096, heads=32, kv=8, inter=14336, vocab=128256, theta=500000.0, tied=False),
    "llama3-70b": dict(hidden=8192, heads=64, kv=8, inter=28672, vocab=128256, theta=500000.0, tied=False),
    "smollm2-135m": dict(hidden=576, heads=9, kv=3, inter=1536, vocab=49152, theta=100000.0, tied=True),
    # Fuzzing seeds (Fuzz/make-seeds.sh): a few KB, with the byte-level tokenizer below.
    "tiny": dict(hidden=64, heads=2, kv=1, inter=128, vocab=272, theta=10000.0, tied=True),
}


def byte_level_tokenizer(merges):
    """A complete byte-level BPE tokenizer.json (GPT-2 byte alphabet, the given merges, three
    special tokens at the end): every text encodes, ids < 256 + len(merges) + 3."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    alphabet = [chr(c) for _, c in sorted(zip(bs, cs))]
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for a, b in merges:
        vocab[a + b] = len(vocab)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    added = [dict(id=len(vocab) + k, content=t, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
             for k, t in enumerate(specials)]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]},
        "post_processor": dict(byte_level, add_prefix_space=True, trim_offsets=False),
        "decoder": dict(byte_level, add_prefix_space=True),
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }


TINY_MERGES = [("\u0120", "t"), ("h", "e"), ("\u0120t", "he"), ("\u0120", "a"), ("i", "n"), ("e", "r")]


def to_16bit(x, dtype):
    if dtype == "f16":
        return x.astype(np.float16).view(np.uint16)
    b = x.astype(np.float32).view(np.uint32)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)   # nearest even (finite inputs)


def tensors(shape, layers):
    h, H, kv, inter, vocab = shape["hidden"], shape["heads"], shape["kv"], shape["inter"], shape["vocab"]
    d = h // H
    yield "model.embed_tokens.weight", (vocab, h), False
    for i in range(layers):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", (h,), True
        yield p + "self_attn.q_proj.weight", (H * d, h), False
        yield p + "self_attn.k_proj.weight", (kv * d, h), False
        yield p + "self_attn.v_proj.weight", (kv * d, h), False
        yield p + "self_attn.o_proj.weight", (h, H * d), False
        yield p + "post_attention_layernorm.weight", (h,), True
        yield p + "mlp.gate_proj.weight", (inter, h), False
        yield p + "mlp.up_proj.weight", (inter, h), False
        yield p + "mlp.down_proj.weight", (h, inter), False
    yield "model.norm.weight", (h,), True
    if not shape["tied"]:
        yield "lm_head.weight", (vocab, h), False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", choices=["bf16", "f16"], default="bf16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-shard-bytes", type=int, default=2_000_000_000)
    ap.add_argument("--tokenizer-from", default=os.path.join(os.path.dirname(__file__), "..", ".cache", "models", "smollm2-135m-instruct"),
                    help="folder to copy tokenizer.json and tokenizer_config.json from; 'byte-level' writes a "
                         "tiny byte-level BPE tokenizer instead (the 'tiny' shape's default)")
    a = ap.parse_args()
    shape = SHAPES[a.shape]
    if a.shape == "tiny" and "--tokenizer-from" not in sys.argv:
        a.tokenizer_from = "byte-level"
    if a.layers < 1:
        sys.exit(f"error: --layers must be at least 1 (got {a.layers})")
    tmp = a.out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    rng = np.random.default_rng(a.seed)
    dt = "BF16" if a.dtype == "bf16" else "F16"

    # Plan the shards: tensors in order, a new shard when the next tensor would pass the limit.
    plan, shard, size = [], [], 0
    for name, shp, norm in tensors(shape, a.layers):
        n = 2 * int(np.prod(shp))
        if shard and size + n > a.max_shard_bytes:
            plan.append(shard)
            shard, size = [], 0
        shard.append((name, shp, norm))
        size += n
    plan.append(shard)
    weight_map, total = {}, 0
    for k, shard in enumerate(plan):
        fname = f"model-{k + 1:05d}-of-{len(plan):05d}.safetensors"
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, shp, _ in shard:
            n = 2 * int(np.prod(shp))
            header[name] = {"dtype": dt, "shape": list(shp), "data_offsets": [off, off + n]}
            off += n
            weight_map[name] = fname
        hb = json.dumps(header, separators=(",", ":")).encode()
        hb += b" " * ((8 - len(hb) % 8) % 8)
        with open(os.path.join(tmp, fname), "wb") as f:
            f.write(struct.pack("<Q", len(hb)))
            f.write(hb)
            for name, shp, norm in shard:
                if norm:
                    f.write(to_16bit(np.ones(shp, np.float32), a.dtype).tobytes())
                    continue
                rows = shp[0]
                step = max(1, (1 << 24) // int(np.prod(shp[1:])))
                for r in range(0, rows, step):   # bounded memory: 16 M values at a time
                    block = rng.standard_normal((min(step, rows - r),) + tuple(shp[1:]), dtype=np.float32) * 0.02
                    f.write(to_16bit(block, a.dtype).tobytes())
        total += off
    with open(os.path.join(tmp, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    h, H = shape["hidden"], shape["heads"]
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": h, "intermediate_size": shape["inter"], "num_hidden_layers": a.layers,
        "num_attention_heads": H, "num_key_value_heads": shape["kv"], "head_dim": h // H,
        "vocab_size": shape["vocab"], "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
        "rope_theta": shape["theta"], "tie_word_embeddings": shape["tied"], "hidden_act": "silu",
        "attention_bias": False, "torch_dtype": "bfloat16" if a.dtype == "bf16" else "float16",
        "bos_token_id": 1, "eos_token_id": 2,
    }
    if a.tokenizer_from == "byte-level":   # <|im_start|> and <|im_end|> of byte_level_tokenizer
        config["bos_token_id"], config["eos_token_id"] = 256 + len(TINY_MERGES) + 1, 256 + len(TINY_MERGES) + 2
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    if a.tokenizer_from == "byte-level":
        tok = byte_level_tokenizer(TINY_MERGES)
        assert len(tok["model"]["vocab"]) + len(tok["added_tokens"]) <= shape["vocab"]
        with open(os.path.join(tmp, "tokenizer.json"), "w") as f:
            json.dump(tok, f, indent=1, ensure_ascii=False)
        with open(os.path.join(tmp, "tokenizer_config.json"), "w") as f:
            json.dump({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "add_bos_token": False,
                       "model_max_length": 8192, "tokenizer_class": "GPT2Tokenizer"}, f, indent=1)
    else:
        for t in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(a.tokenizer_from, t), os.path.join(tmp, t))
    shutil.rmtree(a.out, ignore_errors=True)
    os.rename(tmp, a.out)
    print(f"{a.out}: {a.shape} shape, {a.layers} layers, {a.dtype}, {total / 1e9:.2f} GB in {len(plan)} shards")


if __name__ == "__main__":
    main()
