#!/usr/bin/env python3
"""Small random-weight checkpoints of each supported model family, saved by transformers itself,
with transformers' FP32 logits as goldens (issue #11: family oracles).

    python Scripts/make_family_checkpoints.py OUTDIR [--tokenizer-from DIR] [--text FILE]

For every family, OUTDIR/NAME/ holds what `save_pretrained` writes (config.json in transformers
5.x's convention: `rope_parameters`, `dtype`; safetensors weights in the family's usual dtype) plus
the default model's tokenizer files, and OUTDIR/NAME/golden.safetensors holds
  input_ids  int32 [T]     the `tokenizers` ids of the first 600 bytes of --text
  logits     float32 [T,V] transformers' logits for them, computed in float32 ("eager" attention)
             from the stored (BF16/F16) weights widened to float32, as fireq's reference does.

Families (reduced sizes, real features):
  llama3   LlamaForCausalLM, llama3 RoPE scaling, untied lm_head, explicit head_dim (64 with
           hidden 128 and 4 heads), BF16
  qwen2    Qwen2ForCausalLM, q/k/v biases, tied embeddings, rope_theta 1e6, BF16
  mistral  MistralForCausalLM, no sliding window, untied, F16
  qwen3    Qwen3ForCausalLM, per-head RMSNorm of q and k before RoPE (q_norm, k_norm), explicit
           head_dim 64, tied, BF16
  gemma3   Gemma3ForCausalLM (text): (1 + w) RMSNorms on both sides of attention and MLP, q/k
           norms, GeGLU (tanh GELU), embeddings × √hidden, query_pre_attn_scalar 48 (not
           head_dim 64), a sliding-window layer (window 32, shorter than the golden text, RoPE
           base 1e4) then a global one (base 1e6), tied, BF16
  gemma3-pattern6  the same family as llama.cpp's gemma3 fixes it (for the GGUF export): 6 layers,
           the 6th global, query_pre_attn_scalar = head_dim 64, one KV head
Weights: transformers' own initialisation (normal, std 0.02) with a fixed seed, then made to
behave like a trained model's in the ways the checks need: embeddings and lm_head ×10 (peaked
next-token distributions), q_proj/k_proj ×5 (attention far from uniform, so RoPE matters), every
norm scale drawn from U(0.5, 1.5) (Gemma stores it as w = scale − 1), q/k/v biases from N(0, 0.5²), and three input channels of
q_proj, gate_proj and down_proj scaled ×8 (the outlier channels FireQ smooths).
Needs torch (CPU) and transformers (Scripts/requirements-runtimes.txt).
"""
import argparse
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer

VOCAB = 49152
COMMON = dict(vocab_size=VOCAB, hidden_size=128, intermediate_size=384, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
              rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)

FAMILIES = {
    "llama3": (transformers.LlamaConfig, transformers.LlamaForCausalLM, torch.bfloat16, dict(
        head_dim=64, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                             high_freq_factor=4.0, original_max_position_embeddings=256))),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, torch.bfloat16, dict(
        tie_word_embeddings=True, rope_parameters=dict(rope_type="default", rope_theta=1000000.0),
        use_sliding_window=False, rms_norm_eps=1e-6)),
    "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM, torch.float16, dict(
        tie_word_embeddings=False, sliding_window=None, rope_parameters=dict(rope_type="default", rope_theta=1000000.0))),
    "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM, torch.bfloat16, dict(
        head_dim=64, tie_word_embeddings=True, use_sliding_window=False, rms_norm_eps=1e-6,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0))),
    "gemma3": (transformers.Gemma3TextConfig, transformers.Gemma3ForCausalLM, torch.bfloat16, dict(
        head_dim=64, tie_word_embeddings=True, rms_norm_eps=1e-6, query_pre_attn_scalar=48, sliding_window=32,
        layer_types=["sliding_attention", "full_attention"], hidden_activation="gelu_pytorch_tanh",
        pad_token_id=0, rope_parameters={"sliding_attention": dict(rope_type="default", rope_theta=10000.0),
                                         "full_attention": dict(rope_type="default", rope_theta=1000000.0)})),
    # Gemma 3 as llama.cpp's gemma3 runs it (for the GGUF export): every 6th layer global, local
    # RoPE base 1e4, q·k scale 1/√head_dim, one KV head like Gemma 3 270M.
    "gemma3-pattern6": (transformers.Gemma3TextConfig, transformers.Gemma3ForCausalLM, torch.bfloat16, dict(
        head_dim=64, tie_word_embeddings=True, rms_norm_eps=1e-6, query_pre_attn_scalar=64, sliding_window=32,
        num_hidden_layers=6, num_key_value_heads=1, hidden_activation="gelu_pytorch_tanh",
        layer_types=["sliding_attention"] * 5 + ["full_attention"],
        pad_token_id=0, rope_parameters={"sliding_attention": dict(rope_type="default", rope_theta=10000.0),
                                         "full_attention": dict(rope_type="default", rope_theta=1000000.0)})),
}


def build(name, out, tok_dir, text_ids, seed):
    cfg_cls, model_cls, dtype, extra = FAMILIES[name]
    kw = dict(COMMON)
    kw.update(extra)
    cfg = cfg_cls(**kw)
    torch.manual_seed(seed)
    model = model_cls(cfg).to(torch.float32).eval()
    g = torch.Generator().manual_seed(seed + 1)
    shift = 1.0 if name.startswith("gemma3") else 0.0   # Gemma's RMSNorm scales by 1 + w
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith(("q_norm.weight", "k_norm.weight")):
                p.copy_(torch.rand(p.shape, generator=g) * 2 + 0.5 - shift)   # per-channel spread: the pre-RoPE factors matter
            elif n.endswith("norm.weight"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5 - shift)
            elif n.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif n.endswith(("embed_tokens.weight", "lm_head.weight")):
                p.mul_(10)
            elif n.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(5)
            if n.endswith(("q_proj.weight", "gate_proj.weight", "down_proj.weight")):
                cols = torch.randperm(p.shape[1], generator=g)[:3]
                p[:, cols] *= 8
    model = model.to(dtype)
    path = os.path.join(out, name)
    shutil.rmtree(path, ignore_errors=True)
    model.save_pretrained(path)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if os.path.exists(os.path.join(tok_dir, f)):
            shutil.copy(os.path.join(tok_dir, f), path)
    # The oracle: reload exactly what was saved, widen to float32, eager attention.
    ref = model_cls.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    ids = torch.tensor([text_ids], dtype=torch.long)
    with torch.no_grad():
        logits = ref(input_ids=ids).logits[0].to(torch.float32).contiguous()
    save_file({"input_ids": torch.tensor(text_ids, dtype=torch.int32), "logits": logits},
              os.path.join(path, "golden.safetensors"))
    with open(os.path.join(path, "config.json")) as f:
        c = json.load(f)
    print(f"{name}: {c['architectures'][0]}, dtype {c.get('dtype')}, rope_parameters {c.get('rope_parameters')}, "
          f"{sum(p.numel() for p in model.parameters())} parameters, {len(text_ids)} golden tokens")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tokenizer-from", default=os.path.join(os.path.dirname(__file__), "..", ".cache", "models", "smollm2-135m-instruct"))
    ap.add_argument("--text", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "wikitext-2-raw-test.raw"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="comma-separated family names")
    a = ap.parse_args()
    with open(a.text, "rb") as f:
        text = f.read(600).decode("utf-8", errors="strict")
    tok = Tokenizer.from_file(os.path.join(a.tokenizer_from, "tokenizer.json"))
    ids = tok.encode(text, add_special_tokens=False).ids
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "golden-text.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    names = a.only.split(",") if a.only else list(FAMILIES)
    for i, n in enumerate(names):
        if n not in FAMILIES:
            sys.exit(f"unknown family {n!r} (have {', '.join(FAMILIES)})")
        build(n, a.out, a.tokenizer_from, ids, a.seed + 100 * i)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
