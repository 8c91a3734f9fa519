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
    /// The scale search weighs each group's error by its inputs' covariance block, eᵀBe, instead of
    /// Σ d e² (`weights.scale_search_covariance`).
    public var scaleSearchCovariance = false
    /// GPTQ error-compensating rounding (nil = plain rounding).
    public var gptq: GPTQSettings? = nil
    public struct GPTQSettings: Sendable, Equatable {
        /// λ: dampening added to H's diagonal, as a fraction of its mean.
        public var damp: Float = 0.01
        /// Where layer i's calibration inputs come from: the model with layers < i already
        /// quantized (`quantized`) or the smoothed FP model (`fp`).
        public var inputs: Inputs = .quantized
        public enum Inputs: String, Sendable, Equatable, CaseIterable { case quantized, fp }
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

    /// Parses a recipe; `path` names the file in errors. Read by `JSONFields` (null = the key's
    /// default, except where the schema gives null a meaning: off), one section at a time, then
    /// the checks that span sections.
    public static func parse(_ data: Data, path: String) throws(QuantizationError) -> Recipe {
        let json: JSONValue
        do { json = try JSONParser.parse(data) } catch {
            throw .recipe(path: path, key: "(file)", reason: "is not valid JSON: \(error.description)")
        }
        do {
            let root = try JSONFields(document: json, nulls: .absent)
            try root.checkKeys(
                [
                    "name", "description", "weights", "activations", "smoothing", "attention", "layers", "search",
                    "lm_head"
                ],
                what: "a recipe key")
            var r = Recipe()
            if let h = try root.object("lm_head") {
                try h.checkKeys(["format"], what: "a recipe key")
                if let f = try h.choice("format", among: ["source", "int8"]) { r.lmHeadInt8 = f == "int8" }
            }
            if let s = try root.string("name") { r.name = s }
            if let s = try root.string("description") { r.description = s }
            if let w = try root.object("weights") { try r.readWeights(w) }
            if let a = try root.object("activations") {
                try a.checkKeys(["format", "output_bf16"], what: "a recipe key")
                if let s = try a.choice("format", among: ["fp8_e4m3", "fp32"]) { r.activationsFP8 = s == "fp8_e4m3" }
                if let b = try a.bool("output_bf16") { r.outputBF16 = b }
            }
            if let s = try root.object("smoothing") { try r.readSmoothing(s) }
            if let a = try root.object("attention") { try r.readAttention(a) }
            if root.contains("search") && !root.isNull("search") { try r.readSearch(root) }
            if let l = try root.object("layers") { try r.readLayers(l) }
            try r.checkSearchCombinations()
            if r.scaleSearchCovariance && r.smoothing.vHadamard {
                // The search's blocks are the source model's, scaled by the folds (a diagonal
                // change); the rotation mixes each head's o_proj inputs (Formats/calibration-stats.md).
                throw JSONFieldError(
                    key: "weights.scale_search_covariance",
                    reason: "does not combine with smoothing.v_hadamard (the rotation mixes each head's o_proj inputs)")
            }
            return r
        } catch let e as JSONFieldError {
            throw .recipe(path: path, key: e.key, reason: e.reason)
        } catch {
            throw .recipe(path: path, key: "(file)", reason: String(describing: error))
        }
    }

    /// `weights`: the INT4 grid, its scales and how they are chosen.
    private mutating func readWeights(_ w: JSONFields) throws(JSONFieldError) {
        try w.checkKeys(
            [
                "bits", "group_size", "scale_format", "per_tensor_pow2", "fp8_rerounding", "scale_search",
                "scale_search_weights", "signed_scales", "fitted_scales", "scale_search_floor",
                "scale_search_covariance", "gptq"
            ], what: "a recipe key")
        if let b = try w.int("bits"), b != 4 { throw w.error("bits", "must be 4 (INT4)") }
        if let g = try w.int("group_size", in: 1...Int.max) { groupSize = g }
        if let s = try w.choice("scale_format", as: Int4Groups.ScaleFormat.self) { scaleFormat = s }
        if let b = try w.bool("per_tensor_pow2") { perTensorPowerOfTwo = b }
        if let b = try w.bool("fp8_rerounding") { fp8Rerounding = b }
        if let b = try w.bool("scale_search") { scaleSearch = b }
        if let v = try w.choice("scale_search_weights", as: GPTQ.SearchWeights.self) {
            searchWeights = v
            guard scaleSearch || v == .input else {
                throw w.error("scale_search_weights", "needs \"scale_search\": true (it weighs the search's error)")
            }
        }
        // Options that extend the scale search: true needs it.
        func extendsSearch(_ key: String, _ why: String) throws(JSONFieldError) -> Bool {
            guard let b = try w.bool(key), b else { return false }
            guard scaleSearch else { throw w.error(key, "needs \"scale_search\": true (\(why))") }
            return true
        }
        signedScales = try extendsSearch("signed_scales", "the search chooses each group's sign")
        fittedScales = try extendsSearch("fitted_scales", "it extends the search")
        scaleSearchCovariance = try extendsSearch("scale_search_covariance", "it weighs the search's error")
        if let f = try w.number("scale_search_floor", in: 0.5...1) {
            guard scaleSearch || f == 0.5 else {
                throw w.error("scale_search_floor", "needs \"scale_search\": true (it bounds the search's candidates)")
            }
            scaleSearchFloor = Float(f)
        }
        if w.contains("gptq") && !w.isNull("gptq") {
            guard let g = try? w.object("gptq") else { throw w.error("gptq", "must be an object or null (off)") }
            try g.checkKeys(["damp", "inputs"], what: "a recipe key")
            var s = GPTQSettings()
            if let d = try g.number("damp", in: 0...1) { s.damp = Float(d) }
            if let i = try g.choice("inputs", as: GPTQSettings.Inputs.self) { s.inputs = i }
            gptq = s
        }
        guard !(fittedScales && gptq != nil) else {
            throw w.error("fitted_scales", "does not combine with \"gptq\" (GPTQ chooses the codes itself)")
        }
        guard !(scaleSearchCovariance && gptq != nil) else {
            throw w.error(
                "scale_search_covariance", "does not combine with \"gptq\" (GPTQ weighs the error by all of H itself)")
        }
    }

    /// `smoothing`: the channel-wise folds' constants and strengths, SmoothQuant, the V rotation.
    private mutating func readSmoothing(_ s: JSONFields) throws(JSONFieldError) {
        try s.checkKeys(
            [
                "gate_up_c", "down_c", "qkv_c", "vo_scalar", "smoothquant_alpha", "v_hadamard", "gate_up_strength",
                "down_strength"
            ], what: "a recipe key")
        for (k, kp) in [
            ("gate_up_strength", \SmoothingPlan.gateUpStrength), ("down_strength", \SmoothingPlan.downStrength)
        ] {
            if let t = try s.number(k, in: 0...4) { smoothing[keyPath: kp] = Float(t) }
        }
        if let b = try s.bool("v_hadamard") { smoothing.vHadamard = b }
        if let x = try s.number("gate_up_c") { smoothing.gateUpC = Float(x) }
        if let x = try s.number("down_c") { smoothing.downC = Float(x) }
        if let x = try s.number("qkv_c") { smoothing.qkvC = Float(x) }
        if let x = try s.number("vo_scalar") {
            guard x > 0 else { throw s.error("vo_scalar", "must be positive (1 = off), found \(x)") }
            smoothing.voScalar = Float(x)
        }
        smoothQuantAlpha = try s.number("smoothquant_alpha").map { Float($0) }
    }

    /// `attention`: Q/K scaling, query and K/V formats, the K/V groups and centres.
    private mutating func readAttention(_ a: JSONFields) throws(JSONFieldError) {
        try a.checkKeys(
            [
                "pre_rope_alpha", "pre_rope_shared_heads", "post_rope_beta", "post_rope_top_k", "q_format",
                "kv_bits", "qk_hadamard", "kv_group_size", "kv_scale_search", "kv_signed_scales", "kv_center"
            ], what: "a recipe key")
        if let b = try a.bool("kv_scale_search") { kvScaleSearch = b }
        if let b = try a.bool("kv_signed_scales") {
            kvSignedScales = b
            guard kvScaleSearch || !b else {
                throw a.error(
                    "kv_signed_scales", "needs \"kv_scale_search\": true (the search chooses each group's sign)")
            }
        }
        if a.contains("kv_center") && !a.isNull("kv_center") {
            guard a["kv_center"]?.stringValue == "bias" else { throw a.error("kv_center", "must be null or \"bias\"") }
            kvCenterBias = true
        }
        if let b = try a.bool("qk_hadamard") { qkHadamard = b }
        if let g = try a.int("kv_group_size", in: 1...Int.max) { kvGroupSize = g }
        if let b = try a.bool("pre_rope_shared_heads") { smoothing.preRopeSharedHeads = b }
        // Present and null: off (absent: the default).
        if a.contains("pre_rope_alpha") { smoothing.preRopeAlpha = try a.number("pre_rope_alpha").map { Float($0) } }
        if a.contains("post_rope_beta") { smoothing.postRopeBeta = try a.number("post_rope_beta").map { Float($0) } }
        if let k = try a.int("post_rope_top_k") { smoothing.postRopeTopK = k }
        if let s = try a.choice("q_format", among: ["fp8_e4m3", "fp32"]) { queryFP8 = s == "fp8_e4m3" }
        if a.contains("kv_bits") {
            guard a.isNull("kv_bits") || a["kv_bits"]?.intValue == 4 else {
                throw a.error("kv_bits", "must be 4 or null (full precision)")
            }
            kvInt4 = !a.isNull("kv_bits")
        }
    }

    /// `search`: the per-layer constant search's candidates and calibration slice.
    private mutating func readSearch(_ root: JSONFields) throws(JSONFieldError) {
        guard let o = try? root.object("search") else { throw root.error("search", "must be an object or null (off)") }
        try o.checkKeys(
            ["alpha_beta", "post_rope_top_k", "gate_up_strength", "down_strength", "windows", "tokens"],
            what: "a recipe key")
        var st = SearchSettings()
        func list(_ k: String, min lo: Double, max hi: Double) throws(JSONFieldError) -> [Double] {
            let what = "must be a list of at most 16 numbers in [\(lo.formatted()), \(hi.formatted())]"
            let found: [JSONValue]?
            do { found = try o.array(k) } catch { throw o.error(k, what) }
            guard let a = found else { return [] }
            guard a.count <= 16, a.allSatisfy({ ($0.doubleValue).map { $0.isFinite && $0 >= lo && $0 <= hi } ?? false })
            else { throw o.error(k, what) }
            return a.map { $0.doubleValue! }
        }
        st.alphaBeta = try list("alpha_beta", min: 1e-3, max: 1e4).map { Float($0) }
        let ks = try list("post_rope_top_k", min: 1, max: 4096)
        guard ks.allSatisfy({ $0 == $0.rounded() }) else {
            throw o.error("post_rope_top_k", "must be a list of whole numbers")
        }
        st.topK = ks.map { Int($0) }
        st.gateUpStrength = try list("gate_up_strength", min: 0, max: 4).map { Float($0) }
        st.downStrength = try list("down_strength", min: 0, max: 4).map { Float($0) }
        if let w = try o.int("windows", in: 1...Int.max) { st.windows = w }
        if let t = try o.int("tokens", in: 16...Int.max) { st.tokens = t }
        search = st
    }

    /// `layers`: layers left unquantized and per-layer group sizes.
    private mutating func readLayers(_ l: JSONFields) throws(JSONFieldError) {
        try l.checkKeys(["skip", "group_size"], what: "a recipe key")
        if l.contains("skip") {
            guard let arr = try? l.array("skip"), arr.allSatisfy({ ($0.intValue ?? -1) >= 0 }) else {
                throw l.error("skip", "must be an array of layer indices")
            }
            skipLayers = arr.map { $0.intValue! }
        }
        if let g = try l.object("group_size") {
            for (k, v) in g.object.pairs {
                guard let i = Int(k), i >= 0, let gs = v.intValue, gs >= 1 else {
                    throw g.error(k, "must map a layer index to a positive group size")
                }
                groupSizeOverrides[i] = gs
            }
        }
    }

    /// What the constant search cannot be combined with, and the constants it needs on.
    private func checkSearchCombinations() throws(JSONFieldError) {
        guard let st = search else { return }
        func refuse(_ k: String, _ why: String) -> JSONFieldError { JSONFieldError(key: "search." + k, reason: why) }
        if gptq != nil { throw refuse("(object)", "cannot be combined with weights.gptq") }
        if scaleSearchCovariance {
            throw refuse("(object)", "cannot be combined with weights.scale_search_covariance")
        }
        if smoothQuantAlpha != nil { throw refuse("(object)", "cannot be combined with smoothing.smoothquant_alpha") }
        if !skipLayers.isEmpty { throw refuse("(object)", "cannot be combined with layers.skip") }
        if !st.alphaBeta.isEmpty && (smoothing.preRopeAlpha == nil || smoothing.postRopeBeta == nil) {
            throw refuse("alpha_beta", "needs attention.pre_rope_alpha and attention.post_rope_beta on")
        }
        if !st.topK.isEmpty && smoothing.postRopeBeta == nil {
            throw refuse("post_rope_top_k", "needs attention.post_rope_beta on")
        }
        if !st.gateUpStrength.isEmpty && smoothing.gateUpC <= 0 {
            throw refuse("gate_up_strength", "needs smoothing.gate_up_c > 0")
        }
        if !st.downStrength.isEmpty && smoothing.downC <= 0 {
            throw refuse("down_strength", "needs smoothing.down_c > 0")
        }
    }

    /// `fireq convert`'s default since 2026-12-07: Calibration/recipes/fireq-plus-6.json, built in
    /// (a test keeps the two equal). fireq-plus-3 — fireq-plus without the weight-statistics channel
    /// smoothing, K/V centred on the k/v biases, the scale search weighing errors by input energy ×
    /// weight magnitude — with signed and fitted group scales (fireq-plus-4), the search weighing
    /// each group's error by its inputs' covariance block (docs/accuracy.md "Covariance-weighted
    /// search").
    public static let defaultJSON = #"""
        {
          "name": "fireq-plus-6",
          "description": "fireq convert's default since 2026-12-07 (issue #25): fireq-plus-4 with the covariance-weighted group-scale search (weights.scale_search_covariance: each group's error is e^T B e with B the G x G block of the input's second moments over the calibration windows, recomputed in the quantizer, instead of the per-channel E[x^2] that assumes the inputs uncorrelated). Otherwise fireq-plus-4: signed and fitted FP8 group scales of 32, magnitude-weighted search, no channel smoothing, INT4 K/V centred on the k/v biases, RoPE-aware pre-/post-RoPE Q/K scaling, K/V groups of 16 with searched scales (docs/accuracy.md 'Covariance-weighted search').",
          "weights": {"bits": 4, "group_size": 32, "scale_format": "fp8_e4m3", "per_tensor_pow2": true, "fp8_rerounding": true, "scale_search": true, "scale_search_weights": "input_magnitude", "signed_scales": true, "fitted_scales": true, "scale_search_covariance": true},
          "activations": {"format": "fp8_e4m3", "output_bf16": false},
          "smoothing": {"gate_up_c": 0, "down_c": 0, "qkv_c": 0, "vo_scalar": 1},
          "attention": {"pre_rope_alpha": 8, "post_rope_beta": 8, "post_rope_top_k": 8, "q_format": "fp8_e4m3", "kv_bits": 4, "kv_group_size": 16, "kv_scale_search": true, "kv_center": "bias"}
        }
        """#
    public static let convertDefault: Recipe = try! parse(Data(defaultJSON.utf8), path: "built-in fireq-plus-6 recipe")

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
                                + (scaleSearchCovariance ? [("scale_search_covariance", JSONValue.bool(true))] : [])
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
