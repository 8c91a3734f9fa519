"""Each supported model family's exports, run by the third-party runtime that reads them (issue #11).

The checkpoints are Scripts/make_family_checkpoints.py's small random-weight models saved by
transformers 5.x (llama3: llama3 RoPE scaling, untied, explicit head_dim, BF16; qwen2: q/k/v
biases, tied, BF16; mistral: F16). Each is converted by `fireq convert --export`, and every
runtime's next-token distributions are compared with a reference built independently here:
transformers, in float32, on the packed folder's tensors as the Formats/ reference reader reads
them (linears dequantized to q·s·(1/P) — exactly the weights the exports carry). The measure is
KL(reference ‖ runtime) in nats per token over 2 windows × 128 tokens of WikiText-2; these models
were made peaked (docs in the script) so that a wrong RoPE, bias or row order moves it by orders
of magnitude (checked below for the llama3 scaling, the one thing GGUF needs an extra tensor for).

Run by Scripts/test.sh with FIREQ_BIN and FIREQ_FAMILIES (the folder of the family checkpoints).
"""
import copy
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "Formats"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "Scripts"))
import fireq_packed_reader as reader  # noqa: E402
import runtime_perplexity as rt  # noqa: E402

FIREQ = os.environ["FIREQ_BIN"]
FAMILIES_DIR = os.environ["FIREQ_FAMILIES"]
SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")
WIKI = os.path.join(SHARED, "wikitext-2-raw-test.raw")
SHAKESPEARE = os.path.join(SHARED, "tinyshakespeare.txt")
CONTEXT, WINDOWS = 128, 2
# GGUF: llama.cpp's llama architecture (Llama, Mistral), qwen2 (biases, NEOX RoPE) and qwen3 (q/k
# norms); Gemma 3's is not written yet (issue #26).
EXPORTS = {"llama3": ["gguf", "compressed-tensors", "mlx"], "qwen2": ["gguf", "compressed-tensors", "mlx"],
           "mistral": ["gguf", "compressed-tensors", "mlx"], "qwen3": ["gguf", "compressed-tensors", "mlx"],
           "gemma3": ["compressed-tensors", "mlx"]}
# llama.cpp multiplies Q4_0 weights by activations rounded to Q8_0 blocks and keeps an F16 KV
# cache (measured here: 7e-5 for llama3); transformers and MLX compute in float32 like the
# reference, only the summation order differs.
KL_LLAMACPP = 1e-3
KL_FP32 = 1e-5


def run(*args):
    p = subprocess.run([FIREQ, *args], capture_output=True, text=True)
    assert p.returncode == 0, f"fireq {' '.join(args)} failed: {p.stderr}"
    return p.stdout


def kl(ref, got):
    """Mean KL(ref ‖ got) over every position, from float64 log-softmax."""
    tot, n = 0.0, 0
    for r, g in zip(ref, got):
        lr = r.astype(np.float64)
        lr = lr - lr.max(1, keepdims=True)
        lr -= np.log(np.exp(lr).sum(1, keepdims=True))
        lg = g.astype(np.float64)
        lg = lg - lg.max(1, keepdims=True)
        lg -= np.log(np.exp(lg).sum(1, keepdims=True))
        tot += float((np.exp(lr) * (lr - lg)).sum())
        n += len(r)
    return tot / n


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """fireq convert --export of every family (small calibration), made once."""
    d = tmp_path_factory.mktemp("families")
    out = {}
    for fam, formats in EXPORTS.items():
        src = os.path.join(FAMILIES_DIR, fam)
        assert os.path.exists(os.path.join(src, "model.safetensors")), f"{src}: missing; Scripts/make_family_checkpoints.py makes it"
        o = str(d / fam)
        run("convert", "--model", src, "--out", o, "--text", SHAKESPEARE, "--samples", "2", "--seq-len", "64",
            "--eval-context", "64", "--eval-windows", "2", "--max-delta-ppl", "1000", "--export", ",".join(formats))
        out[fam] = o
    return out


@pytest.fixture(scope="session")
def windows():
    return rt.token_windows(FIREQ, os.path.join(FAMILIES_DIR, "llama3"), WIKI, CONTEXT, WINDOWS)


def reference_model(packed, fam, config_change=None):
    """transformers (float32, eager) on the packed tensors: unquantized ones as stored, linears
    as q·s·(1/P) by the reference reader."""
    import torch
    import transformers
    meta, tensors = reader.open_packed(packed)
    dq = reader.dequantize(meta, tensors, fp8_rerounding=False)
    sd = {k + ".weight": torch.from_numpy(v) for k, v in dq.items()}
    for k, (_, arr, _) in tensors.items():
        if k.endswith((".weight", ".bias")) and k not in sd and k[:-len(".weight")] not in dq:
            sd[k] = torch.from_numpy(arr.astype(np.float32))
    cfg = transformers.AutoConfig.from_pretrained(os.path.join(FAMILIES_DIR, fam))
    if config_change:
        cfg = copy.deepcopy(cfg)
        config_change(cfg)
    cfg._attn_implementation = "eager"
    model = transformers.AutoModelForCausalLM.from_config(cfg).float().eval()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # Tied models have no lm_head.weight of their own.
    assert not unexpected and all(m == "lm_head.weight" and cfg.tie_word_embeddings for m in missing), (missing, unexpected)
    return model


_refs = {}


def reference_logits(converted, fam, windows):
    if fam not in _refs:
        _refs[fam] = rt.transformers_logits(reference_model(converted[fam], fam), windows)
    return _refs[fam]


def test_gguf_rope_freqs_are_llama_cpp_converters(converted):
    """llama3 scaling: rope_freqs.weight first, with the values llama.cpp's converter computes
    (convert_hf_to_gguf.py LlamaModel.generate_extra_tensors, written here from its definition);
    without llama3 scaling (mistral) there is no such tensor."""
    import gguf
    import torch
    import transformers
    r = gguf.GGUFReader(converted["llama3"] + ".gguf")
    assert r.tensors[0].name == "rope_freqs.weight"
    got = np.array(r.tensors[0].data, dtype=np.float32)
    cfg = transformers.AutoConfig.from_pretrained(os.path.join(FAMILIES_DIR, "llama3"))
    rp = cfg.rope_parameters
    base, dim = rp["rope_theta"], cfg.head_dim
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor, low, high, old = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"], rp["original_max_position_embeddings"]
    want = []
    for f in freqs.tolist():
        wavelen = 2 * math.pi / f
        if wavelen < old / high:
            want.append(1.0)
        elif wavelen > old / low:
            want.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            want.append(1 / ((1 - smooth) / factor + smooth))
    want = np.array(want, dtype=np.float32)
    assert len(set(want.tolist())) > 2, "the test model's frequencies cover all three regimes"
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert all(t.name != "rope_freqs.weight" for t in gguf.GGUFReader(converted["mistral"] + ".gguf").tensors)


def test_qwen2_gguf_keys_and_tensors_are_llama_cpps(converted):
    """The qwen2 GGUF holds the keys and tensors llama.cpp's converter writes for Qwen2 (the list
    below was read from the Qwen2.5-Coder-1.5B-Instruct GGUF that llama.cpp made,
    Scripts/fetch-qwen2-model.sh): no vocab_size / rope.dimension_count (LlamaModel-only keys),
    F32 q/k/v biases, no q/k row permutation."""
    import gguf
    r = gguf.GGUFReader(converted["qwen2"] + ".gguf")
    arch_keys = sorted(k for k in r.fields if k.startswith("qwen2."))
    assert arch_keys == sorted(["qwen2.block_count", "qwen2.context_length", "qwen2.embedding_length",
                                "qwen2.feed_forward_length", "qwen2.attention.head_count", "qwen2.attention.head_count_kv",
                                "qwen2.rope.freq_base", "qwen2.attention.layer_norm_rms_epsilon"])
    assert r.fields["general.architecture"].contents() == "qwen2"
    assert r.fields["tokenizer.ggml.pre"].contents() == "smollm"  # the family checkpoint carries SmolLM2's tokenizer (Qwen2's: ExportTests.preTokenizerNames)
    kinds = {t.name: t.tensor_type.name for t in r.tensors}
    for part in ["attn_q.bias", "attn_k.bias", "attn_v.bias"]:
        assert kinds[f"blk.0.{part}"] == "F32"
    assert kinds["blk.0.attn_q.weight"] == "Q4_0"
    # Every tensor name is one llama.cpp's qwen2 loader knows.
    layer_parts = {"attn_norm.weight", "ffn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                   "attn_output.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight",
                   "attn_q.bias", "attn_k.bias", "attn_v.bias"}
    for name in kinds:
        assert name in {"token_embd.weight", "output_norm.weight", "output.weight"} or name.split(".", 2)[2] in layer_parts, name


@pytest.mark.parametrize("fam", ["llama3", "mistral", "qwen2", "qwen3"])
def test_llama_cpp_runs_the_family_gguf(converted, windows, fam):
    ref = reference_logits(converted, fam, windows)
    d = kl(ref, rt.llama_cpp_logits(converted[fam] + ".gguf", windows))
    print(f"{fam}: KL(reference ‖ llama.cpp) = {d:.3g}")
    assert d < KL_LLAMACPP
    if fam == "llama3":
        # The threshold separates: the same weights without the llama3 scaling are far off.
        def no_scaling(c):
            c.rope_parameters = {"rope_type": "default", "rope_theta": c.rope_parameters["rope_theta"]}
        wrong = kl(ref, rt.transformers_logits(reference_model(converted[fam], fam, no_scaling), windows))
        print(f"{fam}: KL(reference ‖ reference without llama3 scaling) = {wrong:.3g}")
        assert wrong > 30 * KL_LLAMACPP


@pytest.mark.parametrize("fam", list(EXPORTS))
def test_transformers_runs_the_family_compressed_tensors(converted, windows, fam):
    model = rt.transformers_model(converted[fam] + ".compressed-tensors")
    assert len(rt.quantized_modules(model)) == 14  # 7 linears × 2 layers; lm_head is ignored
    rt.set_activation_quantization(model, False)   # the weights alone (vLLM's W4A16 fallback)
    d = kl(reference_logits(converted, fam, windows), rt.transformers_logits(model, windows))
    print(f"{fam}: KL(reference ‖ transformers compressed-tensors W4A16) = {d:.3g}")
    assert d < KL_FP32


@pytest.mark.parametrize("fam", list(EXPORTS))
def test_mlx_lm_runs_the_family_mlx(converted, windows, fam):
    import mlx.nn as nn
    model = rt.mlx_model(converted[fam] + ".mlx")
    assert sum(isinstance(m, nn.QuantizedLinear) for m in model.modules()) == 14
    d = kl(reference_logits(converted, fam, windows), rt.mlx_logits(model, windows))
    print(f"{fam}: KL(reference ‖ mlx-lm) = {d:.3g}")
    assert d < KL_FP32


def test_qwen3_gguf_keys_and_tensors_are_llama_cpps(converted):
    """The qwen3 GGUF: llama.cpp's `qwen3` keys (its converter writes key/value_length from an
    explicit head_dim: 64 here, not hidden/heads = 32), the q/k norms as F32 attn_q_norm /
    attn_k_norm of head_dim, no bias tensors, no q/k row permutation (NEOX RoPE)."""
    import gguf
    r = gguf.GGUFReader(converted["qwen3"] + ".gguf")
    arch_keys = sorted(k for k in r.fields if k.startswith("qwen3."))
    assert arch_keys == sorted(["qwen3.block_count", "qwen3.context_length", "qwen3.embedding_length",
                                "qwen3.feed_forward_length", "qwen3.attention.head_count", "qwen3.attention.head_count_kv",
                                "qwen3.rope.freq_base", "qwen3.attention.layer_norm_rms_epsilon",
                                "qwen3.attention.key_length", "qwen3.attention.value_length"])
    assert r.fields["qwen3.attention.key_length"].contents() == 64
    t = {t.name: t for t in r.tensors}
    for part in ["attn_q_norm.weight", "attn_k_norm.weight"]:
        assert t[f"blk.0.{part}"].tensor_type.name == "F32" and list(t[f"blk.0.{part}"].shape) == [64]
    assert not any(n.endswith(".bias") for n in t)


@pytest.mark.parametrize("fam", ["qwen2", "gemma3"])
def test_folder_exports_serve_with_no_other_files(converted, fam):
    """The folder exports carry what their runtime needs to serve them (issue #26): a transformers
    text-generation pipeline on the compressed-tensors folder and mlx-lm's generate on the MLX
    folder each produce 4 new tokens from the folder alone (tokenizer, chat template and
    generation defaults copied through the packed folder)."""
    import transformers
    prompt = "The quick brown fox"
    pipe = transformers.pipeline("text-generation", model=converted[fam] + ".compressed-tensors", device="cpu")
    out = pipe(prompt, max_new_tokens=4, min_new_tokens=4, do_sample=False, return_tensors=True)
    n_prompt = len(pipe.tokenizer(prompt)["input_ids"])
    assert len(out[0]["generated_token_ids"]) == n_prompt + 4, out
    import mlx_lm
    model, tok = mlx_lm.load(converted[fam] + ".mlx")
    steps = list(mlx_lm.stream_generate(model, tok, prompt=prompt, max_tokens=4))
    assert len(steps) >= 1 and all(isinstance(s.text, str) for s in steps), steps


@pytest.mark.parametrize("fam", list(EXPORTS))
def test_folder_export_model_cards(converted, fam):
    """Every folder export carries a README.md model card that huggingface_hub parses, whose
    metadata validates as ModelCardData, and whose numbers equal the convert report's (issue #26)."""
    import re
    from huggingface_hub import ModelCard, ModelCardData
    rep = json.load(open(os.path.join(converted[fam], "report.json")))
    m = rep["models"][0]
    for fmt, library in [("compressed-tensors", "transformers"), ("mlx", "mlx")]:
        card = ModelCard.load(os.path.join(converted[fam] + "." + fmt, "README.md"))
        data = card.data.to_dict()
        ModelCardData(**data)   # validates
        assert data["library_name"] == library and data["pipeline_tag"] == "text-generation", data
        assert {"fireq", "int4"} <= set(data["tags"]), data
        assert "base_model" not in data   # the family checkpoints name no Hub model: nothing invented
        row = re.search(r"^\| FireQ \(`([^`]+)`\) \| ([0-9.]+) \| ([+-][0-9.]+) % \| ([0-9.]+) \| ([0-9.]+) % \|$", card.text, re.M)
        assert row, card.text
        assert float(row.group(2)) == round(m["perplexity"], 4)
        assert float(row.group(3)) == round(m["delta_perplexity_percent"], 2)
        assert float(row.group(4)) == round(m["kl_mean"], 4)
        assert float(row.group(5)) == round(100 * m["top1_agreement"], 2)
        base = re.search(r"^\| source \(FP32 reference\) \| ([0-9.]+) \|", card.text, re.M)
        assert base and float(base.group(1)) == round(rep["baseline"]["perplexity"], 4)
        assert card.text.lstrip().startswith(f"# {os.path.basename(converted[fam])} — INT4"), card.text[:80]
