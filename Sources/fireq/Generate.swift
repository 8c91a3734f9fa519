import ArgumentParser
import CalibrationStats
import Foundation
import LlamaReference
import ModelDescription
import Pipelines
import Runtime
import Tokenizer

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Continue a prompt with KV-cached single-token decoding (FP32 reference for an HF folder, INT4-FP8 runtime for a packed folder).",
        discussion:
            "Prints the continuation on stdout; speed (prompt and decode tokens/s) on stderr. --temperature 0 is greedy."
    )

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var compute: ComputeOptions
    @Option(name: .long, help: "Prompt text (no BOS is added unless --bos).")
    var prompt: String
    @Option(name: .customLong("max-tokens"), parsing: .unconditional, help: "Tokens to generate.")
    var maxTokens: Int = 64
    @Option(name: .long, parsing: .unconditional, help: "Sampling temperature (0 = greedy).")
    var temperature: Float = 0
    @Option(name: .customLong("top-p"), parsing: .unconditional, help: "Nucleus mass.")
    var topP: Float = 1
    @Option(name: .long, parsing: .unconditional, help: "Sampling seed.")
    var seed: UInt64 = 0
    @Flag(name: .long, help: "Start with the model's BOS token.")
    var bos = false
    @Flag(name: .customLong("stop-at-eos"), inversion: .prefixedNo, help: "Stop at the model's EOS token.")
    var stopAtEOS = true

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1.") }
        guard temperature >= 0, topP > 0, topP <= 1 else {
            throw ValidationError("--temperature must be ≥ 0 and --top-p in (0, 1].")
        }
    }

    func run() throws {
        do {
            let tok = try Tokenizer(directory: modelOptions.model)
            var ids = tok.encode(prompt)
            let packed = LoadedModel.isPacked(modelOptions.model)
            let config = try ModelConfig(directory: modelOptions.model)
            if bos {
                guard let b = config.bosTokenID else {
                    throw CLIError("\(modelOptions.model)/config.json: --bos needs a bos_token_id.")
                }
                ids.insert(Int32(b), at: 0)
            }
            guard !ids.isEmpty else { throw CLIError("--prompt: the prompt has no tokens.") }
            let capacity = ids.count + maxTokens
            guard capacity <= config.maxPositionEmbeddings else {
                throw CLIError(
                    "--max-tokens: prompt and continuation (\(capacity) tokens) exceed max_position_embeddings (\(config.maxPositionEmbeddings))."
                )
            }
            let step: (Int32) -> [Float]
            if packed {
                let dec = QuantizedDecoder(
                    model: try QuantizedModel(directory: modelOptions.model, threads: compute.threads),
                    capacity: capacity)
                step = { dec.step($0) }
            } else {
                let dec = LlamaDecoder(
                    model: try LlamaModel(directory: modelOptions.model, threads: compute.threads), batch: 1,
                    capacity: capacity)
                step = { dec.step([$0]) }
            }
            var rng = SplitMix64(seed: seed)
            let t0 = Date()
            var logits: [Float] = []
            for t in ids { logits = step(t) }
            let t1 = Date()
            var out: [Int32] = []
            var printed = ""
            for i in 0..<maxTokens {
                let next = logits.withUnsafeBufferPointer {
                    Sampler.sample($0, temperature: temperature, topP: topP, using: &rng)
                }
                if stopAtEOS, let e = config.eosTokenID, Int(next) == e { break }
                out.append(next)
                let text = tok.decode(out)
                if text.hasPrefix(printed) {  // print what became final (multi-byte characters complete)
                    FileHandle.standardOutput.write(Data(text.dropFirst(printed.count).utf8))
                    printed = text
                }
                if i + 1 < maxTokens { logits = step(next) }
            }
            let text = tok.decode(out)
            if text.hasPrefix(printed) { FileHandle.standardOutput.write(Data(text.dropFirst(printed.count).utf8)) }
            FileHandle.standardOutput.write(Data("\n".utf8))
            let t2 = Date()
            FileHandle.standardError.write(
                Data(
                    String(
                        format: "%@: prompt %d tokens %.1f tokens/s, generated %d tokens %.1f tokens/s (%d threads)\n",
                        packed ? "int4-fp8-runtime" : "fp32-reference", ids.count,
                        Double(ids.count) / t1.timeIntervalSince(t0),
                        out.count, Double(max(out.count - 1, 0)) / max(t2.timeIntervalSince(t1), 1e-9), compute.threads
                    ).utf8))
        } catch { fail(error) }
    }
}
