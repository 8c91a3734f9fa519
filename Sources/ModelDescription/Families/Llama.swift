extension ModelFamily {
    /// Llama (LlamaForCausalLM; SmolLM2, Llama 2/3): RMSNorm before attention and MLP, SwiGLU,
    /// RoPE on halves (Hugging Face layout) with optional linear / llama3 frequency scaling,
    /// q/k/v biases only when `attention_bias`, tied or untied head. GGUF: llama.cpp's `llama`,
    /// whose converter permutes q/k rows.
    public static let llama = ModelFamily(
        architecture: .llama, qkvBias: .configKey("attention_bias"), qkNorm: false,
        slidingWindow: nil, ggufArchitecture: "llama", ggufPermutesQK: true)
}
