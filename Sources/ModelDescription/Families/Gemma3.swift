extension ModelFamily {
    /// Gemma 3, text only (Gemma3ForCausalLM; config `model_type: gemma3_text`): RMSNorms scale by
    /// (1 + w), and sit on both sides of attention and MLP (input_layernorm → attention →
    /// post_attention_layernorm → residual add; pre_feedforward_layernorm → MLP →
    /// post_feedforward_layernorm → residual add); per-head q/k RMSNorm before RoPE; GeGLU with
    /// tanh GELU; embeddings × √hidden; q·k scaled by query_pre_attn_scalar^−½; sliding-window
    /// layers (window `sliding_window`, their own RoPE base `rope_local_base_freq`, no scaling)
    /// interleaved with global ones (`layer_types`, else every 6th layer global); tied head.
    /// GGUF: llama.cpp's `gemma3` (norms stored as 1 + w, a SentencePiece vocabulary; its fixed
    /// layer pattern, local RoPE base and q·k scale must match: Formats/exports.md).
    public static let gemma3 = ModelFamily(
        architecture: .gemma3, qkvBias: .configKey("attention_bias"), qkNorm: true,
        slidingWindow: .perLayer(
            windowKey: "sliding_window", pattern: 6, localThetaKey: "rope_local_base_freq",
            defaultTheta: 1_000_000, defaultLocalTheta: 10_000),
        activationKey: "hidden_activation", activation: .geluTanh, normWeightOffset: 1,
        sandwichNorms: true, scalesEmbedding: true, tiedByDefault: true, attentionScalarKey: "query_pre_attn_scalar",
        ggufArchitecture: "gemma3", ggufPermutesQK: false)
}
