extension ModelFamily {
    /// Qwen2 / Qwen2.5 (Qwen2ForCausalLM): Llama's layer with q/k/v biases on every checkpoint;
    /// `use_sliding_window` must be false. No GGUF export yet (issue #26).
    public static let qwen2 = ModelFamily(architecture: .qwen2, qkvBias: .always, qkNorm: false,
                                          slidingWindow: .flag("use_sliding_window"), ggufArchitecture: nil, ggufPermutesQK: false)
}
