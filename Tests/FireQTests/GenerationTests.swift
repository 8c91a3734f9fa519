import Foundation
import LlamaReference
import ModelDescription
import Pipelines
import TensorStore
import Testing
import Tokenizer

/// `fireq generate`'s library side (`Pipelines.Generation`) and `fireq stack-layers`'
/// (`Pipelines.CheckpointStacking`), on the real default model.
@Suite(.serialized) struct GenerationTests {
    /// Greedy decoding through the KV cache continues "The capital of France is" with transformers'
    /// top-1 token there (7042, from the golden logits), and each further greedy token is the argmax
    /// of the full forward pass over everything before it; the emitted pieces add up to the text.
    @Test func greedyContinuationMatchesGoldenAndFullPass() throws {
        try TestPaths.requireModel()
        var s = Generation.Settings()
        s.maxTokens = 6; s.stopAtEOS = false; s.threads = 2
        var pieces = ""
        let r = try Generation.run(directory: TestPaths.model, prompt: "The capital of France is", settings: s) {
            pieces += $0
        }
        #expect(r.engine == "fp32-reference" && r.promptTokens == 5 && r.generated.count == 6)
        #expect(r.generated.first == 7042, "\(r.generated)")
        let tok = try Tokenizer(directory: TestPaths.model)
        #expect(pieces == r.text && r.text == tok.decode(r.generated))
        let model = try LlamaModel(directory: TestPaths.model, threads: 2)
        let all: [Int32] = [504, 3575, 282, 4649, 314] + r.generated
        let logits = model.logits(Array(all.dropLast()))
        let V = model.config.vocabSize
        for (i, t) in r.generated.enumerated() {
            let row = logits[((4 + i) * V)..<((5 + i) * V)]
            let argmax = row.indices.max { row[$0] < row[$1] }! - (4 + i) * V
            #expect(Int32(argmax) == t, "token \(i)")
        }
        // the same seed gives the same sample; bad settings are refused with the flag's name
        s.temperature = 0.8; s.topP = 0.9; s.seed = 7; s.maxTokens = 4
        let a = try Generation.run(directory: TestPaths.model, prompt: "Once upon a time", settings: s)
        let b = try Generation.run(directory: TestPaths.model, prompt: "Once upon a time", settings: s)
        #expect(a.generated == b.generated)
        s.topP = 0
        #expect(throws: PipelineError.self) { try Generation.run(directory: TestPaths.model, prompt: "x", settings: s) }
    }

    /// A 2× deeper copy: layer i + L holds layer i's bytes, the other tensors and the config but
    /// num_hidden_layers are unchanged; an existing output is refused and nothing temporary stays.
    @Test func stackedCopyRepeatsLayers() throws {
        try TestPaths.requireModel()
        let d = TestPaths.tempDir(), out = d + "/deep"
        let r = try CheckpointStacking.write(model: TestPaths.model, out: out, factor: 2)
        let src = try ModelConfig(directory: TestPaths.model), deep = try ModelConfig(directory: out)
        #expect(r.layers == 2 * src.layerCount && deep.layerCount == 2 * src.layerCount)
        #expect(deep.hiddenSize == src.hiddenSize && deep.vocabSize == src.vocabSize)
        let a = try Checkpoint(directory: TestPaths.model), b = try Checkpoint(directory: out)
        for name in [TensorNames.layer(3, "self_attn.q_proj.weight"), TensorNames.layer(29, "mlp.down_proj.weight")] {
            let (fa, ta) = try a.file(for: name)
            let (idx, part) = TensorNames.layerPart(of: name)!
            let (fb, tb) = try b.file(for: TensorNames.layer(idx + src.layerCount, String(part)))
            #expect(Array(fa.rawBytes(ta)) == Array(fb.rawBytes(tb)))
        }
        #expect(b.tensorNames.count == r.tensors)
        #expect(FileManager.default.fileExists(atPath: out + "/tokenizer.json"))
        #expect(throws: PipelineError.self) {
            _ = try CheckpointStacking.write(model: TestPaths.model, out: out, factor: 2)
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: d)
        #expect(left == ["deep"])
    }
}
