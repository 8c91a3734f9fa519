import Evaluation
import Foundation
import LlamaReference
import TensorStore
import Testing

/// The FP32 reference forward pass on the real default model against transformers' FP32 output.
/// Run in release (`swift test -c release`): debug builds are 10–50× slower.
@Suite(.serialized) struct ModelTests {
    /// |Δlogit| and |Δlogsumexp| budget against transformers FP32 (issue #2).
    static let logitTolerance: Float = 2e-3
    /// Relative perplexity budget against transformers FP32.
    static let perplexityTolerance = 1e-4

    nonisolated(unsafe) static var cached: LlamaModel?
    static func model() throws -> LlamaModel {
        try TestPaths.requireModel()
        if let m = cached { return m }
        let m = try LlamaModel(directory: TestPaths.model, threads: 2)
        cached = m
        return m
    }

    @Test func promptLogits() throws {
        let model = try Self.model()
        let prompts = try TestPaths.jsonObject(TestPaths.golden + "/logits-prompts.json") as! [[String: Any]]
        #expect(prompts.count == 3)
        let V = model.config.vocabSize
        for (pi, p) in prompts.enumerated() {
            let ids = (p["ids"] as! [NSNumber]).map { $0.int32Value }
            let logits = model.logits(ids)
            let positions = p["positions"] as! [[String: Any]]
            #expect(positions.count == ids.count)
            for (t, pos) in positions.enumerated() {
                let row = Array(logits[(t * V)..<((t + 1) * V)])
                let wantIDs = (pos["top10_ids"] as! [NSNumber]).map { $0.intValue }
                let wantLogits = (pos["top10_logits"] as! [NSNumber]).map { $0.floatValue }
                let top = row.indices.sorted { row[$0] > row[$1] }.prefix(10)
                #expect(Array(top) == wantIDs, "prompt \(pi) position \(t)")
                for (id, want) in zip(wantIDs, wantLogits) {
                    #expect(
                        abs(row[id] - want) <= Self.logitTolerance,
                        "prompt \(pi) position \(t) id \(id): \(row[id]) vs \(want)")
                }
                let m = row.max()!
                let lse = Double(m) + log(row.reduce(0.0) { $0 + exp(Double($1 - m)) })
                #expect(abs(lse - (pos["logsumexp"] as! NSNumber).doubleValue) <= Double(Self.logitTolerance))
            }
            if pi == 0 {
                let d = TestPaths.read(TestPaths.golden + "/logits-prompt0-last.f32")
                let last = d.withUnsafeBytes { raw in
                    (0..<V).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
                }
                let mine = logits[((ids.count - 1) * V)...]
                let worst = zip(mine, last).map { abs($0 - $1) }.max()!
                #expect(worst <= Self.logitTolerance, "max |Δlogit| \(worst)")
            }
        }
    }

    static func corpusTokens() -> [Int32] {
        let gold = TestPaths.read(TestPaths.golden + "/wikitext-2-raw-test.ids.u32")
        return gold.withUnsafeBytes { raw in
            (0..<(gold.count / 4)).map { Int32(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
        }
    }

    @Test(arguments: [(512, 8), (2048, 2)])
    func perplexityMatchesTransformers(context: Int, windows: Int) throws {
        let model = try Self.model()
        let golden = try TestPaths.jsonObject(TestPaths.golden + "/corpus-and-perplexity.json") as! [String: Any]
        let want = (golden["perplexity"] as! [[String: Any]]).first { ($0["context"] as! Int) == context }!
        let r = try Perplexity.evaluate(
            model: model, tokens: Self.corpusTokens(), context: context, maxWindows: windows, protocol: .all)
        #expect(r.windows == windows)
        #expect(r.scoredTokens == want["scored_tokens"] as! Int)
        let ppl = (want["ppl"] as! NSNumber).doubleValue
        #expect(abs(r.perplexity - ppl) / ppl <= Self.perplexityTolerance, "ppl \(r.perplexity) vs \(ppl)")
    }

    @Test func llamacppProtocolScoresSecondHalf() throws {
        let model = try Self.model()
        let tokens = Array(Self.corpusTokens().prefix(1100))
        let all = try Perplexity.evaluate(model: model, tokens: tokens, context: 512, maxWindows: nil, protocol: .all)
        let half = try Perplexity.evaluate(
            model: model, tokens: tokens, context: 512, maxWindows: nil, protocol: .llamacpp)
        #expect(all.windows == 2 && half.windows == 2)
        #expect(all.scoredTokens == 2 * 511)
        #expect(half.scoredTokens == 2 * 255)  // positions 256 … 510
        // Later positions see more context, so the second half is easier on this text.
        #expect(half.meanNLL < all.meanNLL)
    }

    /// Results do not depend on the thread count (bit-identical logits).
    @Test func threadCountDoesNotChangeResults() throws {
        try TestPaths.requireModel()
        let a = try Self.model()
        let ids: [Int32] = Array(Self.corpusTokens().prefix(200))
        let one = LlamaModel(
            config: a.config, embed: a.embed, layers: a.layers, finalNorm: a.finalNorm, lmHead: a.lmHead, threads: 1)
        let three = LlamaModel(
            config: a.config, embed: a.embed, layers: a.layers, finalNorm: a.finalNorm, lmHead: a.lmHead, threads: 3)
        let la = one.logits(ids), lb = three.logits(ids)
        // (Compare via a mismatch count: expectation diffs of 10 M floats take minutes to render.)
        let mismatches = zip(la, lb).filter { $0.bitPattern != $1.bitPattern }.count
        #expect(la.count == lb.count && mismatches == 0)
    }

    /// Batches of sequences give the same rows as single sequences.
    @Test func batchEqualsSingle() throws {
        let m = try Self.model()
        let t = Self.corpusTokens()
        let s1 = Array(t[0..<64]), s2 = Array(t[64..<128])
        let hb = m.hiddenStates([s1, s2]).array
        let h1 = m.hiddenStates([s1]).array, h2 = m.hiddenStates([s2]).array
        let worst = zip(hb, h1 + h2).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-4)
    }

    @Test func missingTensorIsAnError() throws {
        try TestPaths.requireModel()
        let dir = TestPaths.tempDir()
        let src = try SafetensorsFile(path: TestPaths.model + "/model.safetensors")
        // A tiny checkpoint with the right config but only the embedding.
        var cfg = String(decoding: TestPaths.read(TestPaths.model + "/config.json"), as: UTF8.self)
        cfg = cfg.replacingOccurrences(of: "\"num_hidden_layers\": 30", with: "\"num_hidden_layers\": 1")
        _ = FileManager.default.createFile(atPath: dir + "/config.json", contents: Data(cfg.utf8))
        let embed = try src.rawBytes("model.embed_tokens.weight")
        try SafetensorsWriter.write(
            [TensorData(name: "model.embed_tokens.weight", dtype: .f16, shape: [49152, 576], bytes: Array(embed))],
            to: dir + "/model.safetensors")
        #expect {
            _ = try LlamaModel(directory: dir, threads: 1)
        } throws: { e in
            let d = "\(e)"
            return d.contains(dir) && d.contains("tensor 'model.layers.0.") && d.contains("is missing")
        }
    }
}
