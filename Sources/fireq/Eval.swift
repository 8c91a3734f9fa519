import ArgumentParser
import Evaluation
import Foundation
import LlamaReference
import Pipelines
import Runtime
import Tokenizer

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Perplexity of a model on a text file: FP32 reference for an HF folder, the INT4-FP8 runtime for a fireq-packed folder.",
        discussion: """
            The file's bytes are tokenized once as stored (no BOS unless --bos) and cut into non-overlapping \
            windows of --context tokens from token 0; the remainder is dropped. Protocol 'all' scores every \
            token of a window but the first; 'llamacpp' scores only the second half, as llama.cpp's \
            llama-perplexity does.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var window: WindowOptions
    @OptionGroup var numerics: NumericsOption
    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        do {
            let started = Date()
            let tok = try Tokenizer(directory: modelOptions.model)
            // A fireq-packed folder runs on the INT4-FP8 runtime; any other HF folder on the FP32 reference.
            let packed = LoadedModel.isPacked(modelOptions.model)
            if !packed && numerics.value != .fireq {
                throw CLIError(
                    "--numerics \(numerics.value.rawValue) applies to fireq-packed folders; \(modelOptions.model) is an HF checkpoint (FP32 reference)."
                )
            }
            let model: any CausalLanguageModel =
                packed
                ? try QuantizedModel(directory: modelOptions.model, threads: compute.threads, numerics: numerics.value)
                : try LlamaModel(directory: modelOptions.model, threads: compute.threads)
            let residentAfterLoad = residentBytes()
            let bosID = try window.check(model.config, modelPath: modelOptions.model)
            let (text, context, `protocol`, bos) = (window.text, window.context, window.protocol, window.bos)
            let ids = tok.encodeParallel(try readText(text))
            let loaded = Date()
            let isTTY = isatty(2) == 1
            let r = try Perplexity.evaluate(
                model: model, tokens: ids, context: context, maxWindows: window.windows,
                protocol: window.scoring, bos: bosID, source: text
            ) { done, total in
                if isTTY && !json {
                    FileHandle.standardError.write(Data("\rwindow \(done)/\(total)".utf8))
                    if done == total { FileHandle.standardError.write(Data("\n".utf8)) }
                }
            }
            if json {
                printJSON([
                    ("perplexity", "\(r.perplexity)"), ("mean_nll", "\(r.meanNLL)"),
                    ("scored_tokens", "\(r.scoredTokens)"),
                    ("windows", "\(r.windows)"), ("context", "\(context)"), ("protocol", "\"\(`protocol`.rawValue)\""),
                    ("bos", bos ? "true" : "false"), ("text_tokens", "\(ids.count)"),
                    ("tokens_per_second", "\(r.tokensPerSecond)"), ("eval_seconds", "\(r.seconds)"),
                    ("load_seconds", "\(loaded.timeIntervalSince(started))"), ("threads", "\(compute.threads)"),
                    ("engine", packed ? "\"int4-fp8-runtime\"" : "\"fp32-reference\""),
                    ("numerics", packed ? "\"\(numerics.value.rawValue)\"" : "null"),
                    ("resident_bytes_after_load", "\(residentAfterLoad)"),
                    (
                        "model_weight_bytes_in_memory",
                        "\((model as? QuantizedModel)?.residentWeightBytes ?? (model as? LlamaModel)?.residentWeightBytes ?? 0)"
                    ), ("weights_file_bytes", "\(weightsFileBytes(modelOptions.model))")
                ])
            } else {
                print(
                    String(
                        format: "perplexity %.4f  (mean NLL %.6f over %d tokens, %d windows of %d, protocol %@)",
                        r.perplexity, r.meanNLL, r.scoredTokens, r.windows, context, `protocol`.rawValue))
                print(
                    String(
                        format: "%.1f tokens/s on %d threads; load %.2f s", r.tokensPerSecond, compute.threads,
                        loaded.timeIntervalSince(started)))
            }
        } catch { fail(error) }
    }
}

/// Resident set size of this process now (VmRSS, /proc/self/statm), 0 where unavailable.
func residentBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let f = s.split(separator: " ")
    return f.count > 1 ? (Int(f[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
}

/// Bytes of the model's weight files (*.safetensors) in a folder.
func weightsFileBytes(_ directory: String) -> Int {
    let fm = FileManager.default
    let names = (try? fm.contentsOfDirectory(atPath: directory)) ?? []
    return names.filter { $0.hasSuffix(".safetensors") }.reduce(0) {
        $0 + (((try? fm.attributesOfItem(atPath: directory + "/" + $1))?[.size] as? NSNumber)?.intValue ?? 0)
    }
}
