#!/usr/bin/env python3
"""Perplexity of a fireq export in its own runtime, on the windows `fireq eval` uses.

    runtime_perplexity.py --runtime llama.cpp|transformers|transformers-w4a16|mlx --export PATH \
        --fireq .build/release/fireq --tokenizer MODEL_DIR --text FILE [--context 512] [--windows N]

The text is tokenized by `fireq tokenize` (equal to HF tokenizers), cut into non-overlapping
windows of --context tokens from token 0 (no BOS), and every token but the first of each window is
scored from float64 log-softmax of the runtime's logits (fireq's protocol 'all'; with
--protocol llamacpp only the second half of each window, as llama-perplexity). Prints one JSON
object, with the other protocol's perplexity from the same logits as `perplexity_<protocol>`. Runtimes (pinned in Scripts/requirements-runtimes.txt and requirements-model.txt):

* llama.cpp: llama-cpp-python, the GGUF export, all threads;
* transformers: the compressed-tensors export as declared (INT4 weights, FP8 per-token input
  activations when the export states them); transformers-w4a16: the same with the activation
  quantization switched off (vLLM's W4A16 fallback), i.e. the weights alone;
* mlx: mlx-lm's loader on the MLX export, computed in float32.
"""
import argparse
import json
import math
import os
import subprocess
import time

import numpy as np


def token_windows(fireq, tokenizer_dir, text, context, windows):
    p = subprocess.run([fireq, "tokenize", "--model", tokenizer_dir, "--text", text], capture_output=True, text=True, check=True)
    ids = json.loads(p.stdout)
    n = len(ids) // context if windows is None else min(windows, len(ids) // context)
    return [ids[i * context:(i + 1) * context] for i in range(n)]


def perplexity(logits_per_window, windows, protocol="all"):
    """Mean NLL over the scored tokens, from float64 log-softmax; returns (ppl, mean_nll, count)."""
    nll, n = 0.0, 0
    for logits, w in zip(logits_per_window, windows):
        x = np.asarray(logits, dtype=np.float64)[:-1]
        x = x - x.max(axis=1, keepdims=True)
        tok = -(x[np.arange(len(w) - 1), w[1:]] - np.log(np.exp(x).sum(axis=1)))
        if protocol == "llamacpp":
            tok = tok[len(w) // 2:]   # logits rows C/2 … C-2 (targets w[C/2+1:]), as llama-perplexity and fireq
        nll += float(tok.sum())
        n += len(tok)
    return math.exp(nll / n), nll / n, n


def llama_cpp_logits(path, windows):
    from llama_cpp import Llama
    c = len(windows[0])
    llm = Llama(model_path=path, n_ctx=c, n_batch=c, n_ubatch=c, logits_all=True, verbose=False, n_threads=os.cpu_count())
    out = []
    for w in windows:
        llm.reset()
        llm.eval(w)
        out.append(np.array(llm.scores[:len(w)], dtype=np.float32))
    return out


def transformers_model(path):
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return model


def quantized_modules(model):
    return [m for m in model.modules() if getattr(m, "quantization_scheme", None) is not None]


def set_activation_quantization(model, enabled):
    """compressed-tensors' switch for its forward QDQ (weights are decompressed at load)."""
    for m in quantized_modules(model):
        m.quantization_enabled = enabled


def transformers_logits(model, windows):
    import torch
    out = []
    with torch.no_grad():
        for w in windows:
            out.append(model(torch.tensor([w])).logits[0].float().numpy())
    return out


def mlx_model(path):
    import mlx.core as mx
    from mlx.utils import tree_map
    from mlx_lm.utils import load_model
    from pathlib import Path
    model, _ = load_model(Path(path))
    # MLX's float16 and bfloat16 are slow on x86: compute in float32 (scales and unquantized tensors widen exactly).
    model.update(tree_map(lambda p: p.astype(mx.float32) if p.dtype in (mx.float16, mx.bfloat16) else p, model.parameters()))
    return model


def mlx_logits(model, windows):
    import mlx.core as mx
    out = []
    for w in windows:
        y = model(mx.array([w]))
        mx.eval(y)
        out.append(np.array(y[0].astype(mx.float32)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runtime", required=True, choices=["llama.cpp", "transformers", "transformers-w4a16", "mlx"])
    ap.add_argument("--export", required=True)
    ap.add_argument("--fireq", required=True)
    ap.add_argument("--tokenizer", required=True, help="folder with tokenizer.json (the source or packed model)")
    ap.add_argument("--text", required=True)
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--windows", type=int)
    ap.add_argument("--protocol", choices=["all", "llamacpp"], default="all")
    a = ap.parse_args()
    windows = token_windows(a.fireq, a.tokenizer, a.text, a.context, a.windows)
    t0 = time.time()
    if a.runtime == "llama.cpp":
        logits = llama_cpp_logits(a.export, windows)
    elif a.runtime.startswith("transformers"):
        model = transformers_model(a.export)
        set_activation_quantization(model, a.runtime == "transformers")
        logits = transformers_logits(model, windows)
    else:
        logits = mlx_logits(mlx_model(a.export), windows)
    ppl, nll, n = perplexity(logits, windows, a.protocol)
    other = "llamacpp" if a.protocol == "all" else "all"
    print(json.dumps({"runtime": a.runtime, "export": a.export, "perplexity": ppl, "mean_nll": nll, "scored_tokens": n,
                      "windows": len(windows), "context": a.context, "protocol": a.protocol,
                      f"perplexity_{other}": perplexity(logits, windows, other)[0],
                      "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
