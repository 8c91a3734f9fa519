#!/usr/bin/env python3
"""Rotates the residual stream of a Llama / Qwen2 HF checkpoint offline, as QuaRot and SpinQuant
do before quantizing (docs/accuracy.md "Residual rotation"), and writes the result as an F32 HF
folder that computes the same function:

    rotate_residual.py SRC_DIR DST_DIR [--seed S] [--random-orthogonal]

1. Every RMSNorm gain is folded into the linears that read its output (input_layernorm into
   q/k/v, post_attention_layernorm into gate/up, the final norm into the lm_head) and set to 1,
   so that the norm commutes with a rotation: RMSNorm(x·Q) = RMSNorm(x)·Q for Q orthogonal.
2. With Q a d × d orthogonal matrix (d the hidden size), the residual stream becomes x·Q:
   embed ← E·Q; q/k/v/gate/up ← W·Q (W is out × in); o_proj/down_proj ← Qᵀ·W (and their biases
   Qᵀ·b); lm_head ← W_head·diag(g_final)·Q. A tied embedding is untied (the lm_head now carries
   the final norm's gain, the embedding does not).
   Q is a randomised normalised Hadamard matrix, diag(±1)·H/√d, H built from Sylvester's
   construction and Paley's order-12 matrix (d = 12^a · 2^b: 576 = 12²·4, 1536 = 12·128), or with
   --random-orthogonal the Q of a QR decomposition of a Gaussian matrix (SpinQuant's starting
   point). QuaRot's other rotations need an online Hadamard (down_proj's input) or were measured
   before (v/o per head: recipe option smoothing.v_hadamard).

The arithmetic is float64, the output float32 (config torch_dtype float32), so the folder equals
the source to float32 rounding: check with `fireq compare --baseline SRC --model DST`.
"""
import argparse
import json
import os
import shutil

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file


def paley12():
    q = 11
    residues = {(i * i) % q for i in range(1, q)}
    chi = lambda a: 0 if a % q == 0 else (1 if a % q in residues else -1)
    s = np.zeros((q + 1, q + 1))
    s[0, 1:] = 1
    s[1:, 0] = -1
    for i in range(q):
        for j in range(q):
            s[i + 1, j + 1] = chi(j - i)
    return np.eye(q + 1) + s


def hadamard(d):
    h = np.ones((1, 1))
    n = d
    while n % 12 == 0:
        h = np.kron(h, paley12())
        n //= 12
    while n % 2 == 0:
        h = np.kron(h, np.array([[1.0, 1.0], [1.0, -1.0]]))
        n //= 2
    if n != 1:
        raise SystemExit(f"rotate_residual.py: no Hadamard construction here for hidden size {d} (needs 12^a · 2^b)")
    if not np.array_equal(h @ h.T, d * np.eye(d)):
        raise SystemExit(f"rotate_residual.py: the order-{d} Hadamard matrix is not orthogonal (bug)")
    return h


def rotation(d, seed, random_orthogonal):
    rng = np.random.default_rng(seed)
    if random_orthogonal:
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        return q * np.sign(np.diag(r))[None, :]
    signs = rng.choice([-1.0, 1.0], size=d)
    return signs[:, None] * hadamard(d) / np.sqrt(d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--random-orthogonal", action="store_true")
    a = ap.parse_args()
    config = json.load(open(os.path.join(a.src, "config.json")))
    if config.get("model_type") not in ("llama", "qwen2"):
        raise SystemExit(f"rotate_residual.py: {a.src}/config.json: model_type {config.get('model_type')!r} is not llama or qwen2")
    d, layers = config["hidden_size"], config["num_hidden_layers"]
    Q = rotation(d, a.seed, a.random_orthogonal)  # before the long load: refuses a size without one
    files = [f for f in sorted(os.listdir(a.src)) if f.endswith(".safetensors")]
    src = {}
    for f in files:
        with safe_open(os.path.join(a.src, f), "pt") as h:
            for k in h.keys():
                src[k] = h.get_tensor(k)
    get = lambda k: src.pop(k).to(torch.float64).numpy()
    out = {}
    put = lambda k, v: out.__setitem__(k, torch.from_numpy(np.ascontiguousarray(v).astype(np.float32)))
    embed = get("model.embed_tokens.weight")
    head = get("lm_head.weight") if "lm_head.weight" in src else embed
    put("lm_head.weight", (head * get("model.norm.weight")[None, :]) @ Q)
    put("model.embed_tokens.weight", embed @ Q)
    put("model.norm.weight", np.ones(d))
    for L in range(layers):
        p = f"model.layers.{L}."
        g1, g2 = get(p + "input_layernorm.weight"), get(p + "post_attention_layernorm.weight")
        put(p + "input_layernorm.weight", np.ones(d))
        put(p + "post_attention_layernorm.weight", np.ones(d))
        for name, g in (("self_attn.q_proj", g1), ("self_attn.k_proj", g1), ("self_attn.v_proj", g1),
                        ("mlp.gate_proj", g2), ("mlp.up_proj", g2)):
            put(p + name + ".weight", (get(p + name + ".weight") * g[None, :]) @ Q)
        for name in ("self_attn.o_proj", "mlp.down_proj"):
            put(p + name + ".weight", Q.T @ get(p + name + ".weight"))
            if p + name + ".bias" in src:
                put(p + name + ".bias", Q.T @ get(p + name + ".bias"))
    for k in list(src):  # q/k/v biases: outputs unchanged
        if k.endswith(".bias"):
            put(k, get(k))
    if src:
        raise SystemExit(f"rotate_residual.py: {a.src}: tensors not handled: {sorted(src)[:5]}")
    tmp = a.dst + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_file(out, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    config["tie_word_embeddings"] = False
    for k in ("torch_dtype", "dtype"):
        if k in config:
            config[k] = "float32"
    json.dump(config, open(os.path.join(tmp, "config.json"), "w"), indent=1)
    for f in os.listdir(a.src):
        if f.startswith(("tokenizer", "generation_config", "special_tokens")):
            shutil.copy(os.path.join(a.src, f), os.path.join(tmp, f))
    shutil.rmtree(a.dst, ignore_errors=True)
    os.rename(tmp, a.dst)


if __name__ == "__main__":
    main()
