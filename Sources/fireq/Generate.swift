import ArgumentParser
import Foundation
import Pipelines

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
            var s = Generation.Settings()
            s.maxTokens = maxTokens; s.temperature = temperature; s.topP = topP; s.seed = seed
            s.bos = bos; s.stopAtEOS = stopAtEOS; s.threads = compute.threads
            let r = try Generation.run(directory: modelOptions.model, prompt: prompt, settings: s) {
                FileHandle.standardOutput.write(Data($0.utf8))
            }
            FileHandle.standardOutput.write(Data("\n".utf8))
            FileHandle.standardError.write(
                Data(
                    String(
                        format: "%@: prompt %d tokens %.1f tokens/s, generated %d tokens %.1f tokens/s (%d threads)\n",
                        r.engine, r.promptTokens, r.promptTokensPerSecond, r.generated.count, r.decodeTokensPerSecond,
                        compute.threads
                    ).utf8))
        } catch { fail(error) }
    }
}
