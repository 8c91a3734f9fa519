import CalibrationStats
import Foundation
import JSONSupport
import LlamaReference
import ModelDescription
import PackedFormat
import Quantization
import Runtime
import TensorStore
import Testing

/// Searched FireQ constants (recipe `search`, Formats/recipe-schema.md): the strength formula by
/// hand, the recipe keys, and the search on the committed 1-layer fixture model — its recorded error
/// is the runtime's own block-output error, and the layer it writes is what a recipe naming the
/// chosen constants writes.
@Suite struct ConstantSearchTests {
    static let tiny = TestPaths.root + "/Fuzz/fixtures/tiny-model"
    static let tinyStats = TestPaths.root + "/Fuzz/fixtures/tiny-stats.h5"

    /// W = [[1, −6, 0], [3, 2, 0]]: column means m = (2, 4, 0), μ = 3, c = 0.012.
    /// t = 1: c/m = (0.006, 0.003); t = 0: c/μ = 0.004 both; t = 0.5: c/√(m·μ) = 0.012/√6, 0.012/√12;
    /// the dead column keeps 1.
    @Test func strengthScalesByHand() {
        let w: [Float] = [1, -6, 0, 3, 2, 0]
        func close(_ a: [Float], _ b: [Double]) -> Bool {
            zip(a, b).allSatisfy { abs(Double($0) - $1) <= 1e-6 * abs($1) }
        }
        #expect(
            Smoothing.channelScales(w, rows: 2, k: 3, c: 0.012, strength: 1)
                == Smoothing.channelScales(w, rows: 2, k: 3, c: 0.012))
        #expect(close(Smoothing.channelScales(w, rows: 2, k: 3, c: 0.012, strength: 1), [0.006, 0.003, 1]))
        #expect(close(Smoothing.channelScales(w, rows: 2, k: 3, c: 0.012, strength: 0), [0.004, 0.004, 1]))
        #expect(
            close(
                Smoothing.channelScales(w, rows: 2, k: 3, c: 0.012, strength: 0.5),
                [0.004898979485566356, 0.0034641016151377548, 1]))
    }

    @Test func searchRecipeKeysParseAndRefuse() throws {
        let json =
            #"{"name": "s", "smoothing": {"down_strength": 0.5}, "search": {"post_rope_top_k": [4, 16], "gate_up_strength": [0.5], "windows": 3, "tokens": 64}}"#
        let r = try Recipe.parse(Data(json.utf8), path: "s.json")
        #expect(
            r.search?.topK == [4, 16] && r.search?.gateUpStrength == [0.5] && r.search?.alphaBeta == []
                && r.search?.windows == 3 && r.search?.tokens == 64)
        #expect(r.smoothing.downStrength == 0.5 && r.smoothing.gateUpStrength == 1)
        let back = try Recipe.parse(Data(r.canonicalJSON.utf8), path: "canonical")
        #expect(back == r && back.canonicalJSON == r.canonicalJSON)
        #expect(!Recipe.plus.canonicalJSON.contains("\"search\":") && !Recipe.plus.canonicalJSON.contains("strength"))
        // The shipped recipe: fireq-plus plus the search, nothing else.
        var shipped = try Recipe.load(TestPaths.root + "/Calibration/recipes/fireq-plus-search.json")
        #expect(
            shipped.search?.topK == [4, 16] && shipped.search?.alphaBeta == [6]
                && shipped.search?.gateUpStrength == [0.5, 0.75]
                && shipped.search?.downStrength == [0.5, 0.75] && shipped.search?.windows == 2
                && shipped.search?.tokens == 1024)
        shipped.search = nil; shipped.name = Recipe.plus.name; shipped.description = Recipe.plus.description
        #expect(shipped == Recipe.plus)
        func refusal(_ text: String) -> String {
            do { _ = try Recipe.parse(Data(text.utf8), path: "bad.json"); return "" } catch { return error.description }
        }
        #expect(refusal(#"{"search": {"windows": 0}}"#).contains("search.windows"))
        #expect(refusal(#"{"search": {"post_rope_top_k": [2.5]}}"#).contains("search.post_rope_top_k"))
        #expect(refusal(#"{"search": {"gate_up_strength": [5]}}"#).contains("search.gate_up_strength"))
        #expect(refusal(#"{"weights": {"gptq": {}}, "search": {}}"#).contains("weights.gptq"))
        #expect(
            refusal(#"{"attention": {"post_rope_beta": null}, "search": {"alpha_beta": [4]}}"#).contains(
                "search.alpha_beta"))
        #expect(refusal(#"{"smoothing": {"gate_up_strength": -1}}"#).contains("smoothing.gate_up_strength"))
        #expect(refusal(#"{"search": {"top_k": [4]}}"#).contains("search.top_k"))
    }

    final class LayerOutput: ForwardObserver {
        var rows: [Float] = []
        func observe(_ tap: Tap, layer: Int, _ view: ActivationView) {
            if tap == .layerOutput && layer == 0 { rows = (0..<view.rows).flatMap { Array(view.row($0)) } }
        }
    }

    @Test func searchScoresWithTheRuntimeAndWritesTheChosenConstants() throws {
        let d = TestPaths.tempDir()
        var recipe = Recipe.plus
        recipe.name = "search-test"
        var st = Recipe.SearchSettings()
        st.alphaBeta = [4, 6]; st.topK = [2, 16]; st.gateUpStrength = [0, 0.5]; st.downStrength = [0.25, 2]
        st.windows = 2; st.tokens = 24
        recipe.search = st
        _ = try Quantizer.run(
            modelDir: Self.tiny, statsPath: Self.tinyStats, recipe: recipe, recipeJSON: recipe.canonicalJSON,
            outDir: d + "/searched", toolVersion: "test", threads: 2)
        let file = try SafetensorsFile(path: d + "/searched/model.safetensors")
        let meta = try JSONParser.parse(Data(file.metadata["fireq.search"]!.utf8))
        #expect(meta["windows"]?.intValue == 2 && meta["tokens"]?.intValue == 24)
        let chosen = try #require(meta["layers"]?["0"])
        let error = try #require(chosen["error"]?.doubleValue),
            recipeError = try #require(chosen["recipe_error"]?.doubleValue)
        #expect(error <= recipeError && error > 0)

        // The recorded error, recomputed independently: the packed folder on the runtime, layer 0
        // alone on the embeddings of the first 2 calibration windows (24 tokens each), against the
        // source model's layer-0 output (FP32 reference), Σ (ŷ − y)² in float64, windows in order.
        let c = try ModelConfig(directory: Self.tiny)
        let stats = try StatsFile.read(Self.tinyStats, config: c)
        let windows = try #require(stats.tokens).prefix(2).map { Array($0.prefix(24)) }
        let runtime = try QuantizedModel(directory: d + "/searched", threads: 2)
        let reference = try LlamaModel(directory: Self.tiny, threads: 2)
        var recomputed = 0.0
        for w in windows {
            let out = LayerOutput()
            _ = reference.hiddenStates([w], observer: out)
            var h = [Float](repeating: 0, count: w.count * c.hiddenSize)
            h.withUnsafeMutableBufferPointer { p in
                runtime.embed(w, into: p.baseAddress!)
                runtime.runLayer(0, hidden: p.baseAddress!, seqLen: w.count)
            }
            for (a, b) in zip(h, out.rows) { let e = Double(a) - Double(b); recomputed += e * e }
        }
        #expect(recomputed == error, "search recorded \(error), the runtime gives \(recomputed)")

        // A recipe naming the chosen constants (no search) writes the same layer, bit for bit.
        var fixed = Recipe.plus
        fixed.name = "search-test"
        fixed.smoothing.preRopeAlpha = Float(try #require(chosen["alpha_beta"]?.doubleValue))
        fixed.smoothing.postRopeBeta = fixed.smoothing.preRopeAlpha
        fixed.smoothing.postRopeTopK = try #require(chosen["post_rope_top_k"]?.intValue)
        fixed.smoothing.gateUpStrength = Float(try #require(chosen["gate_up_strength"]?.doubleValue))
        fixed.smoothing.downStrength = Float(try #require(chosen["down_strength"]?.doubleValue))
        _ = try Quantizer.run(
            modelDir: Self.tiny, statsPath: Self.tinyStats, recipe: fixed, recipeJSON: fixed.canonicalJSON,
            outDir: d + "/fixed", toolVersion: "test", threads: 1)
        let other = try SafetensorsFile(path: d + "/fixed/model.safetensors")
        #expect(file.tensors.map(\.name) == other.tensors.map(\.name))
        for t in file.tensors {
            let u = try #require(other.info(t.name))
            #expect(Array(file.rawBytes(t)) == Array(other.rawBytes(u)), "\(t.name) differs")
        }
        try? FileManager.default.removeItem(atPath: d)
    }
}
