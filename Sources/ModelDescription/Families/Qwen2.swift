extension ModelFamily {
    /// Qwen2 / Qwen2.5 (Qwen2ForCausalLM): Llama's layer with q/k/v biases on every checkpoint;
    /// `use_sliding_window` must be false. GGUF: llama.cpp's `qwen2` (NEOX RoPE, so no q/k row
    /// permutation; the biases as F32 `attn_{q,k,v}.bias`).
    public static let qwen2 = ModelFamily(
        architecture: .qwen2, qkvBias: .always, qkNorm: false,
        slidingWindow: .flag("use_sliding_window"), ggufArchitecture: "qwen2", ggufPermutesQK: false)
}
