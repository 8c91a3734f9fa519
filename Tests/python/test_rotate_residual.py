"""Scripts/rotate_residual.py (docs/accuracy.md "Residual rotation") against transformers: small
random Llama (tied embeddings) and Qwen2 (q/k/v biases, untied) checkpoints with non-unit norm
gains, rotated with a randomised Hadamard matrix and with a random orthogonal one, give the same
logits as the source in transformers' own forward pass; every norm gain becomes 1 and the rotated
weights really differ from the source's.
"""
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "Scripts", "rotate_residual.py")


def tiny(kind, hidden, path):
    common = dict(hidden_size=hidden, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=300, max_position_embeddings=64)
    if kind == "llama":
        config = LlamaConfig(tie_word_embeddings=True, **common)
    else:
        config = Qwen2Config(tie_word_embeddings=False, **common)
    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_config(config).float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(torch.rand_like(p) * 2 + 0.2)  # gains to fold
            elif name.endswith(".bias"):
                p.copy_(torch.randn_like(p) * 0.5)
    model.save_pretrained(path)
    return model


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("flags", [[], ["--random-orthogonal"]])
def test_rotated_checkpoint_computes_the_same_logits(tmp_path, kind, flags):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    model = tiny(kind, 96, src)  # 96 = 12 · 8: Paley's order 12 ⊗ Sylvester's 8
    subprocess.run([sys.executable, SCRIPT, src, dst, "--seed", "3"] + flags, check=True)
    rotated = AutoModelForCausalLM.from_pretrained(dst, torch_dtype=torch.float32)
    ids = torch.randint(0, 300, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = model(ids).logits, rotated(ids).logits
    assert torch.allclose(got, want, atol=2e-4, rtol=1e-4), (got - want).abs().max()
    tensors = load_file(os.path.join(dst, "model.safetensors"))
    assert all(torch.equal(v, torch.ones_like(v)) for k, v in tensors.items() if k.endswith("norm.weight"))
    assert "lm_head.weight" in tensors and not rotated.config.tie_word_embeddings
    source = load_file(os.path.join(src, "model.safetensors"))
    moved = (tensors["model.layers.0.mlp.down_proj.weight"] - source["model.layers.0.mlp.down_proj.weight"]).abs().max()
    assert moved > 1e-3


def test_hidden_size_without_a_hadamard_matrix_is_refused(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    tiny("llama", 40, src)  # 40 = 8 · 5
    r = subprocess.run([sys.executable, SCRIPT, src, dst], capture_output=True, text=True)
    assert r.returncode != 0
    assert "no Hadamard construction here for hidden size 40" in r.stderr
    assert not os.path.exists(dst) and not os.path.exists(dst + ".tmp")
