extension ModelFamily {
    /// Qwen3 (Qwen3ForCausalLM): Llama's layer plus a per-head RMSNorm of q and k before RoPE
    /// (weights shared by all heads); biases only when `attention_bias`; `use_sliding_window`
    /// must be false. No GGUF export yet (issue #26).
    public static let qwen3 = ModelFamily(architecture: .qwen3, qkvBias: .configKey("attention_bias"), qkNorm: true,
                                          slidingWindow: .flag("use_sliding_window"), ggufArchitecture: nil, ggufPermutesQK: false)
}
