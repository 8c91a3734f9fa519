import ArgumentParser
import Evaluation
import Foundation
import JSONSupport
import Pipelines

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
            var job = EvalJob(model: modelOptions.model, text: window.text)
            job.context = window.context; job.windows = window.windows; job.scoring = window.scoring
            job.bos = window.bos; job.numerics = numerics.value; job.threads = compute.threads
            let isTTY = isatty(2) == 1
            let o = try job.run { done, total in
                if isTTY && !json {
                    FileHandle.standardError.write(Data("\rwindow \(done)/\(total)".utf8))
                    if done == total { FileHandle.standardError.write(Data("\n".utf8)) }
                }
            }
            if json {
                print(JSONWriter.serialize(o.json))
            } else {
                let r = o.result
                print(
                    String(
                        format: "perplexity %.4f  (mean NLL %.6f over %d tokens, %d windows of %d, protocol %@)",
                        r.perplexity, r.meanNLL, r.scoredTokens, r.windows, job.context, job.scoring.rawValue))
                print(
                    String(
                        format: "%.1f tokens/s on %d threads; load %.2f s", r.tokensPerSecond, compute.threads,
                        o.loadSeconds))
            }
        } catch { fail(error) }
    }
}
