import ArgumentParser
import Evaluation
import Foundation
import LlamaReference
import PackedFormat
import Runtime
import TensorStore
import Tokenizer

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Perplexity of a model on a text file: FP32 reference for an HF folder, the INT4-FP8 runtime for a fireq-packed folder.",
        discussion: """
        The file's bytes are tokenized once as stored (no BOS unless --bos) and cut into non-overlapping \
        windows of --context tokens from token 0; the remainder is dropped. Protocol 'all' scores every \
        token of a window but the first; 'llamacpp' scores only the second half, as llama.cpp's \
        llama-perplexity does.
        """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var compute: ComputeOptions
    @Option(name: .long, help: "Text file to evaluate.")
    var text: String
    @Option(name: .long, help: "Window length in tokens.")
    var context: Int = 512
    @Option(name: .long, help: "Evaluate at most this many windows (default: all).")
    var windows: Int?
    @Option(name: .long, help: "Which tokens are scored: all | llamacpp.")
    var `protocol`: String = "all"
    @Flag(name: .long, help: "Start every window with the model's BOS token.")
    var bos = false
    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        guard context >= 2 else { throw ValidationError("--context must be at least 2.") }
        if let windows, windows < 1 { throw ValidationError("--windows must be at least 1.") }
        guard PerplexityProtocol(rawValue: `protocol`) != nil else {
            throw ValidationError("--protocol must be one of: \(PerplexityProtocol.allCases.map(\.rawValue).joined(separator: ", ")).")
        }
    }

    func run() throws {
        do {
            let started = Date()
            let tok = try Tokenizer(directory: modelOptions.model)
            // A fireq-packed folder runs on the INT4-FP8 runtime; any other HF folder on the FP32 reference.
            let packed = (try? SafetensorsFile(path: modelOptions.model + "/model.safetensors"))?.metadata["fireq.format"] == PackedFormat.name
            let model: any CausalLanguageModel = packed
                ? try QuantizedModel(directory: modelOptions.model, threads: compute.threads)
                : try LlamaModel(directory: modelOptions.model, threads: compute.threads)
            if context > model.config.maxPositionEmbeddings {
                throw CLIError("--context \(context) exceeds the model's max_position_embeddings (\(model.config.maxPositionEmbeddings)).")
            }
            var bosID: Int32? = nil
            if bos {
                guard let b = model.config.bosTokenID else { throw CLIError("\(modelOptions.model)/config.json: --bos needs a bos_token_id.") }
                bosID = Int32(b)
            }
            let ids = tok.encodeParallel(try readText(text))
            let loaded = Date()
            let isTTY = isatty(2) == 1
            let r = try Perplexity.evaluate(model: model, tokens: ids, context: context, maxWindows: windows,
                                            protocol: PerplexityProtocol(rawValue: `protocol`)!, bos: bosID, source: text) { done, total in
                if isTTY && !json {
                    FileHandle.standardError.write(Data("\rwindow \(done)/\(total)".utf8))
                    if done == total { FileHandle.standardError.write(Data("\n".utf8)) }
                }
            }
            if json {
                printJSON([
                    ("perplexity", "\(r.perplexity)"), ("mean_nll", "\(r.meanNLL)"), ("scored_tokens", "\(r.scoredTokens)"),
                    ("windows", "\(r.windows)"), ("context", "\(context)"), ("protocol", "\"\(`protocol`)\""),
                    ("bos", bos ? "true" : "false"), ("text_tokens", "\(ids.count)"),
                    ("tokens_per_second", "\(r.tokensPerSecond)"), ("eval_seconds", "\(r.seconds)"),
                    ("load_seconds", "\(loaded.timeIntervalSince(started))"), ("threads", "\(compute.threads)"),
                    ("engine", packed ? "\"int4-fp8-runtime\"" : "\"fp32-reference\""),
                ])
            } else {
                print(String(format: "perplexity %.4f  (mean NLL %.6f over %d tokens, %d windows of %d, protocol %@)",
                             r.perplexity, r.meanNLL, r.scoredTokens, r.windows, context, `protocol`))
                print(String(format: "%.1f tokens/s on %d threads; load %.2f s", r.tokensPerSecond, compute.threads, loaded.timeIntervalSince(started)))
            }
        } catch { fail(error) }
    }
}
