extension ModelFamily {
    /// Mistral (MistralForCausalLM): Llama's layer; its `sliding_window` must be null (sliding
    /// windows are not run). GGUF: llama.cpp writes it as `llama`.
    public static let mistral = ModelFamily(
        architecture: .mistral, qkvBias: .configKey("attention_bias"), qkNorm: false,
        slidingWindow: .windowUnlessNull("sliding_window"), ggufArchitecture: "llama", ggufPermutesQK: true)
}
