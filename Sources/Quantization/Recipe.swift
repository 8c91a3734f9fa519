import Foundation
import JSONSupport

/// Errors of the quantization stage; each reads as one sentence naming the file and the problem.
public enum QuantizationError: Error, Sendable, Equatable, CustomStringConvertible {
    case recipe(path: String, key: String, reason: String)
    case groupSize(layer: String, k: Int, groupSize: Int, divisors: [Int])
    case statsMismatch(path: String, expected: String, found: String)
    case packed(path: String, reason: String)

    public var description: String {
        switch self {
        case .recipe(let p, let k, let r): return k == "(file)" ? "\(p): \(r)." : "\(p): '\(k)' \(r)."
        case .groupSize(let l, let k, let g, let d):
            return
                "\(l): group size \(g) does not divide its \(k) inputs; group sizes that do: \(d.map(String.init).joined(separator: ", "))."
        case .statsMismatch(let p, let e, let f):
            return
                "\(p): the statistics were computed for another model (model_sha256 \(f.prefix(12))…, this model is \(e.prefix(12))…)."
        case .packed(let p, let r): return "\(p): \(r)."
        }
    }
}

/// A declarative quantization recipe (Formats/recipe-schema.md). Every FIREQ-METHOD **Decision**
/// is a field; unknown keys are errors.
public struct Recipe: Sendable, Equatable {
    public var name = "fireq"
    public var description = ""
    // weights
    public var groupSize = 64
    public var scaleFormat: Int4Groups.ScaleFormat = .fp8e4m3
    public var perTensorPowerOfTwo = true
    public var fp8Rerounding = true
    /// Group scales chosen by input-weighted error (GPTQ.searchScale) instead of a/7.
    public var scaleSearch = false
    /// What the scale search weighs each weight's squared error by (`weights.scale_search_weights`).
    public var searchWeights: GPTQ.SearchWeights = .input
    /// The scale search also tries negative group scales, so a group's largest magnitude can take
    /// code −8 as in llama.cpp's Q4_0 (`weights.signed_scales`).
    public var signedScales = false
    /// The scale search also tries codes rounded with other scales, each with its least-squares
    /// scale (`weights.fitted_scales`).
    public var fittedScales = false
    /// The smallest candidate group scale as a fraction of the absmax scale (a/7; a/8 for negative
    /// ones): how far the search may clip a group's extreme (`weights.scale_search_floor`).
    public var scaleSearchFloor: Float = 0.5
    /// GPTQ error-compensating rounding (nil = plain rounding).
    public var gptq: GPTQSettings? = nil
    public struct GPTQSettings: Sendable, Equatable {
        /// λ: dampening added to H's diagonal, as a fraction of its mean.
        public var damp: Float = 0.01
        /// Where layer i's calibration inputs come from: the model with layers < i already
        /// quantized (`quantized`) or the smoothed FP model (`fp`).
        public var inputs: Inputs = .quantized
        public enum Inputs: String, Sendable, Equatable { case quantized, fp }
        public init() {}
    }
    // activations / attention numerics (used by the runtime)
    public var activationsFP8 = true
    public var outputBF16 = false
    public var queryFP8 = true
    public var kvInt4 = true
    /// Rotate Q and K (after RoPE and S) by the normalised Hadamard matrix before they are
    /// quantized (Formats/runtime-numerics.md "Q/K rotation").
    public var qkHadamard = false
    /// INT4 K/V group: consecutive channels of a head sharing one scale (nil = the head).
    public var kvGroupSize: Int? = nil
    /// INT4 K/V scales searched per group at run time (least squared error over the E4M3 candidates).
    public var kvScaleSearch = false
    /// The K/V scale search also tries negative scales (`attention.kv_signed_scales`).
    public var kvSignedScales = false
    /// INT4 K/V keep the k_proj / v_proj bias out of the quantized value (recipe
    /// `attention.kv_center: "bias"`; Formats/runtime-numerics.md "K/V centres"); the pre- and
    /// post-RoPE scaling then use the statistics of k − b.
    public var kvCenterBias = false
    /// The lm_head held as INT8 rows by the runtime (recipe `lm_head.format: "int8"`; made at load,
    /// Formats/runtime-numerics.md "INT8 lm_head"); false keeps the stored 16 bits.
    public var lmHeadInt8 = false
    // smoothing
    public var smoothing = SmoothingPlan()
    public var smoothQuantAlpha: Float? = nil
    /// Per-layer search of FireQ's constants on calibration error (nil = off; Formats/recipe-schema.md "search").
    public var search: SearchSettings? = nil
    public struct SearchSettings: Sendable, Equatable {
        /// Candidates (empty = not searched): α = β, post-RoPE top-k, gate∥up and down strengths.
        public var alphaBeta: [Float] = [], topK: [Int] = [], gateUpStrength: [Float] = [], downStrength: [Float] = []
        /// The first `windows` stored calibration windows, each cut to its first `tokens` tokens.
        public var windows = 2, tokens = 1024
        public init() {}
    }
    // per-layer
    public var skipLayers: [Int] = []
    public var groupSizeOverrides: [Int: Int] = [:]

    public init() {}

    /// Parses a recipe; `path` names the file in errors.
    public static func parse(_ data: Data, path: String) throws(QuantizationError) -> Recipe {
        let json: JSONValue
        do { json = try JSONParser.parse(data) } catch {
            throw .recipe(path: path, key: "(file)", reason: "is not valid JSON: \(error.description)")
        }
        guard let root = json.objectValue else {
            throw .recipe(path: path, key: "(top level)", reason: "must be an object")
        }
        var r = Recipe()
        func keys(_ o: JSONObject, _ allowed: [String], _ prefix: String) throws(QuantizationError) {
            for k in o.keys where !allowed.contains(k) {
                throw .recipe(
                    path: path, key: prefix + k,
                    reason: "is not a recipe key (allowed here: \(allowed.joined(separator: ", ")))")
            }
        }
        func obj(_ o: JSONObject, _ k: String, _ prefix: String) throws(QuantizationError) -> JSONObject? {
            guard let v = o[k] else { return nil }
            guard let x = v.objectValue else { throw .recipe(path: path, key: prefix + k, reason: "must be an object") }
            return x
        }
        func num(_ o: JSONObject, _ k: String, _ prefix: String) throws(QuantizationError) -> Float? {
            guard let v = o[k], !v.isNull else { return nil }
            guard let d = v.doubleValue, d.isFinite else {
                throw .recipe(path: path, key: prefix + k, reason: "must be a number")
            }
            return Float(d)
        }
        func int(_ o: JSONObject, _ k: String, _ prefix: String) throws(QuantizationError) -> Int? {
            guard let v = o[k], !v.isNull else { return nil }
            guard let i = v.intValue else { throw .recipe(path: path, key: prefix + k, reason: "must be an integer") }
            return i
        }
        func bool(_ o: JSONObject, _ k: String, _ prefix: String) throws(QuantizationError) -> Bool? {
            guard let v = o[k] else { return nil }
            guard let b = v.boolValue else {
                throw .recipe(path: path, key: prefix + k, reason: "must be true or false")
            }
            return b
        }
        func choice(
            _ o: JSONObject, _ k: String, _ prefix: String, _ allowed: [String]
        ) throws(QuantizationError) -> String? {
            guard let v = o[k] else { return nil }
            guard let s = v.stringValue, allowed.contains(s) else {
                throw .recipe(path: path, key: prefix + k, reason: "must be one of \(allowed.joined(separator: ", "))")
            }
            return s
        }
        try keys(
            root,
            ["name", "description", "weights", "activations", "smoothing", "attention", "layers", "search", "lm_head"],
            "")
        if let h = try obj(root, "lm_head", "") {
            try keys(h, ["format"], "lm_head.")
            if let f = try choice(h, "format", "lm_head.", ["source", "int8"]) { r.lmHeadInt8 = f == "int8" }
        }
        if let v = root["name"] {
            guard let s = v.stringValue else { throw .recipe(path: path, key: "name", reason: "must be a string") };
            r.name = s
        }
        if let v = root["description"] {
            guard let s = v.stringValue else {
                throw .recipe(path: path, key: "description", reason: "must be a string")
            }; r.description = s
        }
        if let w = try obj(root, "weights", "") {
            try keys(
                w,
                [
                    "bits", "group_size", "scale_format", "per_tensor_pow2", "fp8_rerounding", "scale_search",
                    "scale_search_weights", "signed_scales", "fitted_scales", "scale_search_floor", "gptq"
                ], "weights.")
            if let b = try int(w, "bits", "weights."), b != 4 {
                throw .recipe(path: path, key: "weights.bits", reason: "must be 4 (INT4)")
            }
            if let g = try int(w, "group_size", "weights.") {
                guard g >= 1 else { throw .recipe(path: path, key: "weights.group_size", reason: "must be positive") }
                r.groupSize = g
            }
            if let s = try choice(w, "scale_format", "weights.", ["fp8_e4m3", "bf16"]) {
                r.scaleFormat = Int4Groups.ScaleFormat(rawValue: s)!
            }
            if let b = try bool(w, "per_tensor_pow2", "weights.") { r.perTensorPowerOfTwo = b }
            if let b = try bool(w, "fp8_rerounding", "weights.") { r.fp8Rerounding = b }
            if let b = try bool(w, "scale_search", "weights.") { r.scaleSearch = b }
            if let v = try choice(w, "scale_search_weights", "weights.", GPTQ.SearchWeights.allCases.map(\.rawValue)) {
                r.searchWeights = GPTQ.SearchWeights(rawValue: v)!
                guard r.scaleSearch || r.searchWeights == .input else {
                    throw .recipe(
                        path: path, key: "weights.scale_search_weights",
                        reason: "needs \"scale_search\": true (it weighs the search's error)")
                }
            }
            // Options that extend the scale search: true needs it.
            func extendsSearch(_ key: String, _ why: String) throws(QuantizationError) -> Bool {
                guard let b = try bool(w, key, "weights."), b else { return false }
                guard r.scaleSearch else {
                    throw .recipe(path: path, key: "weights." + key, reason: "needs \"scale_search\": true (\(why))")
                }
                return true
            }
            r.signedScales = try extendsSearch("signed_scales", "the search chooses each group's sign")
            r.fittedScales = try extendsSearch("fitted_scales", "it extends the search")
            if let f = try num(w, "scale_search_floor", "weights.") {
                guard f >= 0.5 && f <= 1 else {
                    throw .recipe(path: path, key: "weights.scale_search_floor", reason: "must be in [0.5, 1]")
                }
                guard r.scaleSearch || f == 0.5 else {
                    throw .recipe(
                        path: path, key: "weights.scale_search_floor",
                        reason: "needs \"scale_search\": true (it bounds the search's candidates)")
                }
                r.scaleSearchFloor = f
            }
            if let v = w["gptq"], !v.isNull {
                guard let g = v.objectValue else {
                    throw .recipe(path: path, key: "weights.gptq", reason: "must be an object or null (off)")
                }
                try keys(g, ["damp", "inputs"], "weights.gptq.")
                var s = GPTQSettings()
                if let d = try num(g, "damp", "weights.gptq.") {
                    guard d >= 0, d <= 1 else {
                        throw .recipe(path: path, key: "weights.gptq.damp", reason: "must be in [0, 1]")
                    }
                    s.damp = d
                }
                if let i = try choice(g, "inputs", "weights.gptq.", ["quantized", "fp"]) {
                    s.inputs = GPTQSettings.Inputs(rawValue: i)!
                }
                r.gptq = s
            }
            guard !(r.fittedScales && r.gptq != nil) else {
                throw .recipe(
                    path: path, key: "weights.fitted_scales",
                    reason: "does not combine with \"gptq\" (GPTQ chooses the codes itself)")
            }
        }
        if let a = try obj(root, "activations", "") {
            try keys(a, ["format", "output_bf16"], "activations.")
            if let s = try choice(a, "format", "activations.", ["fp8_e4m3", "fp32"]) {
                r.activationsFP8 = s == "fp8_e4m3"
            }
            if let b = try bool(a, "output_bf16", "activations.") { r.outputBF16 = b }
        }
        if let s = try obj(root, "smoothing", "") {
            try keys(
                s,
                [
                    "gate_up_c", "down_c", "qkv_c", "vo_scalar", "smoothquant_alpha", "v_hadamard", "gate_up_strength",
                    "down_strength"
                ], "smoothing.")
            for (k, kp) in [
                ("gate_up_strength", \SmoothingPlan.gateUpStrength), ("down_strength", \SmoothingPlan.downStrength)
            ] {
                if let t = try num(s, k, "smoothing.") {
                    guard t >= 0, t <= 4 else {
                        throw .recipe(
                            path: path, key: "smoothing." + k, reason: "must be in [0, 4] (1 = the paper's scales)")
                    }
                    r.smoothing[keyPath: kp] = t
                }
            }
            if let b = try bool(s, "v_hadamard", "smoothing.") { r.smoothing.vHadamard = b }
            if let x = try num(s, "gate_up_c", "smoothing.") { r.smoothing.gateUpC = x }
            if let x = try num(s, "down_c", "smoothing.") { r.smoothing.downC = x }
            if let x = try num(s, "qkv_c", "smoothing.") { r.smoothing.qkvC = x }
            if let x = try num(s, "vo_scalar", "smoothing.") {
                guard x > 0 else {
                    throw .recipe(path: path, key: "smoothing.vo_scalar", reason: "must be positive (1 = off)")
                }
                r.smoothing.voScalar = x
            }
            r.smoothQuantAlpha = try num(s, "smoothquant_alpha", "smoothing.")
        }
        if let a = try obj(root, "attention", "") {
            try keys(
                a,
                [
                    "pre_rope_alpha", "pre_rope_shared_heads", "post_rope_beta", "post_rope_top_k", "q_format",
                    "kv_bits", "qk_hadamard", "kv_group_size", "kv_scale_search", "kv_signed_scales", "kv_center"
                ], "attention.")
            if let b = try bool(a, "kv_scale_search", "attention.") { r.kvScaleSearch = b }
            if let b = try bool(a, "kv_signed_scales", "attention.") {
                r.kvSignedScales = b
                guard r.kvScaleSearch || !b else {
                    throw .recipe(
                        path: path, key: "attention.kv_signed_scales",
                        reason: "needs \"kv_scale_search\": true (the search chooses each group's sign)")
                }
            }
            if let v = a["kv_center"], !v.isNull {
                guard v.stringValue == "bias" else {
                    throw .recipe(path: path, key: "attention.kv_center", reason: "must be null or \"bias\"")
                }
                r.kvCenterBias = true
            }
            if let b = try bool(a, "qk_hadamard", "attention.") { r.qkHadamard = b }
            if let g = try int(a, "kv_group_size", "attention.") {
                guard g >= 1 else {
                    throw .recipe(path: path, key: "attention.kv_group_size", reason: "must be positive")
                }
                r.kvGroupSize = g
            }
            if let b = try bool(a, "pre_rope_shared_heads", "attention.") { r.smoothing.preRopeSharedHeads = b }
            if a["pre_rope_alpha"] != nil { r.smoothing.preRopeAlpha = try num(a, "pre_rope_alpha", "attention.") }
            if a["post_rope_beta"] != nil { r.smoothing.postRopeBeta = try num(a, "post_rope_beta", "attention.") }
            if let k = try int(a, "post_rope_top_k", "attention.") { r.smoothing.postRopeTopK = k }
            if let s = try choice(a, "q_format", "attention.", ["fp8_e4m3", "fp32"]) { r.queryFP8 = s == "fp8_e4m3" }
            if let v = a["kv_bits"] {
                if v.isNull {
                    r.kvInt4 = false
                } else if v.intValue == 4 {
                    r.kvInt4 = true
                } else {
                    throw .recipe(path: path, key: "attention.kv_bits", reason: "must be 4 or null (full precision)")
                }
            }
        }
        if let v = root["search"], !v.isNull {
            guard let o = v.objectValue else {
                throw .recipe(path: path, key: "search", reason: "must be an object or null (off)")
            }
            try keys(
                o, ["alpha_beta", "post_rope_top_k", "gate_up_strength", "down_strength", "windows", "tokens"],
                "search.")
            var st = SearchSettings()
            func list(_ k: String, min lo: Double, max hi: Double) throws(QuantizationError) -> [Double] {
                guard let v = o[k], !v.isNull else { return [] }
                guard let a = v.arrayValue, a.count <= 16,
                    a.allSatisfy({ ($0.doubleValue).map { $0.isFinite && $0 >= lo && $0 <= hi } ?? false })
                else {
                    throw .recipe(
                        path: path, key: "search." + k,
                        reason: "must be a list of at most 16 numbers in [\(lo.formatted()), \(hi.formatted())]")
                }
                return a.map { $0.doubleValue! }
            }
            st.alphaBeta = try list("alpha_beta", min: 1e-3, max: 1e4).map { Float($0) }
            let ks = try list("post_rope_top_k", min: 1, max: 4096)
            guard ks.allSatisfy({ $0 == $0.rounded() }) else {
                throw .recipe(path: path, key: "search.post_rope_top_k", reason: "must be a list of whole numbers")
            }
            st.topK = ks.map { Int($0) }
            st.gateUpStrength = try list("gate_up_strength", min: 0, max: 4).map { Float($0) }
            st.downStrength = try list("down_strength", min: 0, max: 4).map { Float($0) }
            if let w = try int(o, "windows", "search.") {
                guard w >= 1 else { throw .recipe(path: path, key: "search.windows", reason: "must be at least 1") }
                st.windows = w
            }
            if let t = try int(o, "tokens", "search.") {
                guard t >= 16 else { throw .recipe(path: path, key: "search.tokens", reason: "must be at least 16") }
                st.tokens = t
            }
            r.search = st
        }
        if let l = try obj(root, "layers", "") {
            try keys(l, ["skip", "group_size"], "layers.")
            if let s = l["skip"] {
                guard let arr = s.arrayValue, arr.allSatisfy({ ($0.intValue ?? -1) >= 0 }) else {
                    throw .recipe(path: path, key: "layers.skip", reason: "must be an array of layer indices")
                }
                r.skipLayers = arr.map { $0.intValue! }
            }
            if let g = try obj(l, "group_size", "layers.") {
                for (k, v) in g.pairs {
                    guard let i = Int(k), i >= 0, let gs = v.intValue, gs >= 1 else {
                        throw .recipe(
                            path: path, key: "layers.group_size.\(k)",
                            reason: "must map a layer index to a positive group size")
                    }
                    r.groupSizeOverrides[i] = gs
                }
            }
        }
        if let st = r.search {
            func refuse(_ k: String, _ why: String) -> QuantizationError {
                .recipe(path: path, key: "search." + k, reason: why)
            }
            if r.gptq != nil { throw refuse("(object)", "cannot be combined with weights.gptq") }
            if r.smoothQuantAlpha != nil {
                throw refuse("(object)", "cannot be combined with smoothing.smoothquant_alpha")
            }
            if !r.skipLayers.isEmpty { throw refuse("(object)", "cannot be combined with layers.skip") }
            if !st.alphaBeta.isEmpty && (r.smoothing.preRopeAlpha == nil || r.smoothing.postRopeBeta == nil) {
                throw refuse("alpha_beta", "needs attention.pre_rope_alpha and attention.post_rope_beta on")
            }
            if !st.topK.isEmpty && r.smoothing.postRopeBeta == nil {
                throw refuse("post_rope_top_k", "needs attention.post_rope_beta on")
            }
            if !st.gateUpStrength.isEmpty && r.smoothing.gateUpC <= 0 {
                throw refuse("gate_up_strength", "needs smoothing.gate_up_c > 0")
            }
            if !st.downStrength.isEmpty && r.smoothing.downC <= 0 {
                throw refuse("down_strength", "needs smoothing.down_c > 0")
            }
        }
        return r
    }

    /// `fireq convert`'s default since 2026-12-07: Calibration/recipes/fireq-plus-4.json, built in
    /// (a test keeps the two equal). fireq-plus-3 — fireq-plus without the weight-statistics channel
    /// smoothing, K/V centred on the k/v biases, the scale search weighing errors by input energy ×
    /// weight magnitude — with signed group scales (docs/accuracy.md "Two models").
    public static let defaultJSON = #"""
        {
          "name": "fireq-plus-4",
          "description": "fireq convert's default since 2026-12-07 (issue #25): fireq-plus-3 with a wider group-scale search: signed scales (weights.signed_scales: negative E4M3 scales too, so each group's largest magnitude can take code -8 whichever its sign, as llama.cpp's Q4_0 does) and fitted scales (weights.fitted_scales: codes rounded with other scales, each with its least-squares scale, as llama.cpp's Q4_0 search). Otherwise fireq-plus-3: magnitude-weighted scale search, no channel smoothing, INT4 K/V centred on the k/v biases, RoPE-aware pre-/post-RoPE Q/K scaling, groups of 32 with FP8 scales, K/V groups of 16 with searched scales (docs/accuracy.md 'Two models').",
          "weights": {"bits": 4, "group_size": 32, "scale_format": "fp8_e4m3", "per_tensor_pow2": true, "fp8_rerounding": true, "scale_search": true, "scale_search_weights": "input_magnitude", "signed_scales": true, "fitted_scales": true},
          "activations": {"format": "fp8_e4m3", "output_bf16": false},
          "smoothing": {"gate_up_c": 0, "down_c": 0, "qkv_c": 0, "vo_scalar": 1},
          "attention": {"pre_rope_alpha": 8, "post_rope_beta": 8, "post_rope_top_k": 8, "q_format": "fp8_e4m3", "kv_bits": 4, "kv_group_size": 16, "kv_scale_search": true, "kv_center": "bias"}
        }
        """#
    public static let convertDefault: Recipe = try! parse(Data(defaultJSON.utf8), path: "built-in fireq-plus-4 recipe")

    /// Calibration/recipes/fireq-plus.json, built in (a test keeps the two equal): `fireq
    /// convert`'s default until 2026-12-06, the base of fireq-plus-search.
    public static let plusJSON = #"""
        {
          "name": "fireq-plus",
          "description": "FireQ W4A8KV4 beyond the paper: the paper's smoothing and RoPE-aware scaling, plus input-weighted group-scale search, groups of 32 (4.25 bits/weight, still below Q4_0's 4.5), INT4 K/V in groups of 16 channels with searched scales (docs/accuracy.md 'Beyond the paper'). Groups of 32 match the Q4_1 grid of the default model's source weights, which flatters it there.",
          "weights": {"bits": 4, "group_size": 32, "scale_format": "fp8_e4m3", "per_tensor_pow2": true, "fp8_rerounding": true, "scale_search": true},
          "activations": {"format": "fp8_e4m3", "output_bf16": false},
          "smoothing": {"gate_up_c": 0.0096, "down_c": 0.015, "qkv_c": 0, "vo_scalar": 0.9},
          "attention": {"pre_rope_alpha": 8, "post_rope_beta": 8, "post_rope_top_k": 8, "q_format": "fp8_e4m3", "kv_bits": 4, "kv_group_size": 16, "kv_scale_search": true}
        }
        """#
    public static let plus: Recipe = try! parse(Data(plusJSON.utf8), path: "built-in fireq-plus recipe")

    public static func load(_ path: String) throws(QuantizationError) -> Recipe {
        let d: [UInt8]
        do { d = try FileBytes.read(path, limit: FileBytes.smallJSONLimit) } catch {
            throw .recipe(path: path, key: "(file)", reason: error.reason)
        }
        return try parse(Data(d), path: path)
    }

    /// The recipe with every default filled in, as canonical JSON (stored in packed metadata).
    public var canonicalJSON: String {
        func f(_ x: Float?) -> JSONValue { x.map { .float($0) } ?? .null }
        var groups = JSONObject()
        for k in groupSizeOverrides.keys.sorted() { groups[String(k)] = .int(groupSizeOverrides[k]!) }
        let o = JSONObject(
            [
                ("name", .string(name)), ("description", .string(description)),
                (
                    "weights",
                    .object(
                        JSONObject(
                            [
                                ("bits", .int(4)), ("group_size", .int(groupSize)),
                                ("scale_format", .string(scaleFormat.rawValue)),
                                ("per_tensor_pow2", .bool(perTensorPowerOfTwo)),
                                ("fp8_rerounding", .bool(fp8Rerounding))
                            ]
                                + (scaleSearch ? [("scale_search", JSONValue.bool(true))] : [])
                                + (searchWeights != .input
                                    ? [("scale_search_weights", JSONValue.string(searchWeights.rawValue))] : [])
                                + (signedScales ? [("signed_scales", JSONValue.bool(true))] : [])
                                + (fittedScales ? [("fitted_scales", JSONValue.bool(true))] : [])
                                + (scaleSearchFloor != 0.5
                                    ? [("scale_search_floor", JSONValue.float(scaleSearchFloor))] : [])
                                + (gptq.map {
                                    [
                                        (
                                            "gptq",
                                            JSONValue.object(
                                                JSONObject([
                                                    ("damp", .float($0.damp)), ("inputs", .string($0.inputs.rawValue))
                                                ]))
                                        )
                                    ]
                                } ?? [])))
                ),
                (
                    "activations",
                    .object(
                        JSONObject([
                            ("format", .string(activationsFP8 ? "fp8_e4m3" : "fp32")),
                            ("output_bf16", .bool(outputBF16))
                        ]))
                ),
                (
                    "smoothing",
                    .object(
                        JSONObject(
                            [
                                ("gate_up_c", f(smoothing.gateUpC)), ("down_c", f(smoothing.downC)),
                                ("qkv_c", f(smoothing.qkvC)),
                                ("vo_scalar", f(smoothing.voScalar)), ("smoothquant_alpha", f(smoothQuantAlpha))
                            ]
                                + (smoothing.vHadamard ? [("v_hadamard", JSONValue.bool(true))] : [])
                                + (smoothing.gateUpStrength != 1
                                    ? [("gate_up_strength", f(smoothing.gateUpStrength))] : [])
                                + (smoothing.downStrength != 1 ? [("down_strength", f(smoothing.downStrength))] : [])))
                ),
                (
                    "attention",
                    .object(
                        JSONObject(
                            [("pre_rope_alpha", f(smoothing.preRopeAlpha))]
                                + (smoothing.preRopeSharedHeads
                                    ? [("pre_rope_shared_heads", JSONValue.bool(true))] : [])
                                + [
                                    ("post_rope_beta", f(smoothing.postRopeBeta)),
                                    ("post_rope_top_k", .int(smoothing.postRopeTopK)),
                                    ("q_format", .string(queryFP8 ? "fp8_e4m3" : "fp32")),
                                    ("kv_bits", kvInt4 ? .int(4) : .null)
                                ]
                                + (qkHadamard ? [("qk_hadamard", JSONValue.bool(true))] : [])
                                + (kvGroupSize.map { [("kv_group_size", JSONValue.int($0))] } ?? [])
                                + (kvScaleSearch ? [("kv_scale_search", JSONValue.bool(true))] : [])
                                + (kvSignedScales ? [("kv_signed_scales", JSONValue.bool(true))] : [])
                                + (kvCenterBias ? [("kv_center", JSONValue.string("bias"))] : [])))
                ),
                (
                    "layers",
                    .object(
                        JSONObject([
                            ("skip", .array(skipLayers.sorted().map { .int($0) })), ("group_size", .object(groups))
                        ]))
                )
            ] + (lmHeadInt8 ? [("lm_head", JSONValue.object(JSONObject([("format", .string("int8"))])))] : [])
                + (search.map { st in
                    [
                        (
                            "search",
                            JSONValue.object(
                                JSONObject([
                                    ("alpha_beta", .array(st.alphaBeta.map { .float($0) })),
                                    ("post_rope_top_k", .array(st.topK.map { .int($0) })),
                                    ("gate_up_strength", .array(st.gateUpStrength.map { .float($0) })),
                                    ("down_strength", .array(st.downStrength.map { .float($0) })),
                                    ("windows", .int(st.windows)), ("tokens", .int(st.tokens))
                                ]))
                        )
                    ]
                } ?? []))
        return JSONWriter.serialize(.object(o), sortedKeys: true)
    }

    /// Group size for a layer, checked against K; the error names the layer and lists divisors.
    public func groupSize(layer: Int, name: String, k: Int) throws(QuantizationError) -> Int {
        let g = groupSizeOverrides[layer] ?? groupSize
        guard k % g == 0 else {
            throw .groupSize(layer: name, k: k, groupSize: g, divisors: (1...k).filter { k % $0 == 0 && $0 >= 8 })
        }
        return g
    }
}
