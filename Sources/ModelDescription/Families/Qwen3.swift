extension ModelFamily {
    /// Qwen3 (Qwen3ForCausalLM): Llama's layer plus a per-head RMSNorm of q and k before RoPE
    /// (weights shared by all heads); biases only when `attention_bias`; `use_sliding_window`
    /// must be false. GGUF: llama.cpp's `qwen3` (NEOX RoPE, no q/k row permutation, the q/k norms
    /// as F32 `attn_q_norm` / `attn_k_norm`, no bias tensors).
    public static let qwen3 = ModelFamily(
        architecture: .qwen3, qkvBias: .configKey("attention_bias"), qkNorm: true,
        slidingWindow: .flag("use_sliding_window"), ggufArchitecture: "qwen3", ggufPermutesQK: false)
}
