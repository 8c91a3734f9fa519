#!/usr/bin/env python3
"""Convert a llama.cpp GGUF checkpoint (architecture `llama`, `qwen2` or `gemma3`) into a Hugging Face folder.

    gguf_to_hf.py MODEL.gguf OUT_DIR [--dtype f16|bf16]      (default f16)

Writes config.json, model.safetensors, tokenizer.json, tokenizer_config.json and
generation_config.json into OUT_DIR (atomically: a temporary folder is renamed at the end).

Numerics (f16 must reproduce ../shared/data/golden/smollm2-135m/checkpoint-tensors.json):
  * quantized blocks (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K) are dequantized in float32 by our own
    dequantizer (Scripts/gguf_dequant.py; Scripts/verify_gguf_folder.py checks it against the
    `gguf` package's and transformers' own GGUF loading), then rounded to float16 or bfloat16
    (nearest even); F32 tensors (norms, biases) are rounded the same way;
  * `llama`: llama.cpp's converter permuted q_proj/k_proj rows so that RoPE pairs are adjacent
    (interleaved); we undo that to get the Hugging Face rotate_half layout. `qwen2` GGUFs keep
    the Hugging Face (NEOX) layout: no permutation to undo.
  * `gemma3`: llama.cpp's converter stores every RMSNorm weight as 1 + w (its runtime multiplies by
    the stored value; Hugging Face's Gemma multiplies by 1 + w): we subtract 1 in float32, as
    transformers' own GGUF loader does. The config gets what llama.cpp's `gemma3` fixes rather than
    stores: every 6th layer global, the others sliding (window from the file), sliding-layer RoPE
    base 10 000, q·k scaled by head_dim^-1/2 (query_pre_attn_scalar = head_dim), tanh GELU. The
    file holds a SentencePiece vocabulary without merges; tokenizer.json is the one transformers
    builds from it (`AutoTokenizer.from_pretrained(gguf_file=...)`, which needs transformers).
Pinned: gguf (its file reader only), numpy, safetensors (see Scripts/requirements-model.txt).
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import gguf
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_dequant import dequantize, to_bf16  # noqa: E402


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
GEMMA3_BLOCK_MAP = dict(BLOCK_MAP, **{
    "ffn_norm": "pre_feedforward_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
})
# The Hugging Face "architectures" entry and model_type of each supported GGUF architecture.
ARCHS = {"llama": ("LlamaForCausalLM", "llama"), "qwen2": ("Qwen2ForCausalLM", "qwen2"),
         "gemma3": ("Gemma3ForCausalLM", "gemma3_text")}
QWEN2_SPLIT = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
               "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def hf_name(name, arch="llama"):
    if name in NAME_MAP:
        return NAME_MAP[name]
    parts = name.split(".")
    block_map = GEMMA3_BLOCK_MAP if arch == "gemma3" else BLOCK_MAP
    if parts[0] == "blk" and len(parts) == 4 and parts[2] in block_map:
        return f"model.layers.{parts[1]}.{block_map[parts[2]]}.{parts[3]}"
    raise SystemExit(f"error: GGUF tensor '{name}' has no Hugging Face name in this converter")


def save_safetensors(tensors, path, dtype):
    """safetensors with every tensor in `dtype` ("F16": float16 arrays; "BF16": uint16 bit arrays),
    names sorted, data 8-byte aligned after the header (as safetensors' own writer lays it out)."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name in sorted(tensors):
        a = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for name in sorted(tensors):
            f.write(np.ascontiguousarray(tensors[name]).tobytes())


def load_safetensors_16bit(path):
    """A safetensors file's tensors as {name: (dtype, uint16 bit array)}; every tensor must be F16
    or BF16 (what this converter writes; numpy has no bfloat16)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, m in header.items():
        if name == "__metadata__":
            continue
        if m["dtype"] not in ("F16", "BF16"):
            raise SystemExit(f"error: {path}: tensor {name} is {m['dtype']}, expected F16 or BF16")
        a, b = m["data_offsets"]
        out[name] = (m["dtype"], np.frombuffer(data[a:b], dtype=np.uint16).reshape(m["shape"]))
    return out


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
        if ty in (3, 4):  # CONTROL (special) and USER_DEFINED (added, not special)
            added.append({"id": i, "content": t, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": ty == 3})
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    post = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    decoder = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    normalizer = None
    if pre == "qwen2":
        # What Qwen2's own tokenizer.json holds: NFC, the Qwen2 split regex, byte level without regex.
        plain = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
        pre_tok = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
            plain]}
        post, decoder, normalizer = plain, plain, {"type": "NFC"}
    elif pre == "smollm":
        pre_tok = {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, byte_level]}
    elif pre in ("gpt-2", "default", None):
        pre_tok = byte_level
    else:
        raise SystemExit(f"error: GGUF pre-tokenizer '{pre}' is not supported by this converter")
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tok,
        "post_processor": post,
        "decoder": decoder,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": merges},
    }


def main():
    args = sys.argv[1:]
    dtype = "f16"
    if len(args) == 4 and args[2] == "--dtype" and args[3] in ("f16", "bf16"):
        dtype = args[3]
        args = args[:2]
    if len(args) != 2:
        raise SystemExit("usage: gguf_to_hf.py MODEL.gguf OUT_DIR [--dtype f16|bf16]")
    src, out = args
    reader = gguf.GGUFReader(src)
    arch = field(reader, "general.architecture")
    if arch not in ARCHS:
        raise SystemExit(f"error: {src}: architecture '{arch}' is not supported (only {', '.join(ARCHS)})")
    hf_arch, model_type = ARCHS[arch]
    n_head = int(field(reader, f"{arch}.attention.head_count"))
    n_kv = int(field(reader, f"{arch}.attention.head_count_kv", n_head))
    hidden = int(field(reader, f"{arch}.embedding_length"))
    tensors = {}
    for t in reader.tensors:
        n = int(t.n_elements)
        try:
            w = dequantize(t.data, int(t.tensor_type), n)
        except ValueError as e:
            raise SystemExit(f"error: {src}: tensor '{t.name}': {e}")
        w = w.reshape([int(d) for d in reversed(t.shape)])
        if arch == "llama" and t.name.endswith("attn_q.weight"):
            w = unpermute(w, n_head)
        elif arch == "llama" and t.name.endswith("attn_k.weight"):
            w = unpermute(w, n_kv)
        elif arch == "gemma3" and t.name.endswith("norm.weight"):
            w = w - np.float32(1)
        if dtype == "bf16":
            tensors[hf_name(t.name, arch)] = np.ascontiguousarray(to_bf16(w))
        else:
            tensors[hf_name(t.name, arch)] = np.ascontiguousarray(w.astype(np.float16))
    tied = "lm_head.weight" not in tensors
    vocab_size = int(field(reader, f"{arch}.vocab_size", len(field(reader, "tokenizer.ggml.tokens"))))
    bos = int(field(reader, "tokenizer.ggml.bos_token_id", 1))
    eos = int(field(reader, "tokenizer.ggml.eos_token_id", 2))
    torch_dtype = "bfloat16" if dtype == "bf16" else "float16"
    config = {
        "architectures": [hf_arch],
        "attention_dropout": 0.0,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "intermediate_size": int(field(reader, f"{arch}.feed_forward_length")),
        "max_position_embeddings": int(field(reader, f"{arch}.context_length")),
        "model_type": model_type,
        "num_attention_heads": n_head,
        "num_hidden_layers": int(field(reader, f"{arch}.block_count")),
        "num_key_value_heads": n_kv,
        "rms_norm_eps": float(np.float32(field(reader, f"{arch}.attention.layer_norm_rms_epsilon"))),
        "rope_scaling": None,
        "rope_theta": float(field(reader, f"{arch}.rope.freq_base", 10000.0)),
        "tie_word_embeddings": tied,
        "torch_dtype": torch_dtype,
        "use_cache": True,
        "vocab_size": vocab_size,
    }
    if arch == "gemma3":
        if field(reader, "gemma3.rope.scaling.type") is not None:
            raise SystemExit(f"error: {src}: RoPE scaling in a gemma3 GGUF is not supported by this converter")
        head_dim = int(field(reader, "gemma3.attention.key_length"))
        n_layers = config["num_hidden_layers"]
        del config["hidden_act"], config["rope_scaling"]
        config.update({
            "head_dim": head_dim, "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": head_dim,
            "sliding_window": int(field(reader, "gemma3.attention.sliding_window")),
            "layer_types": ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(n_layers)],
            "rope_local_base_freq": 10000.0, "attention_bias": False, "final_logit_softcapping": None,
            "attn_logit_softcapping": None, "use_bidirectional_attention": False,
            "pad_token_id": int(field(reader, "tokenizer.ggml.padding_token_id", 0))})
    elif arch == "llama":
        config.update({"attention_bias": False, "mlp_bias": False,
                       "head_dim": int(field(reader, "llama.rope.dimension_count", hidden // n_head)),
                       "pad_token_id": int(field(reader, "tokenizer.ggml.padding_token_id", eos))})
    else:
        # Qwen2: q/k/v biases always; full attention in every layer (no sliding window).
        config.update({"use_sliding_window": False, "sliding_window": None, "max_window_layers": config["num_hidden_layers"]})
        if field(reader, "tokenizer.ggml.padding_token_id") is not None:
            config["pad_token_id"] = int(field(reader, "tokenizer.ggml.padding_token_id"))
    config = dict(sorted(config.items()))
    # float32 1e-5 read back as a python float is 9.99999974e-06: round to the HF value.
    config["rms_norm_eps"] = float(f"{config['rms_norm_eps']:.6g}")
    tok = tokenizer_json(reader) if arch != "gemma3" else None
    tok_cfg = {
        "add_bos_token": bool(field(reader, "tokenizer.ggml.add_bos_token", False)),
        "add_prefix_space": False,
        "bos_token": field(reader, "tokenizer.ggml.tokens")[bos],
        "eos_token": field(reader, "tokenizer.ggml.tokens")[eos],
        "pad_token": field(reader, "tokenizer.ggml.tokens")[config.get("pad_token_id", eos)],
        **({"unk_token": field(reader, "tokenizer.ggml.tokens")[int(field(reader, "tokenizer.ggml.unknown_token_id", 0))]}
           if arch == "llama" else {}),
        "model_max_length": config["max_position_embeddings"],
        "tokenizer_class": "Qwen2Tokenizer" if arch == "qwen2" else "GPT2Tokenizer",
        "clean_up_tokenization_spaces": False,
    }
    chat = field(reader, "tokenizer.chat_template")
    if chat:
        tok_cfg["chat_template"] = chat
    parent = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".gguf2hf-", dir=parent)
    try:
        if dtype == "bf16":
            save_safetensors(tensors, os.path.join(tmp, "model.safetensors"), "BF16")
        else:
            save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        if arch == "gemma3":
            # transformers' own tokenizer for this GGUF (its SentencePiece vocabulary, merges rebuilt).
            os.environ.setdefault("TQDM_DISABLE", "1")
            import transformers
            gdir, gname = os.path.split(os.path.abspath(src))
            transformers.AutoTokenizer.from_pretrained(gdir, gguf_file=gname).save_pretrained(tmp)
        files = [("config.json", config), ("generation_config.json", {"bos_token_id": bos, "eos_token_id": eos})]
        lic = field(reader, "general.license")
        if lic:
            # The license the GGUF states, as a model card's front matter (what fireq's export cards repeat).
            with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
                f.write(f"---\nlicense: {lic}\n---\n\n{config['architectures'][0]} converted from "
                        f"{os.path.basename(src)} by fireq's Scripts/gguf_to_hf.py (weights dequantized to {dtype}).\n")
        if tok is not None:
            files += [("tokenizer.json", tok), ("tokenizer_config.json", tok_cfg)]
        for name, obj in files:
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
