import CalibrationStats
import Foundation
import JSONSupport
import Kernels
import LlamaReference
import LowPrecision
import ModelDescription
import PackedFormat
import TensorStore

/// calibrate → smooth → quantize → pack: writes a `fireq-packed` v1 folder (self-contained).
public struct Quantizer {
    public struct Summary: Sendable {
        public var linearBytes = 0, linearFP16Bytes = 0, totalBytes = 0, sourceBytes = 0
        public var perTensorScales: [String: Float] = [:]
    }

    /// Hugging Face's default `max_shard_size` (5 GB): the default model and anything up to ~9 B
    /// parameters' packed size stays one `model.safetensors`.
    public static let defaultMaxShardBytes = 5_000_000_000

    /// Refuses a recipe this model cannot take — a group size that does not divide a linear's
    /// inputs, a Hadamard option on a head_dim that is not a power of two, a K/V group that does
    /// not divide head_dim — with one sentence naming the key. `fireq convert` calls it before it
    /// takes the output's lock or runs any stage.
    public static func checkRecipe(_ recipe: Recipe, config c: ModelConfig) throws {
        typealias N = TensorNames
        let shapes: [(String, Int)] = [
            (N.q, c.hiddenSize), (N.k, c.hiddenSize), (N.v, c.hiddenSize),
            (N.o, c.qDim), (N.gate, c.hiddenSize), (N.up, c.hiddenSize), (N.down, c.intermediateSize)
        ]
        for i in 0..<c.layerCount where !recipe.skipLayers.contains(i) {
            for (n, k) in shapes { _ = try recipe.groupSize(layer: i, name: N.layer(i, n), k: k) }
        }
        if recipe.smoothing.vHadamard && (c.headDim & (c.headDim - 1)) != 0 {
            throw QuantizationError.recipe(
                path: recipe.name, key: "smoothing.v_hadamard",
                reason: "needs a power-of-two head_dim (this model's is \(c.headDim))")
        }
        if recipe.qkHadamard && (c.headDim & (c.headDim - 1)) != 0 {
            throw QuantizationError.recipe(
                path: recipe.name, key: "attention.qk_hadamard",
                reason: "needs a power-of-two head_dim (this model's is \(c.headDim))")
        }
        if let g = recipe.kvGroupSize, c.headDim % g != 0 {
            throw QuantizationError.recipe(
                path: recipe.name, key: "attention.kv_group_size",
                reason: "must divide head_dim \(c.headDim)")
        }
    }

    /// Quantizes `modelDir` with `recipe` and the statistics at `statsPath` into `outDir`
    /// (written to a temporary folder beside it and renamed when complete). Layers are written as
    /// they are quantized (peak memory: one layer plus the embeddings), into shards of at most
    /// `maxShardBytes` (a layer is never split; Formats/fireq-packed-v1.md "Shards").
    public static func run(
        modelDir: String, statsPath: String, recipe: Recipe, recipeJSON: String, outDir: String,
        toolVersion: String, threads: Int = 1, force: Bool = false, maxShardBytes: Int = Quantizer.defaultMaxShardBytes,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> Summary {
        let fm = FileManager.default
        if URL(fileURLWithPath: outDir).standardizedFileURL.resolvingSymlinksInPath().path
            == URL(fileURLWithPath: modelDir).standardizedFileURL.resolvingSymlinksInPath().path
        {
            throw QuantizationError.packed(
                path: outDir, reason: "is the source model's folder; choose another output folder")
        }
        let config = try ModelConfig(directory: modelDir)
        let ckpt = try Checkpoint(directory: modelDir)
        try TensorNames.validate(ckpt, config: config)
        let configBytes = FileBytes.readIfPresent(modelDir + "/config.json", limit: FileBytes.smallJSONLimit) ?? []
        let modelHash = try ckpt.modelHash(configBytes: configBytes)
        let stats = try StatsFile.read(statsPath, config: config)
        if stats.attributes["model_sha256"] != modelHash {
            throw QuantizationError.statsMismatch(
                path: statsPath, expected: modelHash, found: stats.attributes["model_sha256"] ?? "")
        }
        // Check the recipe against the model before any work.
        try checkRecipe(recipe, config: config)
        let c = config
        if recipe.kvCenterBias && c.attentionBias
            && stats.layers.contains(where: {
                $0.kPreRopePairNormMaxUnbiased == nil || $0.kPostRopeAbsmaxUnbiased == nil
            })
        {
            throw QuantizationError.packed(
                path: statsPath,
                reason:
                    "holds no statistics of the unbiased keys, which recipe '\(recipe.name)' (attention.kv_center) needs; re-run `fireq calibrate` with this version"
            )
        }
        if recipe.search != nil && stats.tokens == nil {
            throw QuantizationError.packed(
                path: statsPath,
                reason:
                    "holds no calibration tokens, which recipe '\(recipe.name)' (search) needs; re-run `fireq calibrate` with this version"
            )
        }
        if recipe.gptq != nil && stats.tokens == nil {
            throw QuantizationError.packed(
                path: statsPath,
                reason:
                    "holds no calibration tokens, which recipe '\(recipe.name)' (GPTQ) needs; re-run `fireq calibrate` with this version"
            )
        }
        if fm.fileExists(atPath: outDir) && !force {
            throw QuantizationError.packed(path: outDir, reason: "already exists (pass --force to replace it)")
        }
        var summary = Summary()
        let cfgJSON = (try? JSONParser.parse(configBytes)).map { JSONWriter.serialize($0, sortedKeys: true) } ?? "{}"
        let common: [String: String] = [
            "fireq.format": PackedFormat.name, "fireq.version": PackedFormat.version, "fireq.config": cfgJSON,
            "fireq.recipe": recipeJSON, "fireq.source_model_sha256": modelHash, "fireq.stats_sha256": stats.fileSHA256,
            "fireq.tool_version": toolVersion,
            "fireq.calibration": JSONWriter.serialize(
                .object(
                    JSONObject(
                        [
                            "source_kind", "source_path", "source_sha256", "samples", "seq_len", "tokens", "selection",
                            "seed"
                        ].compactMap { k in
                            stats.attributes[k].map { (k, JSONValue.string($0)) }
                        })), sortedKeys: true)
        ].merging(Self.sourceLicense(modelDir).map { ["fireq.source_license": $0] } ?? [:]) { a, _ in a }
        // Everything is written into a temporary folder, then renamed into place.
        let parent =
            (outDir as NSString).deletingLastPathComponent.isEmpty
            ? "." : (outDir as NSString).deletingLastPathComponent
        let tmp =
            parent + "/." + (outDir as NSString).lastPathComponent + ".tmp-\(ProcessInfo.processInfo.processIdentifier)"
        try? fm.removeItem(atPath: tmp)
        do {
            try fm.createDirectory(atPath: tmp, withIntermediateDirectories: false)
        } catch {
            throw QuantizationError.packed(
                path: outDir, reason: "cannot create the output folder (does '\(parent)' exist and is it writable?)")
        }
        var crc: [String: String] = [:]
        // The constant search's choices per layer (packed metadata `fireq.search`, per shard).
        var searched: [Int: JSONValue] = [:]
        let writer = ShardedSafetensorsWriter(folder: tmp, maxShardBytes: maxShardBytes) { names in
            var o = JSONObject()
            for n in names { o[n] = .string(crc[n]!) }
            var m = common
            m["fireq.crc32"] = JSONWriter.serialize(.object(o), sortedKeys: true)
            if let st = recipe.search {
                var layers = JSONObject()
                let inShard = Set(
                    names.compactMap { n -> Int? in
                        TensorNames.layerIndex(of: n)
                    })
                for i in inShard.sorted() { if let v = searched[i] { layers[String(i)] = v } }
                m["fireq.search"] = JSONWriter.serialize(
                    .object(
                        JSONObject([
                            ("windows", .int(st.windows)), ("tokens", .int(st.tokens)),
                            ("layers", .object(layers))
                        ])), sortedKeys: true)
            }
            return m
        }
        /// One group of tensors (kept in one shard), each written as soon as it is given.
        func emit(_ group: [TensorData]) throws {
            try writer.beginGroup(bytes: group.reduce(0) { $0 + $1.bytes.count })
            for t in group {
                crc[t.name] = t.bytes.withUnsafeBytes { PackedFormat.crc32Hex($0) }
                try writer.add(t)
            }
        }
        func raw(_ name: String) throws -> TensorData {
            let (f, t) = try ckpt.file(for: name)
            defer { f.releasePages(t) }
            return TensorData(name: name, dtype: t.dtype, shape: t.shape, bytes: [UInt8](f.rawBytes(t)))
        }
        /// A tensor copied as stored (`raw`, under a name the layer loop does not shadow).
        func copied(_ name: String) throws -> TensorData { try raw(name) }
        /// A folded norm, from its scales γ back to the stored weights (w = γ − offset), stored like `stored`.
        func storedNorm(_ name: String, _ scales: [Float]) throws -> TensorData {
            try stored(name, c.storedNormWeights(scales: scales), like: name)
        }
        /// A modified 1-D tensor, stored in its source precision (F32 and BF16 stay, others become F16).
        func stored(_ name: String, _ values: [Float], like source: String) throws -> TensorData {
            let (_, t) = try ckpt.file(for: source)
            let dtype: DType = t.dtype == .f32 || t.dtype == .bf16 ? t.dtype : .f16
            return TensorData(name: name, values: values, dtype: dtype, shape: [values.count])
        }
        // GPTQ: the calibration windows' hidden states, advanced layer by layer.
        let stream = try recipe.gptq.map { _ in
            try CalibrationStream(checkpoint: ckpt, config: c, tokens: stats.tokens!, threads: threads)
        }
        let searcher = try recipe.search.map { st in
            try ConstantSearch(
                checkpoint: ckpt, config: c,
                tokens: stats.tokens!.prefix(st.windows).map { Array($0.prefix(st.tokens)) },
                recipe: recipe, threads: threads)
        }
        do {
            try emit([try raw(TensorNames.embed)])
            try emit([try raw(TensorNames.finalNorm)])
            if !c.tieWordEmbeddings { try emit([try raw(TensorNames.lmHead)]) }
            for i in 0..<c.layerCount {
                let prefix = TensorNames.layerPrefix(i)
                var tensors: [TensorData] = []
                if recipe.skipLayers.contains(i) {
                    for name in ckpt.tensorNames where name.hasPrefix(prefix) { tensors.append(try raw(name)) }
                    if let stream {
                        stream.run(
                            try RowMajorLayer.load(ckpt, layer: i, config: c).referenceWeights(index: i, config: c),
                            observer: nil, advance: true)
                    }
                    try emit(tensors)
                    progress?(i + 1, c.layerCount)
                    continue
                }
                let raw = try RowMajorLayer.load(ckpt, layer: i, config: c)
                var L = raw
                let layerStats = Self.keyStatistics(stats.layers[i], recipe: recipe)
                let mats0 = Self.linears(of: raw, config: c)
                let groupSizes = try mats0.map { (n, _, _, k, _) throws -> Int in
                    try recipe.groupSize(layer: i, name: prefix + n, k: k)
                }
                var sqFactors: [InputTap: [Float]] = [:]
                if let a = recipe.smoothQuantAlpha {
                    sqFactors = SmoothQuant.apply(alpha: a, to: &L, stats: layerStats, config: c)
                }
                let outcome = try searcher?.choose(layer: i, raw: raw, stats: layerStats, groupSizes: groupSizes)
                if let outcome { searched[i] = outcome.json }
                let att = outcome?.attention ?? Folding.apply(recipe.smoothing, to: &L, stats: layerStats, config: c)
                if let outcome { L = outcome.layer }
                // What the input-aware rounding weighs each input channel by: diag(H) with GPTQ,
                // else E[x²] of the smoothed input (source statistics × the folds' factors²).
                var inputWeights: [InputTap: [Float]] = [:]
                var factors: [InputTap: [Double]] = [:]
                if let stream, let g = recipe.gptq {
                    let obs = HessianObserver(config: c, threads: threads)
                    stream.run(L.referenceWeights(index: i, config: c), observer: obs, advance: g.inputs == .fp)
                    for tap in InputTap.allCases {
                        let (h, d) = obs.hessian(tap)
                        guard let u = GPTQ.inverseCholeskyUpper(h, k: d.count, damp: Double(g.damp)) else {
                            throw QuantizationError.packed(
                                path: statsPath,
                                reason:
                                    "layer \(i)'s \(tap.rawValue) Hessian is not positive definite even with 10⁴× the dampening (are the calibration windows degenerate?)"
                            )
                        }
                        factors[tap] = u.u
                        inputWeights[tap] = d
                    }
                } else if recipe.scaleSearch && outcome == nil {  // (the search packed its linears already)
                    inputWeights = Self.inputWeights(
                        recipe: recipe, stats: layerStats, factors: [sqFactors, att.inputFactors], config: c)
                }
                let norms = TensorNames.norms(c)
                tensors.append(try storedNorm(prefix + norms.attentionInput, L.inputNorm))
                tensors.append(try storedNorm(prefix + norms.mlpInput, L.mlpInputNorm))
                // Sandwich norms: no fold touches them; copied as stored.
                for n in [norms.attentionOutput, norms.mlpOutput].compactMap({ $0 }) {
                    tensors.append(try copied(prefix + n))
                }
                let mats = Self.linears(of: L, config: c)
                let results = ResultSlots<PackedLinear>(count: mats.count)
                func quantizeLinear(_ j: Int, threads inner: Int) {
                    let (n, w, rows, k, tap) = mats[j]
                    results.set(
                        j,
                        Self.quantizeLinear(
                            w, name: prefix + n, rows: rows, k: k, groupSize: groupSizes[j], recipe: recipe,
                            gptqFactor: factors[tap], inputWeights: inputWeights[tap], threads: inner))
                }
                if let outcome {
                    for (j, l) in outcome.linears.enumerated() { results.set(j, l) }
                } else if factors.isEmpty && inputWeights.isEmpty {
                    // Plain rounding: the seven linears are independent: quantize them on `threads`
                    // threads, each result stored by index, so the output does not depend on the
                    // thread count.
                    Parallel.forEachChunk(mats.count, chunk: 1, threads: threads) { r in
                        for j in r { quantizeLinear(j, threads: 1) }
                    }
                } else {
                    // The scale search and GPTQ split each linear's rows over the threads instead
                    // (rows are independent): the seven linears differ up to 35× in size, so one per
                    // thread left a core idle (Qwen2.5-Coder-1.5B: 158 % CPU).
                    for j in 0..<mats.count { quantizeLinear(j, threads: threads) }
                }
                if let stream, recipe.gptq?.inputs == .quantized {
                    // The next layer's inputs: this layer with its quantized weights (ŵ / P, FP32 math).
                    var Q = L
                    for packed in results.values {
                        let qw = Int4Groups.Quantized(
                            q: packed.q, scales: packed.scales, rows: packed.n, k: packed.k, groupSize: packed.groupSize
                        )
                        let w = Int4Groups.dequantize(qw, fp8Rerounding: recipe.fp8Rerounding).map {
                            $0 * packed.perTensorScaleInv
                        }
                        switch String(packed.name.dropFirst(prefix.count)) {
                        case TensorNames.q: Q.q = w
                        case TensorNames.k: Q.k = w
                        case TensorNames.v: Q.v = w
                        case TensorNames.o: Q.o = w
                        case TensorNames.gate: Q.gate = w
                        case TensorNames.up: Q.up = w
                        default: Q.down = w
                        }
                    }
                    stream.run(Q.referenceWeights(index: i, config: c), observer: nil, advance: true)
                }
                for packed in results.values {
                    let name = packed.name, rows = packed.n, k = packed.k, p = 1 / packed.perTensorScaleInv
                    let ts = packed.tensors()
                    tensors += ts
                    summary.linearBytes += ts.reduce(0) { $0 + $1.bytes.count }
                    summary.linearFP16Bytes += rows * k * 2
                    summary.perTensorScales[name] = p
                }
                if let n = L.qNorm { tensors.append(try storedNorm(prefix + TensorNames.qNorm, n)) }
                if let n = L.kNorm { tensors.append(try storedNorm(prefix + TensorNames.kNorm, n)) }
                for (b, n) in [(L.qBias, TensorNames.q), (L.kBias, TensorNames.k), (L.vBias, TensorNames.v)] {
                    if let b { tensors.append(try stored(prefix + n + ".bias", b, like: prefix + n + ".bias")) }
                }
                if !att.keyChannels.isEmpty {
                    let s = prefix + TensorNames.qkvSupply
                    for (side, channels, scales) in [
                        ("k", att.keyChannels, att.keyScales), ("q", att.queryChannels, att.queryScales)
                    ] {
                        tensors.append(
                            TensorData(
                                name: s + "post_\(side)_smooth.top_k_indices", int32: channels, shape: [channels.count])
                        )
                        tensors.append(
                            TensorData(
                                name: s + "post_\(side)_smooth.smooth", values: scales, dtype: .bf16,
                                shape: [scales.count]))
                    }
                }
                try emit(tensors)
                progress?(i + 1, c.layerCount)
            }
            let files = try writer.finish(indexMetadata: [
                "fireq.format": PackedFormat.name, "fireq.version": PackedFormat.version
            ])
            for f in ["config.json"] + ModelFiles.serving where fm.fileExists(atPath: modelDir + "/" + f) {
                try fm.copyItem(atPath: modelDir + "/" + f, toPath: tmp + "/" + f)
            }
            // A replaced folder is first renamed aside (atomic), so outDir is never half-deleted.
            let old = tmp + "-old"
            if fm.fileExists(atPath: outDir) { try fm.moveItem(atPath: outDir, toPath: old) }
            try fm.moveItem(atPath: tmp, toPath: outDir)
            try? fm.removeItem(atPath: old)
            summary.totalBytes = files.reduce(0) {
                $0 + ((try? fm.attributesOfItem(atPath: outDir + "/" + $1)[.size] as? Int) ?? 0)
            }
        } catch {
            try? fm.removeItem(atPath: tmp)
            // A write that failed inside the temporary folder is reported against the output the
            // user named ("No space left on device", "File too large"), not the folder that is gone.
            if let e = error as? TensorStoreError, case .writeFailed(let p, let r) = e, p.hasPrefix(tmp) {
                throw QuantizationError.packed(path: outDir, reason: "cannot be written (\(r))")
            }
            throw error
        }
        summary.sourceBytes = ckpt.files.reduce(0) {
            $0 + ((try? fm.attributesOfItem(atPath: $1.path)[.size] as? Int) ?? 0)
        }
        return summary
    }
}

extension Quantizer {
    /// A layer's seven linears in packed order: name, row-major weights, rows, K, input.
    static func linears(of L: RowMajorLayer, config c: ModelConfig) -> [(String, [Float], Int, Int, InputTap)] {
        typealias N = TensorNames
        return [
            (N.q, L.q, c.qDim, c.hiddenSize, .attn), (N.k, L.k, c.kvDim, c.hiddenSize, .attn),
            (N.v, L.v, c.kvDim, c.hiddenSize, .attn), (N.o, L.o, c.hiddenSize, c.qDim, .oProj),
            (N.gate, L.gate, c.intermediateSize, c.hiddenSize, .mlp),
            (N.up, L.up, c.intermediateSize, c.hiddenSize, .mlp),
            (N.down, L.down, c.hiddenSize, c.intermediateSize, .downProj)
        ]
    }

    /// The statistics the folds use for layer `s`: with `attention.kv_center: "bias"` on a model
    /// with a k_proj bias, the key statistics of k − b replace those of k (the quantized key is
    /// then k − b; Formats/calibration-stats.md).
    static func keyStatistics(_ s: LayerStatistics, recipe: Recipe) -> LayerStatistics {
        guard recipe.kvCenterBias, let pre = s.kPreRopePairNormMaxUnbiased, let post = s.kPostRopeAbsmaxUnbiased else {
            return s
        }
        var u = s
        u.kPreRopePairNormMax = pre
        u.kPostRopeAbsmax = post
        return u
    }

    /// E[x²] of each smoothed linear input, what scale search weighs the rounding error by: the
    /// statistics' `mean_sq` times the square of each fold's factor (`factors`: what SmoothQuant
    /// and the FireQ folds multiplied each input channel by).
    static func inputWeights(
        recipe: Recipe, stats: LayerStatistics, factors: [[InputTap: [Float]]], config c: ModelConfig
    ) -> [InputTap: [Float]] {
        var out: [InputTap: [Float]] = [:]
        for tap in InputTap.allCases {
            var d = stats.inputs[tap]!.meanSq
            for f in factors.map({ $0[tap] }) { if let f { for j in 0..<d.count { d[j] *= f[j] * f[j] } } }
            if tap == .oProj && recipe.smoothing.vHadamard {
                // The rotation mixes each head's channels: its per-channel E[x²] is not
                // known from the statistics, so every channel of a head gets the head's mean.
                let D = c.headDim
                for h in 0..<(d.count / D) {
                    let m = d[(h * D)..<((h + 1) * D)].reduce(0, +) / Float(D)
                    for j in 0..<D { d[h * D + j] = m }
                }
            }
            out[tap] = d
        }
        return out
    }

    /// One linear as the recipe packs it: P, then GPTQ (`gptqFactor`), searched scales
    /// (`inputWeights`) or plain rounding.
    static func quantizeLinear(
        _ w: [Float], name: String, rows: Int, k: Int, groupSize g: Int, recipe: Recipe,
        gptqFactor u: [Double]?, inputWeights d: [Float]?, threads inner: Int
    ) -> PackedLinear {
        let p: Float =
            recipe.perTensorPowerOfTwo && recipe.scaleFormat == .fp8e4m3
            ? Int4Groups.powerOfTwoScale(w, rows: rows, k: k, groupSize: g) : 1
        let wp = p == 1 ? w : w.map { $0 * p }
        let qw: Int4Groups.Quantized
        if let u {
            qw = GPTQ.quantize(
                wp, rows: rows, k: k, groupSize: g, u: u, inputWeights: d!, search: recipe.scaleSearch,
                weighting: recipe.searchWeights, signed: recipe.signedScales, floor: recipe.scaleSearchFloor,
                scaleFormat: recipe.scaleFormat, reround: recipe.fp8Rerounding, threads: inner)
        } else if let d {
            qw = GPTQ.quantizeSearched(
                wp, rows: rows, k: k, groupSize: g, inputWeights: d, weighting: recipe.searchWeights,
                signed: recipe.signedScales, fitted: recipe.fittedScales, floor: recipe.scaleSearchFloor,
                scaleFormat: recipe.scaleFormat, reround: recipe.fp8Rerounding, threads: inner)
        } else {
            qw = Int4Groups.quantize(wp, rows: rows, k: k, groupSize: g, scaleFormat: recipe.scaleFormat)
        }
        return PackedLinear(
            name: name, n: rows, k: k, groupSize: g, q: qw.q, scales: qw.scales,
            scaleFormat: recipe.scaleFormat.rawValue, perTensorScaleInv: 1 / p)
    }
}

/// Slots written by index from concurrent work items (each slot exactly once).
final class ResultSlots<T>: @unchecked Sendable {
    private var slots: [T?]
    private let lock = NSLock()
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ v: T) { lock.lock(); slots[i] = v; lock.unlock() }
    var values: [T] { slots.map { $0! } }
    func value(_ i: Int) -> T { lock.lock(); defer { lock.unlock() }; return slots[i]! }
}

/// SmoothQuant (Xiao et al. 2023) as a baseline: s_j = max|X_j|^α / max_i|W_ij|^(1−α) on the
/// q∥k∥v and gate∥up inputs, folded into the RMSNorm weights (calibration absmax from the stats).
public enum SmoothQuant {
    /// Returns what each input channel of the q∥k∥v and gate∥up inputs was multiplied by.
    @discardableResult
    public static func apply(
        alpha: Float, to L: inout RowMajorLayer, stats: LayerStatistics, config c: ModelConfig
    ) -> [InputTap: [Float]] {
        let H = c.hiddenSize
        func scales(_ w: [Float], rows: Int, act: [Float]) -> [Float] {
            (0..<H).map { j in
                var wm: Float = 0
                for r in 0..<rows { wm = max(wm, abs(w[r * H + j])) }
                let a = act[j]
                guard a > 0, wm > 0 else { return 1 }
                return Float(pow(Double(a), Double(alpha)) / pow(Double(wm), Double(1 - alpha)))
            }
        }
        let sa = scales(L.q + L.k + L.v, rows: c.qDim + 2 * c.kvDim, act: stats.inputs[.attn]!.absmax)
        Folding.scaleColumns(&L.q, rows: c.qDim, k: H, by: sa.map { $0 })
        Folding.scaleColumns(&L.k, rows: c.kvDim, k: H, by: sa)
        Folding.scaleColumns(&L.v, rows: c.kvDim, k: H, by: sa)
        for j in 0..<H { L.inputNorm[j] /= sa[j] }
        let sm = scales(L.gate + L.up, rows: 2 * c.intermediateSize, act: stats.inputs[.mlp]!.absmax)
        Folding.scaleColumns(&L.gate, rows: c.intermediateSize, k: H, by: sm)
        Folding.scaleColumns(&L.up, rows: c.intermediateSize, k: H, by: sm)
        for j in 0..<H { L.mlpInputNorm[j] /= sm[j] }
        return [.attn: sa.map { 1 / $0 }, .mlp: sm.map { 1 / $0 }]
    }
}

extension Quantizer {
    /// The `license:` of the source's model card (README.md YAML front matter), if it states one:
    /// what the exports' model cards repeat.
    public static func sourceLicense(_ modelDir: String) -> String? {
        guard let data = FileBytes.readIfPresent(modelDir + "/README.md", limit: FileBytes.smallJSONLimit),
            let text = String(bytes: data, encoding: .utf8), text.hasPrefix("---\n")
        else { return nil }
        for line in text.dropFirst(4).split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "---" { break }
            if line.hasPrefix("license:") {
                let v = line.dropFirst("license:".count).trimmingCharacters(in: .whitespaces).trimmingCharacters(
                    in: CharacterSet(charactersIn: "\"'"))
                return v.isEmpty ? nil : v
            }
        }
        return nil
    }
}
