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
        _ = try groupSizes(recipe: recipe, config: c)
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

    /// Each quantized layer's seven linears as (input, group size), in `linears(of:)` order; a
    /// group size that does not divide a linear's inputs is refused with the recipe's sentence.
    static func groupSizes(recipe: Recipe, config c: ModelConfig) throws -> [Int: [CovarianceBlockObserver.Key]] {
        typealias N = TensorNames
        let inputs: [(String, Int, InputTap)] = [
            (N.q, c.hiddenSize, .attn), (N.k, c.hiddenSize, .attn), (N.v, c.hiddenSize, .attn),
            (N.o, c.qDim, .oProj), (N.gate, c.hiddenSize, .mlp), (N.up, c.hiddenSize, .mlp),
            (N.down, c.intermediateSize, .downProj)
        ]
        var out: [Int: [CovarianceBlockObserver.Key]] = [:]
        for i in 0..<c.layerCount where !recipe.skipLayers.contains(i) {
            out[i] = try inputs.map { (n, k, tap) in
                .init(tap: tap, g: try recipe.groupSize(layer: i, name: N.layer(i, n), k: k))
            }
        }
        return out
    }

    /// The (input, group size) pairs whose covariance blocks each layer's search needs (empty
    /// unless the recipe has `weights.scale_search_covariance` and no constant search).
    public static func covarianceKeys(recipe: Recipe, config c: ModelConfig) throws -> CovarianceBlockCollector.Keys {
        guard recipe.scaleSearchCovariance && recipe.search == nil else { return [:] }
        return try groupSizes(recipe: recipe, config: c).mapValues { Set($0) }
    }

    /// Quantizes `modelDir` with `recipe` and the statistics at `statsPath` into `outDir`
    /// (written to a temporary folder beside it and renamed when complete). Layers are written as
    /// they are quantized (peak memory: one layer plus the embeddings), into shards of at most
    /// `maxShardBytes` (a layer is never split; Formats/fireq-packed-v1.md "Shards").
    ///
    /// Four named steps: `Plan` (everything read and checked before any work), then per layer
    /// `smooth` (folds or the constant search, and what the rounding weighs), `quantize` (the
    /// seven linears) and `layerTensors` (what the layer writes), each group emitted into a
    /// `PackedOutput` that renames the folder into place when complete.
    public static func run(
        modelDir: String, statsPath: String, recipe: Recipe, recipeJSON: String, outDir: String,
        toolVersion: String, threads: Int = 1, force: Bool = false, maxShardBytes: Int = Quantizer.defaultMaxShardBytes,
        covariance: CovarianceBlockCollector? = nil, note: ((String) -> Void)? = nil,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> Summary {
        let plan = try Plan(
            modelDir: modelDir, statsPath: statsPath, recipe: recipe, recipeJSON: recipeJSON, outDir: outDir,
            toolVersion: toolVersion, force: force)
        let c = plan.config, ckpt = plan.checkpoint
        // The covariance search's blocks: from the caller's calibration pass (`fireq convert`),
        // else from the same pass over the statistics file's windows, run here first (its
        // layers count as the first half of the progress).
        let keys = try covarianceKeys(recipe: recipe, config: c)
        var blocks: [Int: [CovarianceBlockObserver.Key: [Double]]] = [:]
        var steps = (done: 0, total: c.layerCount)
        if !keys.isEmpty {
            if let covariance, covariance.isComplete {
                blocks = covariance.layers
            } else {
                steps.total *= 2
                let windows = plan.stats.tokens!
                note?(
                    "covariance search: a forward pass over the \(windows.count) × \(windows.first?.count ?? 0) calibration windows first (steps 1–\(c.layerCount) of \(steps.total))"
                )
                let collector = CovarianceBlockCollector(config: c, keys: keys, threads: threads)
                try Calibrator(directory: modelDir, threads: threads).run(
                    windows, observer: collector, onLayer: { _ in }
                ) { done, _ in progress?(done, steps.total) }
                collector.finish()
                blocks = collector.layers
                steps.done = c.layerCount
            }
        }
        let out = try PackedOutput(plan: plan, maxShardBytes: maxShardBytes)
        var summary = Summary()
        do {
            // GPTQ: the calibration windows' hidden states, advanced layer by layer.
            let stream = try (recipe.gptq != nil ? () : nil).map { _ in
                try CalibrationStream(checkpoint: ckpt, config: c, tokens: plan.stats.tokens!, threads: threads)
            }
            let searcher = try recipe.search.map { st in
                try ConstantSearch(
                    checkpoint: ckpt, config: c,
                    tokens: plan.stats.tokens!.prefix(st.windows).map { Array($0.prefix(st.tokens)) },
                    recipe: recipe, threads: threads)
            }
            try out.emit([try plan.copied(TensorNames.embed)])
            try out.emit([try plan.copied(TensorNames.finalNorm)])
            if !c.tieWordEmbeddings { try out.emit([try plan.copied(TensorNames.lmHead)]) }
            for i in 0..<c.layerCount {
                if recipe.skipLayers.contains(i) {
                    try out.emit(try skippedLayer(i, plan: plan, stream: stream))
                    progress?(steps.done + i + 1, steps.total)
                    continue
                }
                let s = try smooth(
                    layer: i, plan: plan, searcher: searcher, stream: stream, covariance: blocks.removeValue(forKey: i),
                    threads: threads)
                if let o = s.searched { out.searched[i] = o.json }
                let linears = quantize(s, plan: plan, threads: threads)
                if let stream, recipe.gptq?.inputs == .quantized {
                    advance(stream, past: s, quantized: linears, plan: plan)
                }
                try out.emit(try layerTensors(s, linears: linears, plan: plan, summary: &summary))
                progress?(steps.done + i + 1, steps.total)
            }
            summary.totalBytes = try out.finish()
        } catch {
            throw out.abort(error)
        }
        summary.sourceBytes = ckpt.files.reduce(0) {
            $0 + ((try? FileManager.default.attributesOfItem(atPath: $1.path)[.size] as? Int) ?? 0)
        }
        return summary
    }
}

// MARK: - The steps

extension Quantizer {
    /// Step 1: everything a run reads — config, checkpoint, statistics (matched to the model by
    /// its hash), the recipe checked against the model — and the metadata every shard carries,
    /// all before any work; a refusal names the file and what is wrong.
    struct Plan {
        let modelDir: String, statsPath: String, outDir: String
        let recipe: Recipe
        let config: ModelConfig
        let checkpoint: Checkpoint
        let stats: StatsFile.Contents
        /// `fireq.*` entries of every shard's metadata (Formats/fireq-packed-v1.md), less the
        /// per-shard `fireq.crc32` and `fireq.search`.
        let metadata: [String: String]

        init(
            modelDir: String, statsPath: String, recipe: Recipe, recipeJSON: String, outDir: String,
            toolVersion: String, force: Bool
        ) throws {
            if URL(fileURLWithPath: outDir).standardizedFileURL.resolvingSymlinksInPath().path
                == URL(fileURLWithPath: modelDir).standardizedFileURL.resolvingSymlinksInPath().path
            {
                throw QuantizationError.packed(
                    path: outDir, reason: "is the source model's folder; choose another output folder")
            }
            let config = try ModelConfig(directory: modelDir)
            let ckpt = try Checkpoint(directory: modelDir)
            try TensorNames.validate(ckpt, config: config)
            let configBytes =
                FileBytes.readIfPresent(modelDir + "/config.json", limit: FileBytes.smallJSONLimit) ?? []
            let modelHash = try ckpt.modelHash(configBytes: configBytes)
            let stats = try StatsFile.read(statsPath, config: config)
            if stats.attributes["model_sha256"] != modelHash {
                throw QuantizationError.statsMismatch(
                    path: statsPath, expected: modelHash, found: stats.attributes["model_sha256"] ?? "")
            }
            try checkRecipe(recipe, config: config)
            try Self.checkStatistics(stats, path: statsPath, recipe: recipe, config: config)
            if FileManager.default.fileExists(atPath: outDir) && !force {
                throw QuantizationError.packed(path: outDir, reason: "already exists (pass --force to replace it)")
            }
            (self.modelDir, self.statsPath, self.outDir) = (modelDir, statsPath, outDir)
            (self.recipe, self.config, checkpoint, self.stats) = (recipe, config, ckpt, stats)
            let cfgJSON =
                (try? JSONParser.parse(configBytes)).map { JSONWriter.serialize($0, sortedKeys: true) } ?? "{}"
            let calibrationKeys = [
                "source_kind", "source_path", "source_sha256", "samples", "seq_len", "tokens", "selection", "seed"
            ]
            let calibration = JSONObject(
                calibrationKeys.compactMap { k in stats.attributes[k].map { (k, JSONValue.string($0)) } })
            metadata = [
                "fireq.format": PackedFormat.name, "fireq.version": PackedFormat.version, "fireq.config": cfgJSON,
                "fireq.recipe": recipeJSON, "fireq.source_model_sha256": modelHash,
                "fireq.stats_sha256": stats.fileSHA256, "fireq.tool_version": toolVersion,
                "fireq.calibration": JSONWriter.serialize(.object(calibration), sortedKeys: true)
            ].merging(Quantizer.sourceLicense(modelDir).map { ["fireq.source_license": $0] } ?? [:]) { a, _ in a }
        }

        /// Refuses statistics that lack what the recipe needs (written by an older version).
        static func checkStatistics(
            _ stats: StatsFile.Contents, path: String, recipe: Recipe, config c: ModelConfig
        ) throws {
            func lacking(_ what: String, _ option: String) -> QuantizationError {
                .packed(
                    path: path,
                    reason:
                        "holds no \(what), which recipe '\(recipe.name)' (\(option)) needs; re-run `fireq calibrate` with this version"
                )
            }
            if recipe.kvCenterBias && c.attentionBias
                && stats.layers.contains(where: {
                    $0.kPreRopePairNormMaxUnbiased == nil || $0.kPostRopeAbsmaxUnbiased == nil
                })
            {
                throw lacking("statistics of the unbiased keys", "attention.kv_center")
            }
            if recipe.search != nil && stats.tokens == nil { throw lacking("calibration tokens", "search") }
            if recipe.gptq != nil && stats.tokens == nil { throw lacking("calibration tokens", "GPTQ") }
            if recipe.scaleSearchCovariance && stats.tokens == nil {
                throw lacking("calibration tokens", "weights.scale_search_covariance")
            }
        }

        /// A tensor copied as stored.
        func copied(_ name: String) throws -> TensorData {
            let (f, t) = try checkpoint.file(for: name)
            defer { f.releasePages(t) }
            return TensorData(name: name, dtype: t.dtype, shape: t.shape, bytes: [UInt8](f.rawBytes(t)))
        }

        /// A modified 1-D tensor, stored in its source precision (F32 and BF16 stay, others become F16).
        func stored(_ name: String, _ values: [Float], like source: String) throws -> TensorData {
            let (_, t) = try checkpoint.file(for: source)
            let dtype: DType = t.dtype == .f32 || t.dtype == .bf16 ? t.dtype : .f16
            return TensorData(name: name, values: values, dtype: dtype, shape: [values.count])
        }

        /// A folded norm, from its scales γ back to the stored weights (w = γ − offset), stored like itself.
        func storedNorm(_ name: String, _ scales: [Float]) throws -> TensorData {
            try stored(name, config.storedNormWeights(scales: scales), like: name)
        }
    }

    /// The packed folder being written: a temporary folder beside `outDir`, its shards, each
    /// tensor's CRC-32 and the constant search's choices per layer (per-shard metadata).
    final class PackedOutput {
        let outDir: String, modelDir: String, tmp: String
        private var writer: ShardedSafetensorsWriter!
        private var crc: [String: String] = [:]
        /// The constant search's choices per layer (packed metadata `fireq.search`, per shard).
        var searched: [Int: JSONValue] = [:]

        init(plan: Plan, maxShardBytes: Int) throws {
            let fm = FileManager.default
            (outDir, modelDir) = (plan.outDir, plan.modelDir)
            let parent =
                (outDir as NSString).deletingLastPathComponent.isEmpty
                ? "." : (outDir as NSString).deletingLastPathComponent
            tmp =
                parent + "/." + (outDir as NSString).lastPathComponent
                + ".tmp-\(ProcessInfo.processInfo.processIdentifier)"
            try? fm.removeItem(atPath: tmp)
            do {
                try fm.createDirectory(atPath: tmp, withIntermediateDirectories: false)
            } catch {
                throw QuantizationError.packed(
                    path: outDir, reason: "cannot create the output folder (does '\(parent)' exist and is it writable?)"
                )
            }
            let common = plan.metadata, search = plan.recipe.search
            writer = ShardedSafetensorsWriter(folder: tmp, maxShardBytes: maxShardBytes) { [unowned self] names in
                var o = JSONObject()
                for n in names { o[n] = .string(self.crc[n]!) }
                var m = common
                m["fireq.crc32"] = JSONWriter.serialize(.object(o), sortedKeys: true)
                if let st = search {
                    var layers = JSONObject()
                    let inShard = Set(names.compactMap { TensorNames.layerIndex(of: $0) })
                    for i in inShard.sorted() { if let v = self.searched[i] { layers[String(i)] = v } }
                    m["fireq.search"] = JSONWriter.serialize(
                        .object(
                            JSONObject([
                                ("windows", .int(st.windows)), ("tokens", .int(st.tokens)), ("layers", .object(layers))
                            ])), sortedKeys: true)
                }
                return m
            }
        }

        /// One group of tensors (kept in one shard), each written as soon as it is given.
        func emit(_ group: [TensorData]) throws {
            try writer.beginGroup(bytes: group.reduce(0) { $0 + $1.bytes.count })
            for t in group {
                crc[t.name] = t.bytes.withUnsafeBytes { PackedFormat.crc32Hex($0) }
                try writer.add(t)
            }
        }

        /// Writes the index, copies the config and serving files, and renames the folder into
        /// place (a replaced folder is first renamed aside, so `outDir` is never half-deleted).
        /// Returns the packed files' total size.
        func finish() throws -> Int {
            let fm = FileManager.default
            let files = try writer.finish(indexMetadata: [
                "fireq.format": PackedFormat.name, "fireq.version": PackedFormat.version
            ])
            for f in ["config.json"] + ModelFiles.serving where fm.fileExists(atPath: modelDir + "/" + f) {
                try fm.copyItem(atPath: modelDir + "/" + f, toPath: tmp + "/" + f)
            }
            let old = tmp + "-old"
            if fm.fileExists(atPath: outDir) { try fm.moveItem(atPath: outDir, toPath: old) }
            try fm.moveItem(atPath: tmp, toPath: outDir)
            try? fm.removeItem(atPath: old)
            return files.reduce(0) {
                $0 + ((try? fm.attributesOfItem(atPath: outDir + "/" + $1)[.size] as? Int) ?? 0)
            }
        }

        /// Removes the temporary folder; returns the error to throw. A write that failed inside it
        /// is reported against the output the user named ("No space left on device", "File too
        /// large"), not the folder that is gone.
        func abort(_ error: Error) -> Error {
            try? FileManager.default.removeItem(atPath: tmp)
            if let e = error as? TensorStoreError, case .writeFailed(let p, let r) = e, p.hasPrefix(tmp) {
                return QuantizationError.packed(path: outDir, reason: "cannot be written (\(r))")
            }
            return error
        }
    }

    /// A layer the recipe skips (`layers.skip`): its tensors copied as stored; GPTQ's stream
    /// advances through it unquantized.
    static func skippedLayer(_ i: Int, plan: Plan, stream: CalibrationStream?) throws -> [TensorData] {
        let prefix = TensorNames.layerPrefix(i)
        let tensors = try plan.checkpoint.tensorNames.filter { $0.hasPrefix(prefix) }.map { try plan.copied($0) }
        if let stream {
            stream.run(
                try RowMajorLayer.load(plan.checkpoint, layer: i, config: plan.config).referenceWeights(
                    index: i, config: plan.config),
                observer: nil, advance: true)
        }
        return tensors
    }

    /// A layer after step 2: folded weights, the run-time post-RoPE scales, each linear's group
    /// size, and what the input-aware rounding weighs each input channel by.
    struct SmoothedLayer {
        let index: Int
        var layer: RowMajorLayer
        var attention: AttentionSmoothing
        var groupSizes: [Int]
        /// The constant search's outcome (its linears are already packed), if the recipe searches.
        var searched: ConstantSearch.Outcome?
        /// GPTQ's inverse-Cholesky factors and diag(H) per input, or scale search's E[x²].
        var gptqFactors: [InputTap: [Double]] = [:]
        var inputWeights: [InputTap: [Float]] = [:]
        /// The covariance search's diagonal blocks of C per (input, group size).
        var covariance: [CovarianceBlockObserver.Key: [Double]] = [:]
    }

    /// Step 2: SmoothQuant (baseline), then the FireQ folds with the recipe's constants or the
    /// constant search's choice, then what the rounding weighs: diag(H) with GPTQ (the stream
    /// run through the smoothed layer), else E[x²] of the smoothed inputs for scale search, and
    /// for the covariance search the source model's blocks (`covariance`) scaled by the folds.
    static func smooth(
        layer i: Int, plan: Plan, searcher: ConstantSearch?, stream: CalibrationStream?,
        covariance: [CovarianceBlockObserver.Key: [Double]]? = nil, threads: Int
    ) throws -> SmoothedLayer {
        let c = plan.config, recipe = plan.recipe, prefix = TensorNames.layerPrefix(i)
        let raw = try RowMajorLayer.load(plan.checkpoint, layer: i, config: c)
        var L = raw
        let layerStats = keyStatistics(plan.stats.layers[i], recipe: recipe)
        let groupSizes = try linears(of: raw, config: c).map { (n, _, _, k, _) throws -> Int in
            try recipe.groupSize(layer: i, name: prefix + n, k: k)
        }
        var sqFactors: [InputTap: [Float]] = [:]
        if let a = recipe.smoothQuantAlpha {
            sqFactors = SmoothQuant.apply(alpha: a, to: &L, stats: layerStats, config: c)
        }
        let outcome = try searcher?.choose(layer: i, raw: raw, stats: layerStats, groupSizes: groupSizes)
        let att = outcome?.attention ?? Folding.apply(recipe.smoothing, to: &L, stats: layerStats, config: c)
        if let outcome { L = outcome.layer }
        var s = SmoothedLayer(index: i, layer: L, attention: att, groupSizes: groupSizes, searched: outcome)
        if recipe.scaleSearchCovariance && outcome == nil {
            guard let covariance else { preconditionFailure("layer \(i): no covariance blocks") }
            let factors = [sqFactors, att.inputFactors]
            s.inputWeights = inputWeights(recipe: recipe, stats: layerStats, factors: factors, config: c)
            for (key, b) in covariance {
                s.covariance[key] = factors.compactMap { $0[key.tap] }.reduce(b) {
                    CovarianceBlockObserver.scaled($0, g: key.g, by: $1)
                }
            }
        } else if let stream, let g = recipe.gptq {
            let obs = HessianObserver(config: c, threads: threads)
            stream.run(L.referenceWeights(index: i, config: c), observer: obs, advance: g.inputs == .fp)
            for tap in InputTap.allCases {
                let (h, d) = obs.hessian(tap)
                guard let u = GPTQ.inverseCholeskyUpper(h, k: d.count, damp: Double(g.damp)) else {
                    throw QuantizationError.packed(
                        path: plan.statsPath,
                        reason:
                            "layer \(i)'s \(tap.rawValue) Hessian is not positive definite even with 10⁴× the dampening (are the calibration windows degenerate?)"
                    )
                }
                s.gptqFactors[tap] = u.u
                s.inputWeights[tap] = d
            }
        } else if recipe.scaleSearch && outcome == nil {  // (the search packed its linears already)
            s.inputWeights = inputWeights(
                recipe: recipe, stats: layerStats, factors: [sqFactors, att.inputFactors], config: c)
        }
        return s
    }

    /// Step 3: the layer's seven linears packed, in `linears(of:)` order.
    static func quantize(_ s: SmoothedLayer, plan: Plan, threads: Int) -> [PackedLinear] {
        if let o = s.searched { return o.linears }
        let prefix = TensorNames.layerPrefix(s.index)
        let mats = linears(of: s.layer, config: plan.config)
        let results = ResultSlots<PackedLinear>(count: mats.count)
        func quantizeLinear(_ j: Int, threads inner: Int) {
            let (n, w, rows, k, tap) = mats[j]
            results.set(
                j,
                Self.quantizeLinear(
                    w, name: prefix + n, rows: rows, k: k, groupSize: s.groupSizes[j], recipe: plan.recipe,
                    gptqFactor: s.gptqFactors[tap], inputWeights: s.inputWeights[tap], threads: inner,
                    covariance: s.covariance[.init(tap: tap, g: s.groupSizes[j])]))
        }
        if s.gptqFactors.isEmpty && s.inputWeights.isEmpty {
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
        return results.values
    }

    /// GPTQ with `inputs: "quantized"`: the next layer's inputs come from this layer with its
    /// quantized weights (ŵ / P, FP32 math).
    static func advance(
        _ stream: CalibrationStream, past s: SmoothedLayer, quantized: [PackedLinear], plan: Plan
    ) {
        let prefix = TensorNames.layerPrefix(s.index)
        var Q = s.layer
        for packed in quantized {
            let qw = Int4Groups.Quantized(
                q: packed.q, scales: packed.scales, rows: packed.n, k: packed.k, groupSize: packed.groupSize)
            let w = Int4Groups.dequantize(qw, fp8Rerounding: plan.recipe.fp8Rerounding).map {
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
        stream.run(Q.referenceWeights(index: s.index, config: plan.config), observer: nil, advance: true)
    }

    /// Step 4: what the layer writes, in packed order — its norms (folded ones stored back,
    /// sandwich norms copied), the packed linears, q/k norms, biases and the post-RoPE scales.
    static func layerTensors(
        _ s: SmoothedLayer, linears: [PackedLinear], plan: Plan, summary: inout Summary
    ) throws -> [TensorData] {
        let prefix = TensorNames.layerPrefix(s.index), L = s.layer, att = s.attention
        var tensors: [TensorData] = []
        let norms = TensorNames.norms(plan.config)
        tensors.append(try plan.storedNorm(prefix + norms.attentionInput, L.inputNorm))
        tensors.append(try plan.storedNorm(prefix + norms.mlpInput, L.mlpInputNorm))
        // Sandwich norms: no fold touches them; copied as stored.
        for n in [norms.attentionOutput, norms.mlpOutput].compactMap({ $0 }) {
            tensors.append(try plan.copied(prefix + n))
        }
        for packed in linears {
            let ts = packed.tensors()
            tensors += ts
            summary.linearBytes += ts.reduce(0) { $0 + $1.bytes.count }
            summary.linearFP16Bytes += packed.n * packed.k * 2
            summary.perTensorScales[packed.name] = 1 / packed.perTensorScaleInv
        }
        if let n = L.qNorm { tensors.append(try plan.storedNorm(prefix + TensorNames.qNorm, n)) }
        if let n = L.kNorm { tensors.append(try plan.storedNorm(prefix + TensorNames.kNorm, n)) }
        for (b, n) in [(L.qBias, TensorNames.q), (L.kBias, TensorNames.k), (L.vBias, TensorNames.v)] {
            if let b { tensors.append(try plan.stored(prefix + n + ".bias", b, like: prefix + n + ".bias")) }
        }
        if !att.keyChannels.isEmpty {
            let supply = prefix + TensorNames.qkvSupply
            for (side, channels, scales) in [
                ("k", att.keyChannels, att.keyScales), ("q", att.queryChannels, att.queryScales)
            ] {
                tensors.append(
                    TensorData(
                        name: supply + "post_\(side)_smooth.top_k_indices", int32: channels, shape: [channels.count]))
                tensors.append(
                    TensorData(
                        name: supply + "post_\(side)_smooth.smooth", values: scales, dtype: .bf16,
                        shape: [scales.count]))
            }
        }
        return tensors
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
        gptqFactor u: [Double]?, inputWeights d: [Float]?, threads inner: Int, covariance: [Double]? = nil
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
                scaleFormat: recipe.scaleFormat, reround: recipe.fp8Rerounding, threads: inner, covariance: covariance)
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
