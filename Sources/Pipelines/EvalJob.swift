import Evaluation
import Foundation
import JSONSupport
import LlamaReference
import ModelDescription
import Runtime
import Tokenizer

/// One perplexity evaluation (`fireq eval`): the FP32 reference for a Hugging Face folder, the
/// INT4-FP8 runtime for a fireq-packed folder; the text's bytes tokenized once as stored and cut
/// into non-overlapping windows from token 0. The outcome carries what `eval --json` prints.
public struct EvalJob: Sendable {
    public var model: String
    public var text: String
    public var context = 512
    public var windows: Int? = nil
    public var scoring: PerplexityProtocol = .all
    public var bos = false
    public var numerics: RuntimeNumerics = .fireq
    public var threads = 1

    public init(model: String, text: String) {
        self.model = model
        self.text = text
    }

    public struct Outcome: Sendable {
        public let job: EvalJob
        public let result: PerplexityResult
        public let textTokens: Int
        public let loadSeconds: Double
        /// "int4-fp8-runtime" or "fp32-reference".
        public let engine: String
        public let packed: Bool
        public let residentBytesAfterLoad: Int
        public let modelWeightBytesInMemory: Int
        public let weightsFileBytes: Int

        /// `fireq eval --json`'s object.
        public var json: JSONValue {
            .object(
                JSONObject([
                    ("perplexity", .double(result.perplexity)), ("mean_nll", .double(result.meanNLL)),
                    ("scored_tokens", .int(result.scoredTokens)), ("windows", .int(result.windows)),
                    ("context", .int(job.context)), ("protocol", .string(job.scoring.rawValue)),
                    ("bos", .bool(job.bos)), ("text_tokens", .int(textTokens)),
                    ("tokens_per_second", .double(result.tokensPerSecond)), ("eval_seconds", .double(result.seconds)),
                    ("load_seconds", .double(loadSeconds)), ("threads", .int(job.threads)), ("engine", .string(engine)),
                    ("numerics", packed ? .string(job.numerics.rawValue) : .null),
                    ("resident_bytes_after_load", .int(residentBytesAfterLoad)),
                    ("model_weight_bytes_in_memory", .int(modelWeightBytesInMemory)),
                    ("weights_file_bytes", .int(weightsFileBytes))
                ]))
        }
    }

    /// Loads the model, tokenizes the text and evaluates; `progress` gets (windows done, total).
    public func run(progress: ((Int, Int) -> Void)? = nil) throws -> Outcome {
        let started = Date()
        let tok = try Tokenizer(directory: model)
        let packed = LoadedModel.isPacked(model)
        if !packed && numerics != .fireq {
            throw PipelineError(
                "--numerics \(numerics.rawValue) applies to fireq-packed folders; \(model) is an HF checkpoint (FP32 reference)."
            )
        }
        let m: any CausalLanguageModel =
            packed
            ? try QuantizedModel(directory: model, threads: threads, numerics: numerics)
            : try LlamaModel(directory: model, threads: threads)
        let residentAfterLoad = ProcessMemory.residentBytes()
        let bosID = try Self.checkWindows(context: context, bos: bos, config: m.config, modelPath: model)
        let ids = tok.encodeParallel(try readText(text))
        let loaded = Date()
        let r = try Perplexity.evaluate(
            model: m, tokens: ids, context: context, maxWindows: windows, protocol: scoring, bos: bosID,
            source: text, progress: progress)
        return Outcome(
            job: self, result: r, textTokens: ids.count, loadSeconds: loaded.timeIntervalSince(started),
            engine: packed ? "int4-fp8-runtime" : "fp32-reference", packed: packed,
            residentBytesAfterLoad: residentAfterLoad,
            modelWeightBytesInMemory: (m as? QuantizedModel)?.residentWeightBytes
                ?? (m as? LlamaModel)?.residentWeightBytes ?? 0,
            weightsFileBytes: Self.weightsFileBytes(model))
    }

    /// Checks a window length against the model (`eval`, `compare`) and resolves `bos` to the
    /// model's BOS token id (nil without `bos`).
    public static func checkWindows(
        context: Int, bos: Bool, config: ModelConfig, modelPath: String
    ) throws -> Int32? {
        if context > config.maxPositionEmbeddings {
            throw PipelineError(
                "--context \(context) exceeds the model's max_position_embeddings (\(config.maxPositionEmbeddings)).")
        }
        guard bos else { return nil }
        guard let b = config.bosTokenID else {
            throw PipelineError("\(modelPath)/config.json: --bos needs a bos_token_id.")
        }
        return Int32(b)
    }

    /// Bytes of the model's weight files (*.safetensors) in a folder.
    public static func weightsFileBytes(_ directory: String) -> Int {
        let fm = FileManager.default
        let names = (try? fm.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".safetensors") }.reduce(0) {
            $0 + (((try? fm.attributesOfItem(atPath: directory + "/" + $1))?[.size] as? NSNumber)?.intValue ?? 0)
        }
    }
}
