import CalibrationStats
import Foundation
import LlamaReference
import Quantization
import TensorStore
import Testing
import Tokenizer

/// Smoothing folded into the weights keeps the model's function (FIREQ-METHOD.md §2.1, §3.1).
@Suite(.serialized) struct SmoothingFoldTests {
    /// Relative budget: max |Δlogit| / max |logit| between the smoothed and original FP32 model.
    static let relativeTolerance: Float = 1e-4

    @Test func smoothedUnquantizedModelKeepsGoldenLogits() throws {
        let original = try ModelTests.model()
        let c = original.config
        let cal = try Calibrator(directory: TestPaths.model, threads: 2)
        let tok = try Tokenizer(directory: TestPaths.model)
        let w = try CalibrationWindows.load(
            .text(TestPaths.sharedData + "/tinyshakespeare.txt"), tokenizer: tok, vocabSize: c.vocabSize, samples: 2,
            seqLen: 128)
        var stats: [LayerStatistics] = []
        try cal.run(w.windows, onLayer: { stats.append($0) })
        // The paper's recipe values, then the same with V rotated (Hadamard, undone in o_proj).
        var rotated = SmoothingPlan()
        rotated.vHadamard = true
        for plan in [SmoothingPlan(), rotated] {
            var layers: [LlamaLayerWeights] = []
            var sawPostRope = false
            for i in 0..<c.layerCount {
                var L = try RowMajorLayer.load(cal.checkpoint, layer: i, config: c)
                let before = L
                let att = Folding.apply(plan, to: &L, stats: stats[i], config: c)
                #expect(L != before)
                sawPostRope = sawPostRope || !att.keyChannels.isEmpty
                #expect(att.keyChannels.count >= 8 * c.kvHeadCount && att.keyChannels.count <= 16 * c.kvHeadCount)
                #expect(att.queryChannels.count == att.keyChannels.count * (c.headCount / c.kvHeadCount))
                layers.append(L.referenceWeights(index: i, config: c))
            }
            #expect(sawPostRope)
            let smoothed = LlamaModel(
                config: c, embed: original.embed, layers: layers, finalNorm: original.finalNorm,
                lmHead: original.lmHead, threads: 2)
            let prompts = try TestPaths.jsonObject(TestPaths.golden + "/logits-prompts.json") as! [[String: Any]]
            for p in prompts {
                let ids = (p["ids"] as! [NSNumber]).map { $0.int32Value }
                let a = original.logits(ids), b = smoothed.logits(ids)
                let scale = a.map(abs).max()!
                let worst = zip(a, b).map { abs($0 - $1) }.max()!
                #expect(
                    worst / scale <= Self.relativeTolerance,
                    "v_hadamard \(plan.vHadamard): max |Δ| \(worst) of max |logit| \(scale)")
            }
        }
    }

    /// The normalised Sylvester Hadamard matrix: ±1/√n, symmetric, H·H = I (n = 64: ±1/8 exactly).
    @Test func hadamardIsOrthogonal() {
        let h4 = Folding.hadamard(4)
        #expect(h4 == [0.5, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, -0.5, 0.5, 0.5, -0.5, -0.5, 0.5, -0.5, -0.5, 0.5])
        let n = 64, h = Folding.hadamard(n)
        #expect(h.allSatisfy { abs($0) == 0.125 })
        for a in 0..<n {
            for b in 0..<n {
                let dot = (0..<n).reduce(0.0) { $0 + h[a * n + $1] * h[$1 * n + b] }
                #expect(dot == (a == b ? 1 : 0))
                #expect(h[a * n + b] == h[b * n + a])
            }
        }
    }
}

/// Qwen3 (q_norm / k_norm between the projections and RoPE): FireQ's pre-RoPE factors are
/// head-shared and folded into the norm weights (Folding.apply), so q·k of every query/key
/// pair, after RoPE, is what it was, and the whole smoothed model keeps its logits.
@Suite(.serialized) struct Qwen3FoldTests {
    @Test func preRopeFactorsFoldIntoTheHeadNormsAndKeepQK() throws {
        let dir = FamilyTests.folder + "/qwen3"
        try TestPaths.require(dir + "/model.safetensors", hint: FamilyTests.hint)
        let original = try LlamaModel(directory: dir, threads: 2)
        let c = original.config
        #expect(c.qkNorm && c.architecture == .qwen3)
        let cal = try Calibrator(directory: dir, threads: 2)
        let tok = try Tokenizer(directory: dir)
        let w = try CalibrationWindows.load(
            .text(TestPaths.sharedData + "/tinyshakespeare.txt"), tokenizer: tok, vocabSize: c.vocabSize, samples: 2,
            seqLen: 64)
        var stats: [LayerStatistics] = []
        try cal.run(w.windows, onLayer: { stats.append($0) })
        var layers: [LlamaLayerWeights] = []
        let D = c.headDim
        for i in 0..<c.layerCount {
            var L = try RowMajorLayer.load(cal.checkpoint, layer: i, config: c)
            let before = L
            var plan = SmoothingPlan()
            _ = Folding.apply(plan, to: &L, stats: stats[i], config: c)
            // Only the norms carry the pre-RoPE factors: q_proj / k_proj rows are as the channel
            // smoothing left them (compare with the same plan without pre-RoPE scaling).
            var noPre = before
            plan.preRopeAlpha = nil
            _ = Folding.apply(plan, to: &noPre, stats: stats[i], config: c)
            #expect(L.q == noPre.q && L.k == noPre.k, "layer \(i): projections untouched by the pre-RoPE factors")
            let n = (0..<D).map { L.kNorm![$0] / noPre.kNorm![$0] }
            #expect(n.contains { abs($0 - 1) > 1e-3 }, "layer \(i): some pre-RoPE factor differs from 1")
            for j in 0..<D {
                #expect(
                    abs(L.qNorm![j] * n[j] - noPre.qNorm![j]) <= 1e-5 * abs(noPre.qNorm![j]), "q factor = 1 / k factor")
                #expect(abs(n[j] - n[(j + D / 2) % D]) <= 1e-6 * n[j], "both channels of a RoPE pair share the factor")
            }
            layers.append(L.referenceWeights(index: i, config: c))
        }
        // q·k after RoPE, for every head and position of a window, before and after the folds.
        let ids = Array(w.windows[0].prefix(48))
        final class Taps: ForwardObserver, @unchecked Sendable {
            var q: [Int: [Float]] = [:], k: [Int: [Float]] = [:]
            func observe(_ tap: Tap, layer: Int, _ v: ActivationView) {
                guard tap == .qPostRope || tap == .kPostRope else { return }
                var out: [Float] = []
                for r in 0..<v.rows { for j in 0..<v.cols { out.append(v.base[r * v.rowStride + j]) } }
                if tap == .qPostRope { q[layer] = out } else { k[layer] = out }
            }
        }
        let smoothed = LlamaModel(
            config: c, embed: original.embed, layers: layers, finalNorm: original.finalNorm, lmHead: original.lmHead,
            threads: 2)
        let ta = Taps(), tb = Taps()
        _ = original.hiddenStates([ids], observer: ta)
        _ = smoothed.hiddenStates([ids], observer: tb)
        let group = c.headCount / c.kvHeadCount, T = ids.count
        for li in 0..<c.layerCount {
            var worst: Float = 0, scale: Float = 0
            for h in 0..<c.headCount {
                let g = h / group
                for a in 0..<T {
                    for b in 0...a {
                        var x: Float = 0, y: Float = 0
                        for d in 0..<D {
                            x += ta.q[li]![a * c.qDim + h * D + d] * ta.k[li]![b * c.kvDim + g * D + d]
                            y += tb.q[li]![a * c.qDim + h * D + d] * tb.k[li]![b * c.kvDim + g * D + d]
                        }
                        worst = max(worst, abs(x - y)); scale = max(scale, abs(x))
                    }
                }
            }
            #expect(worst / scale <= 1e-4, "layer \(li): max |Δ q·k| \(worst) of max |q·k| \(scale)")
        }
        let a = original.logits(ids), b = smoothed.logits(ids)
        let worst = zip(a, b).map { abs($0 - $1) }.max()!, scale = a.map(abs).max()!
        #expect(worst / scale <= SmoothingFoldTests.relativeTolerance, "max |Δ| \(worst) of max |logit| \(scale)")
    }
}
