import CalibrationStats
import Foundation
import LlamaReference
import Runtime
import TensorStore
import Testing
import Tokenizer

/// Every supported family against transformers itself (issue #11): small random-weight
/// checkpoints saved by transformers 5.x (`rope_parameters` configs, BF16/F16 weights) by
/// Scripts/make_family_checkpoints.py, with transformers' FP32 logits as goldens; and the whole
/// pipeline (calibrate → quantize → smoke evaluation → every export the family has) on each.
@Suite(.serialized) struct FamilyTests {
    static let folder = TestPaths.root + "/.cache/families"
    static let families = ["llama3", "qwen2", "mistral", "qwen3", "gemma3", "gemma3-pattern6"]
    static let hint =
        "bash Scripts/test.sh builds them (.cache/venv/bin/python Scripts/make_family_checkpoints.py .cache/families)"

    /// Our FP32 forward pass gives transformers' logits (float32, eager attention) within 1e-4 of
    /// the largest logit, and our tokenizer the `tokenizers` ids of the same text.
    @Test(arguments: families) func fp32LogitsMatchTransformers(_ family: String) throws {
        let dir = Self.folder + "/" + family
        try TestPaths.require(dir + "/golden.safetensors", hint: Self.hint)
        let golden = try SafetensorsFile(path: dir + "/golden.safetensors")
        let idsInfo = try #require(golden.info("input_ids"))
        let ids = Array(golden.rawBytes(idsInfo).bindMemory(to: Int32.self))
        let want = try golden.float32("logits")
        let text = try String(contentsOfFile: Self.folder + "/golden-text.txt", encoding: .utf8)
        #expect(try Tokenizer(directory: dir).encode(text) == ids, "tokenizer ids")

        let model = try LlamaModel(directory: dir, threads: 2)
        let V = model.config.vocabSize
        let got = model.logits(ids)
        #expect(got.count == ids.count * V && want.count == got.count)
        var maxDiff: Float = 0, maxRef: Float = 0
        for i in 0..<got.count {
            maxDiff = max(maxDiff, abs(got[i] - want[i]))
            maxRef = max(maxRef, abs(want[i]))
        }
        #expect(maxRef > 0.05, "the golden logits are not degenerate (\(maxRef))")
        #expect(maxDiff / maxRef <= 1e-4, "\(family): max |Δlogit| \(maxDiff) of max |logit| \(maxRef)")
        // Next-token argmax agrees everywhere (a coarse check a wrong RoPE or bias would fail).
        var agree = 0
        for t in 0..<ids.count {
            let a = (0..<V).max { got[t * V + $0] < got[t * V + $1] }!,
                b = (0..<V).max { want[t * V + $0] < want[t * V + $1] }!
            if a == b { agree += 1 }
        }
        #expect(agree == ids.count, "\(family): argmax agrees on \(agree) of \(ids.count) positions")
        // The KV-cached decoder (sliding windows, per-layer RoPE, sandwich norms) gives the full pass's logits.
        let dec = LlamaDecoder(model: model, batch: 1, capacity: ids.count)
        var worstDecode: Float = 0
        for p in 0..<ids.count {
            let l = dec.step([ids[p]])
            for v in 0..<V { worstDecode = max(worstDecode, abs(l[v] - got[p * V + v])) }
        }
        #expect(worstDecode / maxRef <= 1e-5, "\(family): decoder max |Δlogit| \(worstDecode)")
    }

    /// calibrate → quantize → smoke evaluation → exports, through `fireq convert`, on every family;
    /// the packed folder verifies and each export the family supports is published.
    @Test(arguments: families) func pipelineRunsOnEveryFamily(_ family: String) throws {
        let dir = Self.folder + "/" + family
        try TestPaths.require(dir + "/model.safetensors", hint: Self.hint)
        let out = TestPaths.tempDir() + "/" + family + "-fireq"
        // GGUF: llama.cpp's llama, qwen2, qwen3 and gemma3 architectures (Formats/exports.md); the
        // gemma3 checkpoint's layer pattern and q·k scale are ones llama.cpp's gemma3 cannot take.
        let exports = family == "gemma3" ? "compressed-tensors,mlx" : "gguf,compressed-tensors,mlx"
        let r = try CLI.run([
            "convert", "--model", dir, "--out", out, "--text", ConvertTests.shakespeare, "--samples", "2", "--seq-len",
            "64",
            "--eval-context", "64", "--eval-windows", "2", "--max-delta-ppl", "1000", "--threads", "2", "--export",
            exports
        ])
        #expect(r.status == 0, "\(family): \(r.stderr)")
        guard r.status == 0 else { return }
        #expect(try CLI.run(["inspect", out, "--verify"]).status == 0)
        for e in exports.split(separator: ",") {
            let path = out + (e == "gguf" ? ".gguf" : "." + e)
            #expect(FileManager.default.fileExists(atPath: path), "\(family): \(path)")
        }
        let rep = try ConvertTests.json(out + "/report.json")
        let ppl = try #require(rep["models"]?.arrayValue?.first?["perplexity"]?.doubleValue)
        let base = try #require(rep["baseline"]?["perplexity"]?.doubleValue)
        #expect(ppl.isFinite && base.isFinite && ppl > 1 && base > 1, "\(family): \(base) → \(ppl)")
        // The INT4-FP8 decoder gives the runtime's full-pass logits bit for bit, past Gemma 3's window.
        let golden = try SafetensorsFile(path: dir + "/golden.safetensors")
        let seq = Array(
            Array(golden.rawBytes(try #require(golden.info("input_ids"))).bindMemory(to: Int32.self)).prefix(48))
        let model = try QuantizedModel(directory: out, threads: 2)
        let V = model.config.vocabSize
        let hidden = model.hiddenStates([seq], observer: nil)
        var full = [Float](repeating: 0, count: seq.count * V)
        full.withUnsafeMutableBufferPointer {
            model.logits(hidden: hidden.pointer, rows: seq.count, out: $0.baseAddress!)
        }
        let dec = QuantizedDecoder(model: model, capacity: seq.count)
        var worst: Float = 0
        for p in 0..<seq.count {
            let l = dec.step(seq[p])
            for v in 0..<V { worst = max(worst, abs(l[v] - full[p * V + v])) }
        }
        #expect(worst == 0, "\(family): decoder max |Δlogit| \(worst)")
    }

    /// The streaming calibrator (checkpoint rows, layer by layer) sees what the whole model sees:
    /// its statistics equal a collector's on `LlamaModel`'s forward pass of the same windows, bit
    /// for bit (Gemma 3: the embedding scale applies there too).
    @Test(arguments: families) func calibratorSeesTheModelsActivations(_ family: String) throws {
        let dir = Self.folder + "/" + family
        try TestPaths.require(dir + "/golden.safetensors", hint: Self.hint)
        let golden = try SafetensorsFile(path: dir + "/golden.safetensors")
        let ids = Array(golden.rawBytes(try #require(golden.info("input_ids"))).bindMemory(to: Int32.self))
        let windows = [Array(ids[0..<48]), Array(ids[48..<96])]
        let cal = try Calibrator(directory: dir, threads: 2)
        var streamed: [LayerStatistics] = []
        try cal.run(windows, onLayer: { streamed.append($0) })
        let model = try LlamaModel(directory: dir, threads: 2)
        let collector = StatisticsCollector(config: model.config, threads: 2)
        for w in windows { _ = model.hiddenStates([w], observer: collector) }
        let whole = (0..<model.config.layerCount).map { collector.take(layer: $0)! }
        let differs = streamed.indices.first { $0 < whole.count && streamed[$0] != whole[$0] }
        #expect(
            streamed.count == whole.count && differs == nil,
            "\(family): layer \(differs.map(String.init) ?? "count") differs")
    }

    /// An export the target cannot express is refused before any stage runs: one sentence naming
    /// config.json, exit 1, and no output, work folder or lock left behind.
    @Test func unsupportedExportIsRefusedBeforeConversion() throws {
        let dir = Self.folder + "/gemma3"
        try TestPaths.require(dir + "/model.safetensors", hint: Self.hint)
        let parent = TestPaths.tempDir()
        let out = parent + "/g-fireq"
        let r = try CLI.run([
            "convert", "--model", dir, "--out", out, "--text", ConvertTests.shakespeare, "--samples", "2", "--seq-len",
            "64",
            "--export", "compressed-tensors,gguf"
        ])
        #expect(r.status == 1)
        #expect(
            r.stderr.contains(
                "\(dir)/config.json: has sliding-window layers in a pattern other than every 6th layer global"),
            "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: parent).isEmpty, "left behind in \(parent)")
    }
}
