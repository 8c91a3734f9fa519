import TensorStore

/// Hugging Face tensor names of a checkpoint of every supported family — the only place they are
/// spelled (the packed format keeps them, Formats/fireq-packed-v1.md).
public enum TensorNames {
    public static let embed = "model.embed_tokens.weight"
    public static let finalNorm = "model.norm.weight"
    public static let lmHead = "lm_head.weight"
    /// What every decoder layer's tensor names start with, before the layer index.
    public static let layerPrefix = "model.layers."
    public static func layer(_ i: Int, _ part: String) -> String { "\(layerPrefix)\(i).\(part)" }
    /// "model.layers.{i}." — the prefix of layer i's tensors.
    public static func layerPrefix(_ i: Int) -> String { "\(layerPrefix)\(i)." }
    /// The layer index of a decoder-layer tensor name (nil for the others).
    public static func layerIndex(of name: String) -> Int? {
        guard name.hasPrefix(layerPrefix) else { return nil }
        return Int(name.dropFirst(layerPrefix.count).prefix { $0 != "." })
    }
    /// The part of a decoder-layer tensor name after "model.layers.{i}." (nil for the others).
    public static func layerPart(of name: String) -> (layer: Int, part: Substring)? {
        guard let i = layerIndex(of: name) else { return nil }
        return (i, name.dropFirst(layerPrefix(i).count))
    }
    /// The RMSNorm weights of a layer (tensor names after the layer prefix).
    public struct LayerNorms: Sendable, Equatable {
        /// Before q/k/v (`input_layernorm` in every family).
        public let attentionInput: String
        /// Before gate/up: Llama's `post_attention_layernorm`, Gemma 3's `pre_feedforward_layernorm`.
        public let mlpInput: String
        /// On the attention / MLP output before the residual add (sandwich norms: Gemma 3's
        /// `post_attention_layernorm` / `post_feedforward_layernorm`); nil elsewhere.
        public let attentionOutput: String?, mlpOutput: String?
        /// All of them, in that order.
        public var all: [String] { [attentionInput, mlpInput] + [attentionOutput, mlpOutput].compactMap { $0 } }
    }
    /// The norms a layer of `c` has.
    public static func norms(_ c: ModelConfig) -> LayerNorms {
        c.sandwichNorms
            ? LayerNorms(
                attentionInput: "input_layernorm.weight", mlpInput: "pre_feedforward_layernorm.weight",
                attentionOutput: "post_attention_layernorm.weight", mlpOutput: "post_feedforward_layernorm.weight")
            : LayerNorms(
                attentionInput: "input_layernorm.weight", mlpInput: "post_attention_layernorm.weight",
                attentionOutput: nil, mlpOutput: nil)
    }
    public static let q = "self_attn.q_proj", k = "self_attn.k_proj", v = "self_attn.v_proj", o = "self_attn.o_proj"
    public static let gate = "mlp.gate_proj", up = "mlp.up_proj", down = "mlp.down_proj"
    public static let qNorm = "self_attn.q_norm.weight", kNorm = "self_attn.k_norm.weight"
    /// The seven linears of a layer in the packed format's order (q, k, v, o, gate, up, down).
    public static let linears = [q, k, v, o, gate, up, down]
    /// Layer i's seven linears (without ".weight"), in packed order.
    public static func linearNames(layer i: Int) -> [String] { linears.map { layer(i, $0) } }
    /// The output projection's module name ("lm_head"), as quantization configs list it.
    public static let lmHeadModule = String(lmHead.dropLast(".weight".count))
    /// The packed format's run-time attention smoothing tensors of a layer (our names, beside
    /// the layer's HF tensors: Formats/fireq-packed-v1.md "Attention smoothing").
    public static let qkvSupply = "self_attn.qkv_supply."

    /// Every tensor a checkpoint of `config` must hold (and may hold nothing else, except
    /// `rotary_emb.inv_freq` buffers some exporters leave in).
    public static func expected(_ c: ModelConfig) -> [String: [Int]] {
        var m: [String: [Int]] = [embed: [c.vocabSize, c.hiddenSize], finalNorm: [c.hiddenSize]]
        if !c.tieWordEmbeddings { m[lmHead] = [c.vocabSize, c.hiddenSize] }
        for i in 0..<c.layerCount {
            for n in norms(c).all { m[layer(i, n)] = [c.hiddenSize] }
            m[layer(i, q + ".weight")] = [c.qDim, c.hiddenSize]
            m[layer(i, k + ".weight")] = [c.kvDim, c.hiddenSize]
            m[layer(i, v + ".weight")] = [c.kvDim, c.hiddenSize]
            m[layer(i, o + ".weight")] = [c.hiddenSize, c.qDim]
            m[layer(i, gate + ".weight")] = [c.intermediateSize, c.hiddenSize]
            m[layer(i, up + ".weight")] = [c.intermediateSize, c.hiddenSize]
            m[layer(i, down + ".weight")] = [c.hiddenSize, c.intermediateSize]
            if c.qkNorm {
                m[layer(i, qNorm)] = [c.headDim]
                m[layer(i, kNorm)] = [c.headDim]
            }
            if c.attentionBias {
                m[layer(i, q + ".bias")] = [c.qDim]
                m[layer(i, k + ".bias")] = [c.kvDim]
                m[layer(i, v + ".bias")] = [c.kvDim]
            }
        }
        return m
    }

    /// Strict check: every expected tensor present with its shape, nothing unexpected.
    public static func validate(_ ckpt: Checkpoint, config: ModelConfig) throws(TensorStoreError) {
        let want = expected(config)
        for name in want.keys.sorted() {
            guard let info = ckpt.info(name) else { throw .missingTensor(path: ckpt.directory, tensor: name) }
            guard info.shape == want[name]! else {
                throw .wrongShape(
                    path: try ckpt.file(for: name).0.path, tensor: name, expected: want[name]!, found: info.shape)
            }
            guard info.dtype.isFloatingPoint else {
                throw .wrongDType(
                    path: try ckpt.file(for: name).0.path, tensor: name, expected: "F32, F16 or BF16",
                    found: info.dtype.rawValue)
            }
        }
        let extra = ckpt.tensorNames.filter {
            want[$0] == nil && !$0.hasSuffix("rotary_emb.inv_freq") && !(config.tieWordEmbeddings && $0 == lmHead)
        }
        if !extra.isEmpty { throw .unexpectedTensors(path: ckpt.directory, tensors: extra) }
    }
}
