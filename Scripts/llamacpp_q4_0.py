#!/usr/bin/env python3
"""llama.cpp's own Q4_0 of a Hugging Face folder made by Scripts/gguf_to_hf.py (the baseline of
Benchmarks/accuracy-models.sh): the same weights, quantized by llama.cpp's quantizer.

    llamacpp_q4_0.py SOURCE.gguf HF_DIR OUT.gguf

SOURCE.gguf (architecture llama, qwen2 or gemma3) is the GGUF the folder was made from: its metadata (architecture, hyper-parameters,
tokenizer) is copied as it is; its tensors are replaced by the folder's BF16/F16 values (the exact
weights every other row of the benchmark quantizes), written as a BF16/F16 GGUF beside OUT, then
llama.cpp's `llama_model_quantize` (llama-cpp-python, pinned) makes OUT with ftype Q4_0 — what
`llama-quantize in.gguf out.gguf Q4_0` gives (its default mixture: token embedding and output
tensor types chosen by llama.cpp). Atomic: OUT appears only when complete.
"""
import ctypes
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf  # noqa: E402
from gguf_to_hf import hf_name, load_safetensors_16bit  # noqa: E402


def permute(w, n_head):
    """llama.cpp's q/k row order (RoPE pairs adjacent): the inverse of gguf_to_hf.unpermute."""
    rows = w.shape[0]
    return np.ascontiguousarray(w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def main():
    args = sys.argv[1:]
    if len(args) != 3:
        sys.exit("usage: llamacpp_q4_0.py SOURCE.gguf HF_DIR OUT.gguf")
    src, folder, out = args
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    if arch not in ("llama", "qwen2", "gemma3"):
        sys.exit(f"error: {src}: architecture '{arch}' is not supported (llama, qwen2, gemma3)")
    n_head = int(reader.fields[f"{arch}.attention.head_count"].contents())
    n_kv = int(reader.fields[f"{arch}.attention.head_count_kv"].contents())
    weights = load_safetensors_16bit(os.path.join(folder, "model.safetensors"))
    mid = out + ".src16.gguf"
    w = gguf.GGUFWriter(mid, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key == "general.file_type":
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), vtype, sub_type=sub)
    for t in reader.tensors:
        dtype, bits = weights[hf_name(t.name, arch)]
        qtype = gguf.GGMLQuantizationType.BF16 if dtype == "BF16" else gguf.GGMLQuantizationType.F16
        arr = bits if dtype == "BF16" else bits.view(np.float16)
        if arch == "llama" and t.name.endswith(("attn_q.weight", "attn_k.weight")):
            arr = permute(arr, n_head if "attn_q" in t.name else n_kv)
        if arr.ndim == 1:
            # Norms and biases in F32 (exactly widened), as llama.cpp's converter writes them:
            # its CPU kernels do not multiply F32 activations by an F16 vector.
            arr = (bits.astype(np.uint32) << 16).view(np.float32) if dtype == "BF16" else arr.astype(np.float32)
            if arch == "gemma3" and t.name.endswith("norm.weight"):
                arr = arr + np.float32(1)   # llama.cpp's gemma3 multiplies by the stored 1 + w
            qtype = gguf.GGMLQuantizationType.F32
        w.add_tensor(t.name, arr, raw_shape=arr.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    params.nthread = os.cpu_count() or 1
    tmp = out + ".tmp"
    rc = llama_cpp.llama_model_quantize(mid.encode(), tmp.encode(), ctypes.byref(params))
    os.remove(mid)
    if rc != 0:
        sys.exit(f"error: llama_model_quantize returned {rc}")
    os.replace(tmp, out)
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
