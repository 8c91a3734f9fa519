import Foundation
import JSONSupport

/// Errors reading a model folder's config.json. Each reads as one sentence.
public enum ModelError: Error, Sendable, Equatable, CustomStringConvertible {
    case missingFile(path: String)
    case unreadable(path: String, reason: String)
    case invalidJSON(path: String, reason: String)
    case invalidKey(path: String, key: String, reason: String)
    case unsupported(path: String, key: String, value: String, supported: String)

    public var description: String {
        switch self {
        case .missingFile(let p): return "\(p): file not found (a model folder needs config.json)."
        case .unreadable(let p, let r): return "\(p): \(r)."
        case .invalidJSON(let p, let r): return "\(p): not valid JSON: \(r)."
        case .invalidKey(let p, let k, let r): return "\(p): '\(k)' \(r)."
        case .unsupported(let p, let k, let v, let s): return "\(p): unsupported \(k) \(v) (supported: \(s))."
        }
    }
}

/// RoPE frequency scaling (transformers `ROPE_INIT_FUNCTIONS`).
public enum RopeScaling: Sendable, Equatable {
    case none
    case linear(factor: Double)
    case llama3(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalMaxPositions: Int)
}

/// The config.json fields every engine needs, for every family (ModelFamily).
/// HF JSON names appear only in `init(json:path:)`.
public struct ModelConfig: Sendable, Equatable {
    public enum Architecture: String, Sendable, CaseIterable {
        case llama = "LlamaForCausalLM", mistral = "MistralForCausalLM", qwen2 = "Qwen2ForCausalLM", qwen3 =
            "Qwen3ForCausalLM"
        case gemma3 = "Gemma3ForCausalLM"
    }
    public var architecture: Architecture
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var rmsNormEps: Float
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling
    public var tieWordEmbeddings: Bool
    /// q/k/v projections carry biases (Qwen2 always; Llama when `attention_bias`).
    public var attentionBias: Bool
    /// Per-head RMSNorm of q and k between the projection and RoPE (`q_norm`, `k_norm`: Qwen3).
    public var qkNorm: Bool
    public var vocabSize: Int
    public var maxPositionEmbeddings: Int
    public var bosTokenID: Int?
    public var eosTokenID: Int?
    /// The MLP activation (the family's one accepted value).
    public var activation: ModelFamily.Activation
    /// γ = normWeightOffset + w for every RMSNorm weight w as stored (ModelFamily).
    public var normWeightOffset: Float
    /// Norms after the attention and MLP outputs too (Gemma 3).
    public var sandwichNorms: Bool
    /// What embedding rows are multiplied by (1, or √hidden in FP32 for Gemma).
    public var embeddingScale: Float
    /// What q·k is multiplied by before the softmax (1/√head_dim unless the family says).
    public var attentionScale: Float
    /// The window of sliding-window layers: a query at position i sees keys i − window + 1 … i.
    public var slidingWindow: Int?
    /// Per layer: true where the layer attends within `slidingWindow` (and uses `localRopeTheta`).
    public var slidingLayers: [Bool]
    /// RoPE base of the sliding layers (no frequency scaling there).
    public var localRopeTheta: Double

    /// The period p with layer i global exactly when (i + 1) mod p = 0 (Gemma's
    /// `sliding_window_pattern`, what mlx-lm's gemma3_text reads instead of `layer_types`); nil
    /// when the layers follow no such period within the layer count.
    public var slidingPattern: Int? {
        (1...max(1, layerCount)).first { p in
            slidingLayers.indices.allSatisfy { slidingLayers[$0] == (($0 + 1) % p != 0) }
        }
    }

    /// The attention window of layer `i` (nil: all earlier positions).
    public func attentionWindow(layer i: Int) -> Int? { slidingLayers[i] ? slidingWindow : nil }

    /// What the family has beyond these sizes (Families/).
    public var family: ModelFamily { .of(architecture) }

    public var qDim: Int { headCount * headDim }
    public var kvDim: Int { kvHeadCount * headDim }

    public init(directory: String) throws(ModelError) {
        let path = directory + "/config.json"
        let data: [UInt8]
        do { data = try FileBytes.read(path, limit: FileBytes.smallJSONLimit) } catch {
            throw error.missing ? .missingFile(path: path) : .unreadable(path: path, reason: error.reason)
        }
        let json: JSONValue
        do { json = try JSONParser.parse(data) } catch { throw .invalidJSON(path: path, reason: error.description) }
        try self.init(json: json, path: path)
    }

    /// Largest accepted size, head count or layer count (every real model is far below; it keeps
    /// products of dimensions far from overflow and hostile files from sizing huge buffers).
    public static let maxDimension = 1 << 21

    public init(json: JSONValue, path: String) throws(ModelError) {
        guard let o = json.objectValue else {
            throw .invalidJSON(path: path, reason: "the top level is \(json.kindDescription), not an object")
        }
        let r = Reader(fields: JSONFields(o, nulls: .absent), path: path)
        let supportedArchs = Architecture.allCases.map(\.rawValue).joined(separator: ", ")
        guard let archs = o["architectures"]?.arrayValue, let first = archs.first?.stringValue else {
            throw .invalidKey(path: path, key: "architectures", reason: "must be a non-empty array of strings")
        }
        guard let arch = Architecture(rawValue: first) else {
            throw .unsupported(path: path, key: "architectures", value: "'\(first)'", supported: supportedArchs)
        }
        architecture = arch
        let family = ModelFamily.of(arch)
        activation = family.activation
        if let v = o[family.activationKey], !v.isNull, v.stringValue != family.activation.rawValue {
            throw .unsupported(
                path: path, key: family.activationKey, value: v.stringValue.map { "'\($0)'" } ?? v.kindDescription,
                supported: family.activation.rawValue)
        }
        try Self.refuseUnsupported(r, family: family)
        hiddenSize = try r.int("hidden_size")
        intermediateSize = try r.int("intermediate_size")
        layerCount = try r.int("num_hidden_layers")
        headCount = try r.int("num_attention_heads")
        kvHeadCount = try r.int("num_key_value_heads", default: headCount)
        guard headCount % kvHeadCount == 0 else {
            throw .invalidKey(
                path: path, key: "num_key_value_heads",
                reason: "(\(kvHeadCount)) must divide num_attention_heads (\(headCount))")
        }
        guard hiddenSize % headCount == 0 || o["head_dim"] != nil else {
            throw .invalidKey(
                path: path, key: "hidden_size",
                reason: "(\(hiddenSize)) is not a multiple of num_attention_heads and no head_dim is given")
        }
        headDim = try r.int("head_dim", default: hiddenSize / headCount)
        guard headDim % 2 == 0 else {
            throw .invalidKey(path: path, key: "head_dim", reason: "must be even for RoPE, found \(headDim)")
        }
        rmsNormEps = Float(try r.double("rms_norm_eps", default: 1e-6))
        let rope = try Self.readRope(r, family: family)
        ropeTheta = rope.theta
        tieWordEmbeddings = try r.bool("tie_word_embeddings", default: family.tiedByDefault)
        switch family.qkvBias {
        case .always: attentionBias = true
        case .configKey(let key): attentionBias = try r.bool(key, default: false)
        }
        qkNorm = family.qkNorm
        vocabSize = try r.int("vocab_size")
        maxPositionEmbeddings = try r.int("max_position_embeddings", default: 2048, max: 1 << 30)
        bosTokenID = o["bos_token_id"]?.intValue
        eosTokenID = o["eos_token_id"]?.intValue
        ropeScaling = rope.scaling
        normWeightOffset = family.normWeightOffset
        sandwichNorms = family.sandwichNorms
        embeddingScale = family.scalesEmbedding ? Float(Double(hiddenSize).squareRoot()) : 1
        if let key = family.attentionScalarKey {
            let v = try r.double(key, default: .nan)
            guard v > 0 else {
                throw .invalidKey(
                    path: path, key: key, reason: v.isNaN ? "is missing" : "must be a positive number, found \(v)")
            }
            attentionScale = Float(pow(v, -0.5))
        } else {
            attentionScale = 1 / Float(headDim).squareRoot()
        }
        (slidingWindow, slidingLayers, localRopeTheta) = try Self.readSlidingWindow(
            r, family: family, layerCount: layerCount, ropeTheta: ropeTheta, localParams: rope.localParams)
    }

    /// config.json's fields through the one strict reader (JSONFields; null = absent, as Hugging
    /// Face writes defaults), errors as `ModelError.invalidKey` naming the file and key.
    struct Reader {
        let fields: JSONFields, path: String

        func read<T>(_ body: () throws(JSONFieldError) -> T) throws(ModelError) -> T {
            do { return try body() } catch { throw .invalidKey(path: path, key: error.key, reason: error.reason) }
        }
        func int(
            _ k: String, default d: Int? = nil, min: Int = 1, max: Int = ModelConfig.maxDimension
        ) throws(ModelError) -> Int {
            guard let i = try read({ () throws(JSONFieldError) in try fields.int(k, in: min...Int.max) }) else {
                if let d { return d }
                throw .invalidKey(path: path, key: k, reason: "is missing")
            }
            guard i <= max else {
                throw .invalidKey(path: path, key: k, reason: "is \(i), more than this tool accepts (\(max))")
            }
            return i
        }
        func double(_ k: String, default d: Double) throws(ModelError) -> Double {
            try read({ () throws(JSONFieldError) in try fields.number(k) }) ?? d
        }
        func bool(_ k: String, default d: Bool) throws(ModelError) -> Bool {
            try read({ () throws(JSONFieldError) in try fields.bool(k) }) ?? d
        }
    }

    /// Refuses what no family file implements (MLP biases, soft-capping, bidirectional
    /// attention) and sliding-window settings on a family without sliding layers.
    static func refuseUnsupported(_ r: Reader, family: ModelFamily) throws(ModelError) {
        let path = r.path
        if try r.bool("mlp_bias", default: false) {
            throw .unsupported(path: path, key: "mlp_bias", value: "true", supported: "false")
        }
        for key in ["final_logit_softcapping", "attn_logit_softcapping"] {
            if let v = r.fields[key], !v.isNull {
                throw .unsupported(
                    path: path, key: key, value: v.doubleValue.map { "\($0)" } ?? v.kindDescription,
                    supported: "null (no soft-capping)")
            }
        }
        if try r.bool("use_bidirectional_attention", default: false) {
            throw .unsupported(
                path: path, key: "use_bidirectional_attention", value: "true", supported: "false (causal attention)")
        }
        switch family.slidingWindow {
        case .windowUnlessNull(let key)?:
            if let sw = r.fields[key], !sw.isNull {
                throw .unsupported(
                    path: path, key: key, value: sw.intValue.map(String.init) ?? "set",
                    supported: "null (no sliding-window attention)")
            }
        case .flag(let key)?:
            if try r.bool(key, default: false) {
                throw .unsupported(path: path, key: key, value: "true", supported: "false")
            }
        case .perLayer?, nil: break
        }
        if case .perLayer? = family.slidingWindow {
        } else if let types = r.fields["layer_types"]?.arrayValue,
            let other = types.first(where: { $0.stringValue != "full_attention" })
        {
            throw .unsupported(
                path: path, key: "layer_types", value: other.stringValue.map { "'\($0)'" } ?? other.kindDescription,
                supported: "full_attention (no sliding-window layers)")
        }
        if let tp = r.fields["pretraining_tp"]?.intValue, tp != 1 {
            throw .unsupported(path: path, key: "pretraining_tp", value: String(tp), supported: "1")
        }
    }

    /// RoPE: transformers < 5 writes top-level rope_theta / rope_scaling; 5.x writes one
    /// rope_parameters object {rope_type, rope_theta, factor, ...} (per attention type for
    /// families with sliding layers). Both are read; a value the file states in a form we do not
    /// understand is refused by name, never defaulted.
    static func readRope(
        _ r: Reader, family: ModelFamily
    ) throws(ModelError) -> (theta: Double, scaling: RopeScaling, localParams: JSONValue?) {
        let path = r.path
        let ropeTheta: Double
        var params = r.fields["rope_parameters"].flatMap { $0.isNull ? nil : $0 }
        var paramsKey = "rope_parameters"
        var localParams: JSONValue? = nil
        if case .perLayer? = family.slidingWindow, let po = params?.objectValue, po["rope_type"] == nil,
            po["type"] == nil
        {
            // transformers 5 writes one RoPE object per attention type for these families.
            if let extra = po.keys.first(where: { $0 != "full_attention" && $0 != "sliding_attention" }) {
                throw .unsupported(
                    path: path, key: "rope_parameters.\(extra)", value: "as an attention type",
                    supported: "full_attention, sliding_attention")
            }
            localParams = po["sliding_attention"]
            params = po["full_attention"]
            paramsKey = "rope_parameters.full_attention"
        }
        if let params {
            guard let po = params.objectValue else {
                throw .invalidKey(path: path, key: paramsKey, reason: "must be an object or null")
            }
            if po["rope_type"] == nil && po["type"] == nil && po.pairs.contains(where: { $0.value.objectValue != nil })
            {
                throw .unsupported(
                    path: path, key: "rope_parameters",
                    value: "per attention type (\(po.keys.joined(separator: ", ")))",
                    supported: "one object with rope_type and rope_theta")
            }
            guard let t = po["rope_theta"]?.doubleValue, t.isFinite, t > 0 else {
                throw .invalidKey(path: path, key: "\(paramsKey).rope_theta", reason: "must be a positive number")
            }
            if let top = r.fields["rope_theta"], !top.isNull, top.doubleValue != t {
                throw .invalidKey(
                    path: path, key: "rope_theta",
                    reason:
                        "(\(top.doubleValue.map { "\($0)" } ?? top.kindDescription)) contradicts rope_parameters.rope_theta (\(t))"
                )
            }
            if let top = r.fields["rope_scaling"], !top.isNull {
                throw .invalidKey(
                    path: path, key: "rope_scaling", reason: "is given next to rope_parameters; keep one of the two")
            }
            ropeTheta = t
        } else {
            var defaultTheta = 10000.0
            if case .perLayer(_, _, _, let d, _)? = family.slidingWindow { defaultTheta = d }
            ropeTheta = try r.double("rope_theta", default: defaultTheta)
            guard ropeTheta > 0 else {
                throw .invalidKey(
                    path: path, key: "rope_theta", reason: "must be a positive number, found \(ropeTheta)")
            }
        }
        let scaling =
            params != nil
            ? try parseRopeScaling(params, path: path, key: paramsKey)
            : try parseRopeScaling(r.fields["rope_scaling"], path: path, key: "rope_scaling")
        return (ropeTheta, scaling, localParams)
    }

    /// The sliding-window layers (`layer_types`, else the family's period) and their window and
    /// RoPE base; no window and every layer global for families without sliding layers.
    static func readSlidingWindow(
        _ r: Reader, family: ModelFamily, layerCount: Int, ropeTheta: Double, localParams: JSONValue?
    ) throws(ModelError) -> (window: Int?, layers: [Bool], localTheta: Double) {
        let path = r.path
        var slidingWindow: Int? = nil
        var slidingLayers = [Bool](repeating: false, count: layerCount)
        var localRopeTheta = ropeTheta
        if case .perLayer(let windowKey, let pattern, let localKey, _, let defaultLocal)? = family.slidingWindow {
            slidingWindow = try r.int(windowKey, max: 1 << 30)
            if let tv = r.fields["layer_types"], !tv.isNull {
                guard let types = tv.arrayValue, types.count == layerCount else {
                    throw .invalidKey(
                        path: path, key: "layer_types", reason: "must list one attention type per layer (\(layerCount))"
                    )
                }
                for (i, t) in types.enumerated() {
                    switch t.stringValue {
                    case "sliding_attention": slidingLayers[i] = true
                    case "full_attention": break
                    default:
                        throw .unsupported(
                            path: path, key: "layer_types[\(i)]",
                            value: t.stringValue.map { "'\($0)'" } ?? t.kindDescription,
                            supported: "sliding_attention, full_attention")
                    }
                }
            } else {
                let p = try r.int(
                    "sliding_window_pattern", default: r.fields["_sliding_window_pattern"]?.intValue ?? pattern)
                slidingLayers = (0..<layerCount).map { ($0 + 1) % p != 0 }
            }
            if let lp = localParams {
                guard let lo = lp.objectValue, let t = lo["rope_theta"]?.doubleValue, t.isFinite, t > 0 else {
                    throw .invalidKey(
                        path: path, key: "rope_parameters.sliding_attention.rope_theta",
                        reason: "must be a positive number")
                }
                guard try Self.parseRopeScaling(lp, path: path, key: "rope_parameters.sliding_attention") == .none
                else {
                    throw .unsupported(
                        path: path, key: "rope_parameters.sliding_attention.rope_type", value: "with scaling",
                        supported: "default")
                }
                localRopeTheta = t
            } else {
                localRopeTheta = try r.double(localKey, default: defaultLocal)
                guard localRopeTheta > 0 else {
                    throw .invalidKey(path: path, key: localKey, reason: "must be a positive number")
                }
            }
        }
        return (slidingWindow, slidingLayers, localRopeTheta)
    }

    /// Keys a RoPE object may hold for each type we implement; any other key is refused by name.
    static let ropeKeys: [String: Set<String>] = [
        "default": ["rope_type", "type", "rope_theta"],
        "linear": ["rope_type", "type", "rope_theta", "factor"],
        "llama3": [
            "rope_type", "type", "rope_theta", "factor", "low_freq_factor", "high_freq_factor",
            "original_max_position_embeddings"
        ]
    ]

    private static func parseRopeScaling(_ v: JSONValue?, path: String, key: String) throws(ModelError) -> RopeScaling {
        guard let v, !v.isNull else { return .none }
        guard let o = v.objectValue else {
            throw .invalidKey(path: path, key: key, reason: "must be an object or null")
        }
        let type =
            o["rope_type"]?.stringValue ?? o["type"]?.stringValue ?? (key == "rope_parameters" ? "default" : "missing")
        if let allowed = ropeKeys[type], let extra = o.keys.first(where: { !allowed.contains($0) }) {
            throw .unsupported(
                path: path, key: "\(key).\(extra)", value: "for rope_type '\(type)'",
                supported: allowed.sorted().joined(separator: ", "))
        }
        func num(_ k: String) throws(ModelError) -> Double {
            guard let x = o[k]?.doubleValue else {
                throw .invalidKey(path: path, key: "\(key).\(k)", reason: "must be a number")
            }
            return x
        }
        switch type {
        case "default": return .none
        case "linear": return .linear(factor: try num("factor"))
        case "llama3":
            guard let orig = o["original_max_position_embeddings"]?.intValue else {
                throw .invalidKey(
                    path: path, key: "\(key).original_max_position_embeddings", reason: "must be an integer")
            }
            return .llama3(
                factor: try num("factor"), lowFreqFactor: try num("low_freq_factor"),
                highFreqFactor: try num("high_freq_factor"), originalMaxPositions: orig)
        default:
            throw .unsupported(
                path: path, key: "\(key) type", value: "'\(type)'", supported: "none, default, linear, llama3")
        }
    }
}

extension ModelConfig {
    /// The scales γ = offset + w of RMSNorm weights w as stored (FP32, as transformers computes
    /// Gemma's 1 + w); the identity where the offset is 0.
    public func normScales(stored w: [Float]) -> [Float] {
        normWeightOffset == 0 ? w : w.map { normWeightOffset + $0 }
    }
    /// The stored weights w = γ − offset of norm scales γ (before rounding to the file's dtype).
    public func storedNormWeights(scales g: [Float]) -> [Float] {
        normWeightOffset == 0 ? g : g.map { $0 - normWeightOffset }
    }
}
