import CalibrationStats
import Foundation
import JSONSupport
import Kernels
import LlamaReference
import LowPrecision
import ModelDescription
import PackedFormat
import Runtime
import TensorStore

/// FireQ's constants chosen per layer on calibration-set block-output error (recipe `search`,
/// Formats/recipe-schema.md): α = β, post-RoPE top-k and the gate∥up / down channel-scale
/// strengths, one at a time, each candidate scored by Σ (ŷ − y)² of the quantized layer — run with
/// the recipe's run-time numerics — against the source layer on the unquantized model's inputs.
final class ConstantSearch {
    let recipe: Recipe, settings: Recipe.SearchSettings, config: ModelConfig, threads: Int
    /// The calibration windows advanced through the source layers (FP32 reference).
    let stream: CalibrationStream
    /// The current layer's input, kept while the stream holds its output; and a working copy.
    let input: FloatBuffer, work: FloatBuffer
    let blocks: QuantizedBlocks
    let checkpoint: Checkpoint

    /// What the search decided for one layer: the folded layer, its post-RoPE scales and packed
    /// linears (exactly what the recipe with those constants writes), and the record for
    /// `fireq.search`.
    struct Outcome {
        var layer: RowMajorLayer, attention: AttentionSmoothing, linears: [PackedLinear]
        /// The chosen constants, the chosen error and the recipe values' error.
        var json: JSONValue
    }

    init(checkpoint: Checkpoint, config c: ModelConfig, tokens: [[Int32]], recipe: Recipe, threads: Int) throws {
        self.recipe = recipe
        settings = recipe.search!
        config = c
        self.threads = threads
        self.checkpoint = checkpoint
        stream = try CalibrationStream(checkpoint: checkpoint, config: c, tokens: tokens, threads: threads)
        input = FloatBuffer(count: stream.windows * stream.seqLen * c.hiddenSize, zeroed: false)
        work = FloatBuffer(count: input.count, zeroed: false)
        blocks = QuantizedBlocks(config: c, layers: [], numerics: recipe.blockNumerics, threads: threads)
    }

    /// Chooses layer `i`'s constants (`raw`: the source layer) and advances the stream past it.
    func choose(layer i: Int, raw: RowMajorLayer, stats: LayerStatistics, groupSizes: [Int]) throws -> Outcome {
        let c = config, prefix = TensorNames.layerPrefix(i)
        let n = input.count
        input.pointer.update(from: stream.hidden.pointer, count: n)
        stream.run(raw.referenceWeights(index: i, config: c), observer: nil, advance: true)
        let target = stream.hidden.pointer
        // Linears already quantized for this layer, keyed by the constants they depend on.
        var memo: [String: PackedLinear] = [:]
        func memoKey(_ j: Int, _ p: SmoothingPlan) -> String {
            switch j {
            case 0, 1: return "\(j)|\(p.preRopeAlpha ?? 0)|\(p.postRopeBeta ?? 0)|\(p.postRopeTopK)"
            case 4: return "\(j)|\(p.gateUpStrength)"
            case 5: return "\(j)|\(p.gateUpStrength)|\(p.downStrength)"
            case 6: return "\(j)|\(p.downStrength)"
            default: return "\(j)"
            }
        }
        func build(_ plan: SmoothingPlan) throws -> (RowMajorLayer, AttentionSmoothing, [PackedLinear]) {
            var L = raw
            let att = Folding.apply(plan, to: &L, stats: stats, config: c)
            let weights =
                recipe.scaleSearch
                ? Quantizer.inputWeights(recipe: recipe, stats: stats, factors: [att.inputFactors], config: c) : [:]
            let mats = Quantizer.linears(of: L, config: c)
            let keys = mats.indices.map { memoKey($0, plan) }
            let missing = mats.indices.filter { memo[keys[$0]] == nil }
            let slots = ResultSlots<PackedLinear>(count: mats.count)
            let (recipe, prefixName) = (self.recipe, prefix)
            Parallel.forEachChunk(missing.count, chunk: 1, threads: threads) { r in
                for m in r {
                    let j = missing[m]
                    let (name, w, rows, k, tap) = mats[j]
                    slots.set(
                        j,
                        Quantizer.quantizeLinear(
                            w, name: prefixName + name, rows: rows, k: k, groupSize: groupSizes[j], recipe: recipe,
                            gptqFactor: nil, inputWeights: weights[tap], threads: 1))
                }
            }
            for j in missing { memo[keys[j]] = slots.value(j) }
            return (L, att, mats.indices.map { memo[keys[$0]]! })
        }
        /// A 1-D tensor as the packed file stores it (Quantizer's `stored`: F32 and BF16 stay, others F16).
        func stored(_ v: [Float]?, like part: String) throws -> [Float]? {
            guard let v else { return nil }
            let (_, t) = try checkpoint.file(for: prefix + part)
            switch t.dtype {
            case .f32: return v
            case .bf16: return v.map { BF16.round($0) }
            default: return v.map { FP16.decode(FP16.encode($0)) }
            }
        }
        /// Norm scales γ as the runtime will see them: the stored w = γ − offset, rounded like `stored`, + offset.
        func storedNorm(_ g: [Float]?, like part: String) throws -> [Float]? {
            try stored(g.map { config.storedNormWeights(scales: $0) }, like: part).map { config.normScales(stored: $0) }
        }
        func score(_ L: RowMajorLayer, _ att: AttentionSmoothing, _ linears: [PackedLinear]) throws -> Double {
            let norms = TensorNames.norms(config)
            var outputNorms: (attention: [Float], mlp: [Float])? = nil
            if let a = L.attentionOutputNorm, let m = L.mlpOutputNorm { outputNorms = (a, m) }
            let biases: [[Float]?] = [
                try stored(L.qBias, like: TensorNames.q + ".bias"), try stored(L.kBias, like: TensorNames.k + ".bias"),
                try stored(L.vBias, like: TensorNames.v + ".bias"), nil, nil, nil, nil
            ]
            let q = try QuantizedBlocks.QuantizedLayer(
                inputNorm: try storedNorm(L.inputNorm, like: norms.attentionInput)!,
                mlpInputNorm: try storedNorm(L.mlpInputNorm, like: norms.mlpInput)!, outputNorms: outputNorms,
                linears: Array(zip(linears, biases)).map { (linear: $0.0, bias: $0.1) },
                keyChannels: att.keyChannels, keyScales: att.keyScales.map { BF16.round($0) },
                queryChannels: att.queryChannels, queryScales: att.queryScales.map { BF16.round($0) },
                qNorm: try storedNorm(L.qNorm, like: TensorNames.qNorm),
                kNorm: try storedNorm(L.kNorm, like: TensorNames.kNorm),
                fp8Rerounding: recipe.fp8Rerounding)
            work.pointer.update(from: input.pointer, count: n)
            blocks.run(q, index: i, hidden: work.pointer, batch: stream.windows, seqLen: stream.seqLen)
            var e = 0.0
            for j in 0..<n { let d = Double(work.pointer[j]) - Double(target[j]); e += d * d }
            return e
        }
        var plan = recipe.smoothing
        var (bestL, bestAtt, bestLin) = try build(plan)
        let recipeError = try score(bestL, bestAtt, bestLin)
        var best = recipeError
        var tried: Set<String> = [planKey(plan)]
        func consider(_ candidate: SmoothingPlan) throws {
            guard tried.insert(planKey(candidate)).inserted else { return }
            let (L, att, lin) = try build(candidate)
            let e = try score(L, att, lin)
            if e < best { best = e; plan = candidate; bestL = L; bestAtt = att; bestLin = lin }
        }
        for v in settings.alphaBeta { var p = plan; p.preRopeAlpha = v; p.postRopeBeta = v; try consider(p) }
        for v in settings.topK { var p = plan; p.postRopeTopK = v; try consider(p) }
        for v in settings.gateUpStrength { var p = plan; p.gateUpStrength = v; try consider(p) }
        for v in settings.downStrength { var p = plan; p.downStrength = v; try consider(p) }
        var o = JSONObject()
        if !settings.alphaBeta.isEmpty { o["alpha_beta"] = .float(plan.preRopeAlpha!) }
        if !settings.topK.isEmpty { o["post_rope_top_k"] = .int(plan.postRopeTopK) }
        if !settings.gateUpStrength.isEmpty { o["gate_up_strength"] = .float(plan.gateUpStrength) }
        if !settings.downStrength.isEmpty { o["down_strength"] = .float(plan.downStrength) }
        o["error"] = .double(best)
        o["recipe_error"] = .double(recipeError)
        return Outcome(layer: bestL, attention: bestAtt, linears: bestLin, json: .object(o))
    }

    private func planKey(_ p: SmoothingPlan) -> String {
        "\(p.preRopeAlpha ?? 0)|\(p.postRopeBeta ?? 0)|\(p.postRopeTopK)|\(p.gateUpStrength)|\(p.downStrength)"
    }
}

extension Recipe {
    /// The run-time numerics this recipe's packed model runs with (what `QuantizedModel` reads
    /// back from the stored recipe).
    public var blockNumerics: BlockNumerics {
        var n = BlockNumerics()
        n.activationsFP8 = activationsFP8; n.outputBF16 = outputBF16; n.queryFP8 = queryFP8; n.kvInt4 = kvInt4
        n.qkHadamard = qkHadamard; n.kvGroupSize = kvGroupSize; n.kvScaleSearch = kvScaleSearch;
        n.kvSignedScales = kvSignedScales
        n.fp8Rerounding = fp8Rerounding
        n.kvCenter = kvCenterBias
        return n
    }
}
