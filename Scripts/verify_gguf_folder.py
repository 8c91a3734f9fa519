#!/usr/bin/env python3
"""Check a Hugging Face folder written by Scripts/gguf_to_hf.py against independent oracles.

    verify_gguf_folder.py MODEL.gguf HF_DIR [TEXT]

1. Every tensor: our dequantizer (Scripts/gguf_dequant.py) equals the `gguf` package's own
   (gguf.quants.dequantize) bit for bit in float32, and the folder's tensor equals that value
   rounded to the folder's dtype (llama q/k rows un-permuted).
2. transformers loads the GGUF itself (its own GGUF reader, dequantizer, name map and tokenizer
   converter), in the folder's dtype: every weight equals the folder's; its tokenizer gives the
   same ids as the folder's tokenizer.json on TEXT (default: the first 20 000 characters of
   ../shared/data/wikitext-2-raw-test.raw); the FP32 logits of the first 128 of those tokens from
   the GGUF loaded in float32 (exact dequantized values) and from the folder differ only by the
   folder's rounding to BF16/F16: max |Δ| within 5 % of the largest logit, top-1 agreement ≥ 97 %,
   mean NLL within 0.02.
Exit status 1 with the first mismatch named.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf  # noqa: E402
from gguf.quants import dequantize as gguf_dequantize  # noqa: E402
from gguf_dequant import dequantize, to_bf16  # noqa: E402
from gguf_to_hf import hf_name, load_safetensors_16bit, unpermute  # noqa: E402



def fail(msg):
    sys.exit(f"error: {msg}")


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: verify_gguf_folder.py MODEL.gguf HF_DIR [TEXT]")
    src, folder = sys.argv[1], sys.argv[2]
    text_path = sys.argv[3] if len(sys.argv) == 4 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "wikitext-2-raw-test.raw")
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    config = json.load(open(os.path.join(folder, "config.json")))
    bf16 = config["torch_dtype"] == "bfloat16"
    stored = {k: bits for k, (_, bits) in load_safetensors_16bit(os.path.join(folder, "model.safetensors")).items()}
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    kinds = {}
    for t in reader.tensors:
        n = int(t.n_elements)
        ours = dequantize(t.data, int(t.tensor_type), n)
        theirs = np.asarray(gguf_dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(-1)
        if not np.array_equal(ours.view(np.uint32), theirs.view(np.uint32)):
            bad = int(np.argmax(ours.view(np.uint32) != theirs.view(np.uint32)))
            fail(f"{t.name} ({t.tensor_type.name}): our dequantizer gives {ours[bad]!r} at {bad}, gguf gives {theirs[bad]!r}")
        w = theirs.reshape([int(d) for d in reversed(t.shape)])
        if arch == "llama" and t.name.endswith("attn_q.weight"):
            w = unpermute(w, n_head)
        elif arch == "llama" and t.name.endswith("attn_k.weight"):
            w = unpermute(w, n_kv)
        elif arch == "gemma3" and t.name.endswith("norm.weight"):
            w = w - np.float32(1)   # llama.cpp stores Gemma's norms as 1 + w
        want = to_bf16(w) if bf16 else w.astype(np.float16).view(np.uint16)
        got = stored[hf_name(t.name, arch)]
        if got.shape != want.shape or not np.array_equal(got, want):
            fail(f"{folder}: tensor {hf_name(t.name, arch)} differs from the GGUF's {t.name}")
        kinds[t.tensor_type.name] = kinds.get(t.tensor_type.name, 0) + 1
    if len(stored) != len(reader.tensors):
        fail(f"{folder}: {len(stored)} tensors, the GGUF has {len(reader.tensors)}")
    print(f"tensors: {len(stored)} equal the gguf package's dequantization ({kinds})")

    os.environ.setdefault("TQDM_DISABLE", "1")   # no progress bars in the log
    import torch
    import transformers
    from tokenizers import Tokenizer
    dtype = torch.bfloat16 if bf16 else torch.float16
    gdir, gname = os.path.split(os.path.abspath(src))
    g_model = transformers.AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=dtype)
    h_model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    gsd, hsd = g_model.state_dict(), h_model.state_dict()
    for name, w in hsd.items():
        if name not in gsd:
            fail(f"transformers' GGUF loading has no {name}")
        if not torch.equal(gsd[name], w):
            fail(f"{name}: transformers' GGUF loading gives other values than {folder}")
    print(f"transformers {transformers.__version__} loading the GGUF: {len(hsd)} weights equal the folder's")

    text = open(text_path, encoding="utf-8").read()[:20000]
    g_tok = transformers.AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    ids_g = g_tok(text, add_special_tokens=False)["input_ids"]
    ids_f = Tokenizer.from_file(os.path.join(folder, "tokenizer.json")).encode(text, add_special_tokens=False).ids
    if ids_g != ids_f:
        k = next(i for i, (a, b) in enumerate(zip(ids_g + [-1], ids_f + [-1])) if a != b)
        fail(f"tokenizer.json gives other ids than transformers' GGUF tokenizer from token {k} on")
    print(f"tokenizer: {len(ids_f)} ids equal transformers' GGUF tokenizer")

    # Logits: the GGUF loaded by transformers in float32 (exact dequantized values) against the
    # folder loaded in float32 (those values rounded to the folder's dtype): they differ only by
    # that rounding.
    del g_model, h_model, gsd, hsd
    ids = torch.tensor([ids_f[:128]])
    with torch.no_grad():
        g32 = transformers.AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32)
        lg = g32(ids).logits[0]
        del g32
        h32 = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        lh = h32(ids).logits[0]
    rel = float((lg - lh).abs().max() / lg.abs().max())
    top1 = float((lg.argmax(-1) == lh.argmax(-1)).float().mean())
    nll_g = float(torch.nn.functional.cross_entropy(lg[:-1], ids[0, 1:]))
    nll_h = float(torch.nn.functional.cross_entropy(lh[:-1], ids[0, 1:]))
    print(f"logits (128 tokens, FP32): max |GGUF - folder| / max |logit| = {rel:.3g}, top-1 agreement {top1:.3f}, "
          f"mean NLL {nll_g:.5f} (GGUF) vs {nll_h:.5f} (folder)")
    if rel > 0.05 or top1 < 0.97 or abs(nll_g - nll_h) > 0.02:
        fail("the folder's logits are farther from the GGUF's than its dtype rounding explains")

if __name__ == "__main__":
    main()
