import CalibrationStats
import Foundation
import LlamaReference
import ModelDescription
import Runtime
import Tokenizer

/// Text continuation with KV-cached single-token decoding: the FP32 reference decoder for a
/// Hugging Face folder, the INT4-FP8 runtime's decoder for a packed folder (`fireq generate`).
/// The caller receives the continuation as it becomes final (whole UTF-8 characters) and the
/// speed of both phases; nothing is printed here.
public struct Generation: Sendable {
    public struct Settings: Sendable {
        public var maxTokens = 64
        /// 0 is greedy.
        public var temperature: Float = 0
        public var topP: Float = 1
        public var seed: UInt64 = 0
        /// Start with the model's BOS token.
        public var bos = false
        public var stopAtEOS = true
        public var threads = 1
        public init() {}
    }

    public struct Result: Sendable {
        public let engine: String
        public let promptTokens: Int
        public let generated: [Int32]
        public let text: String
        public let promptSeconds: Double
        public let decodeSeconds: Double
        /// Prompt tokens per second (the prefill, one token at a time through the decoder).
        public var promptTokensPerSecond: Double { Double(promptTokens) / max(promptSeconds, 1e-9) }
        /// Generated tokens per second, counting the steps after the first sampled token.
        public var decodeTokensPerSecond: Double { Double(max(generated.count - 1, 0)) / max(decodeSeconds, 1e-9) }
    }

    /// Continues `prompt` with the model in `directory`; `emit` gets each newly final piece of text.
    public static func run(
        directory: String, prompt: String, settings s: Settings, emit: (String) -> Void = { _ in }
    ) throws -> Result {
        guard s.maxTokens >= 1 else { throw PipelineError("--max-tokens must be at least 1.") }
        guard s.temperature >= 0, s.topP > 0, s.topP <= 1 else {
            throw PipelineError("--temperature must be ≥ 0 and --top-p in (0, 1].")
        }
        let tok = try Tokenizer(directory: directory)
        var ids = tok.encode(prompt)
        let packed = LoadedModel.isPacked(directory)
        let config = try ModelConfig(directory: directory)
        if s.bos {
            guard let b = config.bosTokenID else {
                throw PipelineError("\(directory)/config.json: --bos needs a bos_token_id.")
            }
            ids.insert(Int32(b), at: 0)
        }
        guard !ids.isEmpty else { throw PipelineError("--prompt: the prompt has no tokens.") }
        let capacity = ids.count + s.maxTokens
        guard capacity <= config.maxPositionEmbeddings else {
            throw PipelineError(
                "--max-tokens: prompt and continuation (\(capacity) tokens) exceed max_position_embeddings (\(config.maxPositionEmbeddings))."
            )
        }
        let step: (Int32) -> [Float]
        if packed {
            let dec = QuantizedDecoder(
                model: try QuantizedModel(directory: directory, threads: s.threads), capacity: capacity)
            step = { dec.step($0) }
        } else {
            let dec = LlamaDecoder(
                model: try LlamaModel(directory: directory, threads: s.threads), batch: 1, capacity: capacity)
            step = { dec.step([$0]) }
        }
        var rng = SplitMix64(seed: s.seed)
        let t0 = Date()
        var logits: [Float] = []
        for t in ids { logits = step(t) }
        let t1 = Date()
        var out: [Int32] = []
        var printed = ""
        for i in 0..<s.maxTokens {
            let next = logits.withUnsafeBufferPointer {
                Sampler.sample($0, temperature: s.temperature, topP: s.topP, using: &rng)
            }
            if s.stopAtEOS, let e = config.eosTokenID, Int(next) == e { break }
            out.append(next)
            let text = tok.decode(out)
            if text.hasPrefix(printed) {  // what became final (multi-byte characters complete)
                emit(String(text.dropFirst(printed.count)))
                printed = text
            }
            if i + 1 < s.maxTokens { logits = step(next) }
        }
        let text = tok.decode(out)
        if text.hasPrefix(printed) && text.count > printed.count { emit(String(text.dropFirst(printed.count))) }
        let t2 = Date()
        return Result(
            engine: packed ? "int4-fp8-runtime" : "fp32-reference", promptTokens: ids.count, generated: out,
            text: text, promptSeconds: t1.timeIntervalSince(t0), decodeSeconds: t2.timeIntervalSince(t1))
    }
}
