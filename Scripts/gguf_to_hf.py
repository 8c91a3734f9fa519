#!/usr/bin/env python3
"""Convert a llama.cpp GGUF Llama checkpoint into an FP16 Hugging Face directory.

Writes config.json, model.safetensors, tokenizer.json, tokenizer_config.json and
generation_config.json into OUT_DIR (atomically: a temporary folder is renamed at the end).

Numerics (must reproduce ../shared/data/golden/smollm2-135m/checkpoint-tensors.json):
  * quantized blocks (Q4_1, Q8_0, ...) are dequantized in float32 by the `gguf` package,
    then cast to float16; F32 tensors (norms) are cast to float16;
  * llama.cpp's converter permuted q_proj/k_proj rows so that RoPE pairs are adjacent
    (interleaved); we undo that to get the Hugging Face rotate_half layout.
Pinned: gguf, numpy, safetensors (see Scripts/requirements-model.txt).
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import gguf
from gguf.quants import dequantize
from safetensors.numpy import save_file


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def unpermute(w, n_head):
    """Inverse of llama.cpp convert_hf_to_gguf.py LlamaModel.permute (rows of q/k)."""
    rows = w.shape[0]
    return (w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:])
             .swapaxes(1, 2)
             .reshape(w.shape))


NAME_MAP = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
BLOCK_MAP = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def hf_name(name):
    if name in NAME_MAP:
        return NAME_MAP[name]
    parts = name.split(".")
    if parts[0] == "blk" and len(parts) == 4 and parts[2] in BLOCK_MAP:
        return f"model.layers.{parts[1]}.{BLOCK_MAP[parts[2]]}.{parts[3]}"
    raise SystemExit(f"error: GGUF tensor '{name}' has no Hugging Face name in this converter")


def bytes_to_unicode():
    """GPT-2's reversible byte <-> printable-unicode table (as in tokenizers' ByteLevel)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def tokenizer_json(reader):
    model = field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise SystemExit(f"error: GGUF tokenizer model '{model}' is not supported (only byte-level BPE 'gpt2')")
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type")
    merges = field(reader, "tokenizer.ggml.merges")
    pre = field(reader, "tokenizer.ggml.pre")
    vocab = {t: i for i, t in enumerate(tokens)}
    added = []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty == 3:  # CONTROL
            added.append({"id": i, "content": t, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True})
    if pre == "smollm":
        pre_tok = {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    elif pre in ("gpt-2", "default", None):
        pre_tok = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    else:
        raise SystemExit(f"error: GGUF pre-tokenizer '{pre}' is not supported by this converter")
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tok,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": merges},
    }


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: gguf_to_hf.py MODEL.gguf OUT_DIR")
    src, out = sys.argv[1], sys.argv[2]
    reader = gguf.GGUFReader(src)
    arch = field(reader, "general.architecture")
    if arch != "llama":
        raise SystemExit(f"error: {src}: architecture '{arch}' is not supported (only 'llama')")
    n_head = int(field(reader, "llama.attention.head_count"))
    n_kv = int(field(reader, "llama.attention.head_count_kv", n_head))
    hidden = int(field(reader, "llama.embedding_length"))
    tensors = {}
    for t in reader.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(d) for d in reversed(t.shape)]) if w.size == t.n_elements else w
        if t.name.endswith("attn_q.weight"):
            w = unpermute(w, n_head)
        elif t.name.endswith("attn_k.weight"):
            w = unpermute(w, n_kv)
        tensors[hf_name(t.name)] = np.ascontiguousarray(w.astype(np.float16))
    tied = "lm_head.weight" not in tensors
    vocab_size = int(field(reader, "llama.vocab_size", len(field(reader, "tokenizer.ggml.tokens"))))
    bos = int(field(reader, "tokenizer.ggml.bos_token_id", 1))
    eos = int(field(reader, "tokenizer.ggml.eos_token_id", 2))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "head_dim": int(field(reader, "llama.rope.dimension_count", hidden // n_head)),
        "hidden_act": "silu",
        "hidden_size": hidden,
        "intermediate_size": int(field(reader, "llama.feed_forward_length")),
        "max_position_embeddings": int(field(reader, "llama.context_length")),
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": n_head,
        "num_hidden_layers": int(field(reader, "llama.block_count")),
        "num_key_value_heads": n_kv,
        "pad_token_id": int(field(reader, "tokenizer.ggml.padding_token_id", eos)),
        "rms_norm_eps": float(np.float32(field(reader, "llama.attention.layer_norm_rms_epsilon"))),
        "rope_scaling": None,
        "rope_theta": float(field(reader, "llama.rope.freq_base", 10000.0)),
        "tie_word_embeddings": tied,
        "torch_dtype": "float16",
        "use_cache": True,
        "vocab_size": vocab_size,
    }
    # float32 1e-5 read back as a python float is 9.99999974e-06: round to the HF value.
    config["rms_norm_eps"] = float(f"{config['rms_norm_eps']:.6g}")
    tok = tokenizer_json(reader)
    tok_cfg = {
        "add_bos_token": bool(field(reader, "tokenizer.ggml.add_bos_token", False)),
        "add_prefix_space": False,
        "bos_token": field(reader, "tokenizer.ggml.tokens")[bos],
        "eos_token": field(reader, "tokenizer.ggml.tokens")[eos],
        "pad_token": field(reader, "tokenizer.ggml.tokens")[config["pad_token_id"]],
        "unk_token": field(reader, "tokenizer.ggml.tokens")[int(field(reader, "tokenizer.ggml.unknown_token_id", 0))],
        "model_max_length": config["max_position_embeddings"],
        "tokenizer_class": "GPT2Tokenizer",
        "clean_up_tokenization_spaces": False,
    }
    chat = field(reader, "tokenizer.chat_template")
    if chat:
        tok_cfg["chat_template"] = chat
    parent = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".gguf2hf-", dir=parent)
    try:
        save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        for name, obj in (("config.json", config), ("tokenizer.json", tok),
                          ("tokenizer_config.json", tok_cfg),
                          ("generation_config.json", {"bos_token_id": bos, "eos_token_id": eos})):
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                json.dump(obj, f, ensure_ascii=False, indent=1 if name != "tokenizer.json" else None)
                f.write("\n")
        os.chmod(tmp, 0o755)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


if __name__ == "__main__":
    main()
