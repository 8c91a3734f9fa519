import CalibrationStats
import Foundation
import JSONSupport
import LlamaReference
import ModelDescription
import TensorStore
import Testing
import Tokenizer

/// Records raw activations at the taps of chosen layers (the independent side of the check).
final class RecordingObserver: ForwardObserver {
    let layers: Set<Int>
    var rows: [String: [[Float]]] = [:]
    init(layers: Set<Int>) { self.layers = layers }
    func observe(_ tap: Tap, layer: Int, _ view: ActivationView) {
        guard layers.contains(layer) else { return }
        for r in 0..<view.rows { rows["\(layer)/\(tap.rawValue)", default: []].append(Array(view.row(r))) }
    }
}

@Suite(.serialized) struct CalibrationTests {
    static let shakespeare = TestPaths.sharedData + "/tinyshakespeare.txt"

    /// Layer-streamed statistics equal statistics recomputed in float64 from the taps of one
    /// ordinary full-model forward pass (layers 0 and 1, two windows of 64 tokens).
    @Test func statisticsMatchDirectRecomputation() throws {
        try TestPaths.requireModel()
        let tok = try Tokenizer(directory: TestPaths.model)
        let cal = try Calibrator(directory: TestPaths.model, threads: 2)
        let w = try CalibrationWindows.load(
            .text(Self.shakespeare), tokenizer: tok, vocabSize: cal.config.vocabSize, samples: 2, seqLen: 64)
        var streamed: [LayerStatistics] = []
        try cal.run(w.windows, onLayer: { streamed.append($0) })
        #expect(streamed.count == 30)
        let model = try LlamaModel(directory: TestPaths.model, threads: 2)
        let rec = RecordingObserver(layers: [0, 1])
        _ = model.hiddenStates(w.windows, observer: rec)
        let c = model.config
        for layer in [0, 1] {
            let s = streamed[layer]
            func col(_ tap: Tap) -> [[Float]] { rec.rows["\(layer)/\(tap.rawValue)"]! }
            for (tap, key) in [
                (Tap.attentionInput, InputTap.attn), (.oProjInput, .oProj), (.mlpInput, .mlp),
                (.downProjInput, .downProj)
            ] {
                let rows = col(tap)
                let st = s.inputs[key]!
                #expect(st.count == 128 && rows.count == 128)
                for ch in stride(from: 0, to: rows[0].count, by: 7) {
                    let xs = rows.map { Double($0[ch]) }
                    #expect(st.absmax[ch] == Float(xs.map(abs).max()!), "layer \(layer) \(key) ch \(ch)")
                    let meanAbs = xs.map(abs).reduce(0, +) / 128, meanSq = xs.map { $0 * $0 }.reduce(0, +) / 128
                    #expect(abs(Double(st.meanAbs[ch]) - meanAbs) <= 1e-6 * max(meanAbs, 1e-30) + 1e-30)
                    #expect(abs(Double(st.meanSq[ch]) - meanSq) <= 1e-6 * max(meanSq, 1e-30) + 1e-30)
                }
            }
            let kPre = col(.kPreRope), kPost = col(.kPostRope), qPost = col(.qPostRope), v = col(.v)
            let half = c.headDim / 2
            for h in 0..<c.kvHeadCount {
                for j in 0..<half {
                    let want = kPre.map { r -> Double in
                        let a = Double(r[h * c.headDim + j]), b = Double(r[h * c.headDim + j + half]);
                        return (a * a + b * b).squareRoot()
                    }.max()!
                    #expect(s.kPreRopePairNormMax[h * half + j] == Float(want))
                }
            }
            for d in 0..<c.kvDim {
                #expect(s.kPostRopeAbsmax[d] == kPost.map { abs($0[d]) }.max()!)
                #expect(s.vAbsmax[d] == v.map { abs($0[d]) }.max()!)
            }
            for d in 0..<c.qDim { #expect(s.qPostRopeAbsmax[d] == qPost.map { abs($0[d]) }.max()!) }
        }
    }

    /// Qwen2 (q/k/v biases): the statistics of k − b (Formats/calibration-stats.md `*_unbiased`)
    /// equal a float64 recomputation from the raw pre-RoPE keys of an ordinary forward pass, the
    /// k_proj bias read from the checkpoint, and RoPE at each token's position computed here; a
    /// model without biases (llama3) has none.
    @Test func unbiasedKeyStatisticsOnQwen2() throws {
        for family in ["qwen2", "llama3"] {
            let dir = FamilyTests.folder + "/" + family
            try TestPaths.require(dir + "/model.safetensors", hint: FamilyTests.hint)
            let tok = try Tokenizer(directory: dir)
            let cal = try Calibrator(directory: dir, threads: 2)
            let w = try CalibrationWindows.load(
                .text(Self.shakespeare), tokenizer: tok, vocabSize: cal.config.vocabSize, samples: 2, seqLen: 48)
            var streamed: [LayerStatistics] = []
            try cal.run(w.windows, onLayer: { streamed.append($0) })
            let c = cal.config
            if family == "llama3" {
                #expect(
                    streamed.allSatisfy { $0.kPreRopePairNormMaxUnbiased == nil && $0.kPostRopeAbsmaxUnbiased == nil })
                continue
            }
            let model = try LlamaModel(directory: dir, threads: 2)
            let rec = RecordingObserver(layers: [0, 1])
            _ = model.hiddenStates(w.windows, observer: rec)
            let ckpt = try SafetensorsFile(path: dir + "/model.safetensors")
            let D = c.headDim, half = D / 2
            for layer in [0, 1] {
                let s = streamed[layer]
                let pre = try #require(s.kPreRopePairNormMaxUnbiased), post = try #require(s.kPostRopeAbsmaxUnbiased)
                let b = try ckpt.float32("model.layers.\(layer).self_attn.k_proj.bias").map(Double.init)
                let rows = rec.rows["\(layer)/k_pre_rope"]!
                #expect(rows.count == 96)
                var wantPre = [Double](repeating: 0, count: c.kvHeadCount * half),
                    wantPost = [Double](repeating: 0, count: c.kvDim)
                for (r, row) in rows.enumerated() {
                    let pos = Double(r % 48)
                    for h in 0..<c.kvHeadCount {
                        for j in 0..<half {
                            let x = Double(row[h * D + j]) - b[h * D + j],
                                y = Double(row[h * D + j + half]) - b[h * D + j + half]
                            wantPre[h * half + j] = max(wantPre[h * half + j], (x * x + y * y).squareRoot())
                            let ang = pos * pow(c.ropeTheta, -2 * Double(j) / Double(D))
                            wantPost[h * D + j] = max(wantPost[h * D + j], abs(x * cos(ang) - y * sin(ang)))
                            wantPost[h * D + j + half] = max(
                                wantPost[h * D + j + half], abs(y * cos(ang) + x * sin(ang)))
                        }
                    }
                }
                for i in 0..<wantPre.count {
                    #expect(abs(Double(pre[i]) - wantPre[i]) <= 1e-5 * wantPre[i], "layer \(layer) pair \(i)")
                }
                for i in 0..<wantPost.count {
                    #expect(abs(Double(post[i]) - wantPost[i]) <= 1e-4 * wantPost.max()!, "layer \(layer) channel \(i)")
                }
                // The bias matters here: the raw and unbiased pair norms differ.
                #expect(zip(pre, s.kPreRopePairNormMax).contains { abs($0 - $1) > 1e-3 * $1 })
            }
        }
    }

    /// Pair norm and post-RoPE definitions on a hand-built case with a known answer.
    @Test func handBuiltPairNormAndPostRope() throws {
        let json =
            #"{"architectures":["LlamaForCausalLM"],"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":4,"vocab_size":10}"#
        let c = try ModelConfig(json: try JSONParser.parse(json), path: "hand")
        let col = StatisticsCollector(config: c, threads: 2)
        // Two tokens, one KV head of dim 4: pairs (0,2) and (1,3).
        let k: [Float] = [
            3, 1, 4, 0,  // pair norms 5, 1
            0, -6, 0, 8
        ]  // pair norms 0, 10
        k.withUnsafeBufferPointer { b in
            col.observe(.kPreRope, layer: 0, ActivationView(base: b.baseAddress!, rows: 2, cols: 4, rowStride: 4))
            col.observe(.kPostRope, layer: 0, ActivationView(base: b.baseAddress!, rows: 2, cols: 4, rowStride: 4))
        }
        let s = col.take(layer: 0)!
        #expect(s.kPreRopePairNormMax == [5, 10])
        #expect(s.kPostRopeAbsmax == [3, 6, 4, 8])
        // RoPE keeps pair norms: after rotating token 0 by any angle, |k| per channel ≤ its pair norm.
        let rope = Rope(config: c)
        var cosT = [Float](repeating: 0, count: 2), sinT = cosT
        rope.table(position: 7, cos: &cosT, sin: &sinT)
        var rotated = Array(k[0..<4])
        rotated.withUnsafeMutableBufferPointer { Rope.rotate($0.baseAddress!, half: 2, cos: cosT, sin: sinT) }
        #expect(abs(rotated[0] * rotated[0] + rotated[2] * rotated[2] - 25) < 1e-4)
        #expect(abs(rotated[1] * rotated[1] + rotated[3] * rotated[3] - 1) < 1e-5)
    }

    @Test func hdf5RoundTripAndAttributes() throws {
        try TestPaths.requireModel()
        let c = try ModelConfig(directory: TestPaths.model)
        var layers: [LayerStatistics] = []
        for i in 0..<c.layerCount {
            var s = LayerStatistics(layer: i, config: c)
            s.kPreRopePairNormMax = s.kPreRopePairNormMax.indices.map { Float($0 + i) }
            s.vAbsmax = s.vAbsmax.indices.map { Float($0) * 0.5 }
            var st = s.inputs[.mlp]!
            st.count = 4; st.absmax = st.absmax.map { _ in 2 }; st.sumAbs = st.sumAbs.map { _ in 4 };
            st.sumSq = st.sumSq.map { _ in 8 }
            s.inputs[.mlp] = st
            for t in [InputTap.attn, .oProj, .downProj] { s.inputs[t]!.count = 4 }
            layers.append(s)
        }
        let path = TestPaths.tempDir() + "/s.h5"
        var attrs: [String: String] = [:]
        for n in StatsFile.attributeNames { attrs[n] = "x" }
        attrs["model_path"] = "naïve ✓"
        let w = try StatsFile.Writer(path: path, config: c, attributes: attrs)
        for s in layers { try w.write(s) }
        #expect(!FileManager.default.fileExists(atPath: path), "no file under the final name before finish()")
        try w.finish()
        let back = try StatsFile.read(path, config: c)
        #expect(back.attributes["model_path"] == "naïve ✓")
        #expect(back.layers[3].kPreRopePairNormMax == layers[3].kPreRopePairNormMax)
        #expect(back.layers[5].vAbsmax == layers[5].vAbsmax)
        #expect(
            back.layers[0].inputs[.mlp]!.meanAbs.allSatisfy { $0 == 1 }
                && back.layers[0].inputs[.mlp]!.meanSq.allSatisfy { $0 == 2 })
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: (path as NSString).deletingLastPathComponent) == [
                "s.h5"
            ])
    }

    @Test func sha256KnownVectors() {
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex([UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(
            SHA256.hex(Array(String(repeating: "a", count: 1000).utf8))
                == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
        let data = try? Data(contentsOf: URL(fileURLWithPath: TestPaths.sharedData + "/tinyshakespeare.txt"))
        #expect(data.map { SHA256.hex($0) } == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")
    }

    // MARK: bad input, through the CLI: one-line error, exit ≠ 0, no file under the final name

    static func calibrate(_ extra: [String], out: String) throws -> CLI.Result {
        try CLI.run(["calibrate", "--model", TestPaths.model, "--out", out] + extra)
    }

    static func expectFailure(_ extra: [String], mentions: [String]) throws {
        try TestPaths.requireModel()
        let out = TestPaths.tempDir() + "/stats.h5"
        let r = try calibrate(extra, out: out)
        #expect(r.status != 0)
        #expect(r.stderr.hasPrefix("error: ") && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        for m in mentions { #expect(r.stderr.contains(m), "\(r.stderr) should mention \(m)") }
        #expect(!FileManager.default.fileExists(atPath: out))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: (out as NSString).deletingLastPathComponent)
        #expect(leftovers.isEmpty, "no temporary files left: \(leftovers)")
    }

    @Test func textTooShort() throws {
        try Self.expectFailure(
            ["--text", Self.shakespeare, "--samples", "1000", "--seq-len", "2048"],
            mentions: [Self.shakespeare, "has 341094 tokens", "1000 samples × 2048 tokens need 2048000"])
    }

    @Test func nonUTF8Text() throws {
        let p = TestPaths.tempDir() + "/bad.txt"
        _ = FileManager.default.createFile(atPath: p, contents: Data([0x61, 0x62, 0xFF, 0x63]))
        try Self.expectFailure(
            ["--text", p, "--samples", "1", "--seq-len", "2"], mentions: [p, "not valid UTF-8", "offset 2"])
    }

    @Test func jsonLinesWithoutText() throws {
        let p = TestPaths.tempDir() + "/c.jsonl"
        _ = FileManager.default.createFile(atPath: p, contents: Data("{\"text\": \"hello\"}\n{\"body\": \"x\"}\n".utf8))
        try Self.expectFailure(
            ["--jsonl", p, "--samples", "1", "--seq-len", "2"], mentions: [p, "line 2", "no string field 'text'"])
    }

    static func tokensFile(_ write: (HDF5File) throws -> Void) throws -> String {
        let p = TestPaths.tempDir() + "/t.h5"
        let f = try HDF5File.create(p)
        try write(f)
        f.close()
        return p
    }

    @Test func hdf5TokensWrongDType() throws {
        let p = try Self.tokensFile { try $0.writeFloat32("tokens", [Float](repeating: 1, count: 8), shape: [2, 4]) }
        try Self.expectFailure(
            ["--tokens", p, "--samples", "2", "--seq-len", "4"], mentions: [p, "dataset 'tokens' must be int32"])
    }

    @Test func hdf5TokensWrongShape() throws {
        let p = try Self.tokensFile { try $0.writeFloat32("other", [1], shape: [1]) }
        try Self.expectFailure(
            ["--tokens", p, "--samples", "2", "--seq-len", "4"], mentions: [p, "'tokens' is missing"])
        let q = try Self.tokensFile { try $0.writeInt32("tokens", [Int32](repeating: 5, count: 8), shape: [8]) }
        try Self.expectFailure(["--tokens", q, "--samples", "2", "--seq-len", "4"], mentions: [q, "must be 2-D [N, L]"])
    }

    @Test func hdf5TokensWork() throws {
        try TestPaths.requireModel()
        let p = try Self.tokensFile { try $0.writeInt32("tokens", (0..<24).map { Int32(100 + $0) }, shape: [3, 8]) }
        let out = TestPaths.tempDir() + "/ok.h5"
        let r = try Self.calibrate(["--tokens", p, "--samples", "2", "--seq-len", "8"], out: out)
        #expect(r.status == 0, "\(r.stderr)")
        let c = try StatsFile.read(out, config: try ModelConfig(directory: TestPaths.model))
        #expect(c.attributes["source_kind"] == "tokens" && c.attributes["tokens"] == "16")
        #expect(c.layers[0].inputs[.attn]!.count == 16)
        // The windows themselves are stored (dataset `tokens`, what GPTQ streams again).
        let stored: [[Int32]] = [Array(100..<108), Array(108..<116)]
        #expect(c.tokens == stored)
        // Refuses to overwrite without --force.
        let again = try Self.calibrate(["--tokens", p, "--samples", "2", "--seq-len", "8"], out: out)
        #expect(again.status != 0 && again.stderr.contains("already exists"))
    }

    @Test func unwritableOutput() throws {
        try TestPaths.requireModel()
        let r = try Self.calibrate(
            ["--text", Self.shakespeare, "--samples", "1", "--seq-len", "8"], out: "/nonexistent-dir/stats.h5")
        #expect(r.status != 0)
        #expect(
            r.stderr.contains("/nonexistent-dir/stats.h5") && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
    }
}

@Suite(.serialized) struct DecoderTests {
    /// KV-cached decoding gives the full forward pass's logits at every position.
    @Test func decoderMatchesFullForward() throws {
        let model = try ModelTests.model()
        let t = ModelTests.corpusTokens()
        let seqs = [Array(t[0..<24]), Array(t[100..<124])]
        let full = seqs.map { model.logits($0) }
        let dec = LlamaDecoder(model: model, batch: 2, capacity: 24)
        let V = model.config.vocabSize
        var worst: Float = 0
        for p in 0..<24 {
            let l = dec.step([seqs[0][p], seqs[1][p]])
            for s in 0..<2 {
                for v in stride(from: 0, to: V, by: 97) { worst = max(worst, abs(l[s * V + v] - full[s][p * V + v])) }
            }
        }
        #expect(worst <= 1e-3, "max |Δlogit| \(worst)")
    }

    /// One sequence at a time takes the single-row GEMV path (binary16 panels): same logits.
    @Test func singleRowDecoderMatchesFullForward() throws {
        let model = try ModelTests.model()
        let seq = Array(ModelTests.corpusTokens()[200..<220])
        let full = model.logits(seq)
        let dec = LlamaDecoder(model: model, batch: 1, capacity: seq.count)
        let V = model.config.vocabSize
        var worst: Float = 0
        for p in 0..<seq.count {
            let l = dec.step([seq[p]])
            for v in stride(from: 0, to: V, by: 31) { worst = max(worst, abs(l[v] - full[p * V + v])) }
        }
        #expect(worst <= 1e-3, "max |Δlogit| \(worst)")
    }

    @Test func generationIsSeeded() throws {
        let model = try ModelTests.model()
        let a = try CalibrationWindows.generate(
            model: model, samples: 2, seqLen: 12, temperature: 1, topP: 0.95, seed: 1)
        let b = try CalibrationWindows.generate(
            model: model, samples: 2, seqLen: 12, temperature: 1, topP: 0.95, seed: 1)
        let c = try CalibrationWindows.generate(
            model: model, samples: 2, seqLen: 12, temperature: 1, topP: 0.95, seed: 2)
        #expect(a.windows == b.windows && a.sourceSHA256 == b.sourceSHA256)
        #expect(a.windows != c.windows)
        #expect(a.windows.allSatisfy { $0.count == 12 && $0[0] == 1 })
        // Temperature 0 is greedy: the argmax of the full forward pass at each step.
        let g = try CalibrationWindows.generate(model: model, samples: 1, seqLen: 6, temperature: 0, topP: 1, seed: 0)
            .windows[0]
        let logits = model.logits(Array(g.dropLast()))
        let V = model.config.vocabSize
        for p in 0..<(g.count - 1) {
            let row = logits[(p * V)..<((p + 1) * V)]
            #expect(Int(g[p + 1]) == row.indices.max { row[$0] < row[$1] }! - p * V)
        }
    }
}
