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
        let w = try CalibrationWindows.load(.text(TestPaths.sharedData + "/tinyshakespeare.txt"), tokenizer: tok, vocabSize: c.vocabSize, samples: 2, seqLen: 128)
        var stats: [LayerStatistics] = []
        try cal.run(w.windows, onLayer: { stats.append($0) })
        let plan = SmoothingPlan()   // the paper's recipe values
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
        let smoothed = LlamaModel(config: c, embed: original.embed, layers: layers, finalNorm: original.finalNorm, lmHead: original.lmHead, threads: 2)
        let prompts = try TestPaths.jsonObject(TestPaths.golden + "/logits-prompts.json") as! [[String: Any]]
        for p in prompts {
            let ids = (p["ids"] as! [NSNumber]).map { $0.int32Value }
            let a = original.logits(ids), b = smoothed.logits(ids)
            let scale = a.map(abs).max()!
            let worst = zip(a, b).map { abs($0 - $1) }.max()!
            #expect(worst / scale <= Self.relativeTolerance, "max |Δ| \(worst) of max |logit| \(scale)")
        }
    }
}
