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
        case llama = "LlamaForCausalLM", mistral = "MistralForCausalLM", qwen2 = "Qwen2ForCausalLM", qwen3 = "Qwen3ForCausalLM"
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
        guard let o = json.objectValue else { throw .invalidJSON(path: path, reason: "the top level is \(json.kindDescription), not an object") }
        func int(_ k: String, default d: Int? = nil, min: Int = 1, max: Int = Self.maxDimension) throws(ModelError) -> Int {
            guard let v = o[k], !v.isNull else {
                if let d { return d }
                throw .invalidKey(path: path, key: k, reason: "is missing")
            }
            guard let i = v.intValue else { throw .invalidKey(path: path, key: k, reason: "must be an integer, found \(v.kindDescription)") }
            guard i >= min else { throw .invalidKey(path: path, key: k, reason: "must be at least \(min), found \(i)") }
            guard i <= max else { throw .invalidKey(path: path, key: k, reason: "is \(i), more than this tool accepts (\(max))") }
            return i
        }
        func double(_ k: String, default d: Double) throws(ModelError) -> Double {
            guard let v = o[k], !v.isNull else { return d }
            guard let x = v.doubleValue, x.isFinite else { throw .invalidKey(path: path, key: k, reason: "must be a number, found \(v.kindDescription)") }
            return x
        }
        func bool(_ k: String, default d: Bool) throws(ModelError) -> Bool {
            guard let v = o[k], !v.isNull else { return d }
            guard let b = v.boolValue else { throw .invalidKey(path: path, key: k, reason: "must be true or false, found \(v.kindDescription)") }
            return b
        }
        let supportedArchs = Architecture.allCases.map(\.rawValue).joined(separator: ", ")
        guard let archs = o["architectures"]?.arrayValue, let first = archs.first?.stringValue else {
            throw .invalidKey(path: path, key: "architectures", reason: "must be a non-empty array of strings")
        }
        guard let arch = Architecture(rawValue: first) else {
            throw .unsupported(path: path, key: "architectures", value: "'\(first)'", supported: supportedArchs)
        }
        architecture = arch
        if let act = o["hidden_act"]?.stringValue, act != "silu" {
            throw .unsupported(path: path, key: "hidden_act", value: "'\(act)'", supported: "silu")
        }
        if try bool("mlp_bias", default: false) {
            throw .unsupported(path: path, key: "mlp_bias", value: "true", supported: "false")
        }
        let family = ModelFamily.of(arch)
        switch family.slidingWindow {
        case .windowUnlessNull(let key)?:
            if let sw = o[key], !sw.isNull {
                throw .unsupported(path: path, key: key, value: sw.intValue.map(String.init) ?? "set", supported: "null (no sliding-window attention)")
            }
        case .flag(let key)?:
            if try bool(key, default: false) { throw .unsupported(path: path, key: key, value: "true", supported: "false") }
        case nil: break
        }
        if let types = o["layer_types"]?.arrayValue, let other = types.first(where: { $0.stringValue != "full_attention" }) {
            throw .unsupported(path: path, key: "layer_types", value: other.stringValue.map { "'\($0)'" } ?? other.kindDescription,
                               supported: "full_attention (no sliding-window layers)")
        }
        if let tp = o["pretraining_tp"]?.intValue, tp != 1 {
            throw .unsupported(path: path, key: "pretraining_tp", value: String(tp), supported: "1")
        }
        hiddenSize = try int("hidden_size")
        intermediateSize = try int("intermediate_size")
        layerCount = try int("num_hidden_layers")
        headCount = try int("num_attention_heads")
        kvHeadCount = try int("num_key_value_heads", default: headCount)
        guard headCount % kvHeadCount == 0 else {
            throw .invalidKey(path: path, key: "num_key_value_heads", reason: "(\(kvHeadCount)) must divide num_attention_heads (\(headCount))")
        }
        guard hiddenSize % headCount == 0 || o["head_dim"] != nil else {
            throw .invalidKey(path: path, key: "hidden_size", reason: "(\(hiddenSize)) is not a multiple of num_attention_heads and no head_dim is given")
        }
        headDim = try int("head_dim", default: hiddenSize / headCount)
        guard headDim % 2 == 0 else { throw .invalidKey(path: path, key: "head_dim", reason: "must be even for RoPE, found \(headDim)") }
        rmsNormEps = Float(try double("rms_norm_eps", default: 1e-6))
        // RoPE: transformers < 5 writes top-level rope_theta / rope_scaling; 5.x writes one
        // rope_parameters object {rope_type, rope_theta, factor, ...}. Both are read; a value the
        // file states in a form we do not understand is refused by name, never defaulted.
        let params = o["rope_parameters"].flatMap { $0.isNull ? nil : $0 }
        if let params {
            guard let po = params.objectValue else { throw .invalidKey(path: path, key: "rope_parameters", reason: "must be an object or null") }
            if po["rope_type"] == nil && po["type"] == nil && po.pairs.contains(where: { $0.value.objectValue != nil }) {
                throw .unsupported(path: path, key: "rope_parameters", value: "per attention type (\(po.keys.joined(separator: ", ")))",
                                   supported: "one object with rope_type and rope_theta")
            }
            guard let t = po["rope_theta"]?.doubleValue, t.isFinite, t > 0 else {
                throw .invalidKey(path: path, key: "rope_parameters.rope_theta", reason: "must be a positive number")
            }
            if let top = o["rope_theta"], !top.isNull, top.doubleValue != t {
                throw .invalidKey(path: path, key: "rope_theta", reason: "(\(top.doubleValue.map { "\($0)" } ?? top.kindDescription)) contradicts rope_parameters.rope_theta (\(t))")
            }
            if let top = o["rope_scaling"], !top.isNull {
                throw .invalidKey(path: path, key: "rope_scaling", reason: "is given next to rope_parameters; keep one of the two")
            }
            ropeTheta = t
        } else {
            ropeTheta = try double("rope_theta", default: 10000)
            guard ropeTheta > 0 else { throw .invalidKey(path: path, key: "rope_theta", reason: "must be a positive number, found \(ropeTheta)") }
        }
        tieWordEmbeddings = try bool("tie_word_embeddings", default: false)
        switch family.qkvBias {
        case .always: attentionBias = true
        case .configKey(let key): attentionBias = try bool(key, default: false)
        }
        qkNorm = family.qkNorm
        vocabSize = try int("vocab_size")
        maxPositionEmbeddings = try int("max_position_embeddings", default: 2048, max: 1 << 30)
        bosTokenID = o["bos_token_id"]?.intValue
        eosTokenID = o["eos_token_id"]?.intValue
        ropeScaling = params != nil ? try Self.parseRopeScaling(params, path: path, key: "rope_parameters")
                                    : try Self.parseRopeScaling(o["rope_scaling"], path: path, key: "rope_scaling")
    }

    /// Keys a RoPE object may hold for each type we implement; any other key is refused by name.
    static let ropeKeys: [String: Set<String>] = [
        "default": ["rope_type", "type", "rope_theta"],
        "linear": ["rope_type", "type", "rope_theta", "factor"],
        "llama3": ["rope_type", "type", "rope_theta", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"],
    ]

    private static func parseRopeScaling(_ v: JSONValue?, path: String, key: String) throws(ModelError) -> RopeScaling {
        guard let v, !v.isNull else { return .none }
        guard let o = v.objectValue else { throw .invalidKey(path: path, key: key, reason: "must be an object or null") }
        let type = o["rope_type"]?.stringValue ?? o["type"]?.stringValue ?? (key == "rope_parameters" ? "default" : "missing")
        if let allowed = ropeKeys[type], let extra = o.keys.first(where: { !allowed.contains($0) }) {
            throw .unsupported(path: path, key: "\(key).\(extra)", value: "for rope_type '\(type)'", supported: allowed.sorted().joined(separator: ", "))
        }
        func num(_ k: String) throws(ModelError) -> Double {
            guard let x = o[k]?.doubleValue else { throw .invalidKey(path: path, key: "\(key).\(k)", reason: "must be a number") }
            return x
        }
        switch type {
        case "default": return .none
        case "linear": return .linear(factor: try num("factor"))
        case "llama3":
            guard let orig = o["original_max_position_embeddings"]?.intValue else {
                throw .invalidKey(path: path, key: "\(key).original_max_position_embeddings", reason: "must be an integer")
            }
            return .llama3(factor: try num("factor"), lowFreqFactor: try num("low_freq_factor"),
                           highFreqFactor: try num("high_freq_factor"), originalMaxPositions: orig)
        default:
            throw .unsupported(path: path, key: "\(key) type", value: "'\(type)'", supported: "none, default, linear, llama3")
        }
    }
}
