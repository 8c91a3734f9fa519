import ArgumentParser
import Exports
import Foundation
import Pipelines
import Quantization
import TensorStore

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Calibrate → quantize → smoke-evaluate → report, in one resumable command.",
        discussion: """
            Stages run in a work folder (default OUT.fireq-work) and each finished stage leaves a record \
            with the hash of its inputs and of its output; a rerun skips stages whose record still matches \
            and recomputes stale ones, so a killed conversion resumes where it stopped. The smoke stage runs \
            the FP32 source and the packed model on the same held-out windows (default: the calibration \
            text after the calibration windows) and writes report.json / report.md / report.html. Only a \
            conversion that passes --max-delta-ppl is moved to OUT (atomically, with its report); a failing \
            one exits with status 3 and stays in the work folder for inspection. One conversion at a time \
            writes an output (a lock beside it, .OUT.fireq-lock); a second one fails at once.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, help: "Output folder (fireq-packed model + report.*).")
    var out: String
    @Option(
        name: .long,
        help:
            "Recipe JSON file (default: fireq-plus-6, Calibration/recipes/fireq-plus-6.json, built in; the paper recipe is Calibration/recipes/fireq.json)."
    )
    var recipe: String?
    @OptionGroup var calibration: CalibrationOptions
    @OptionGroup var compute: ComputeOptions
    @Option(
        name: .customLong("eval-text"),
        help:
            "Held-out text of the smoke evaluation (default: the --text calibration file after the calibration windows)."
    )
    var evalText: String?
    @Option(name: .customLong("eval-context"), parsing: .unconditional, help: "Smoke evaluation window length.")
    var evalContext: Int = 512
    @Option(name: .customLong("eval-windows"), parsing: .unconditional, help: "Smoke evaluation windows.")
    var evalWindows: Int = 8
    @Option(
        name: .customLong("max-delta-ppl"), parsing: .unconditional,
        help: "Fail (exit 3) when the perplexity rises by more than this many percent.")
    var maxDeltaPPL: Double = 100
    @Option(name: .long, help: "Work folder for stage artifacts (default: OUT.fireq-work).")
    var work: String?
    @Flag(name: .customLong("keep-work"), help: "Keep the work folder after a successful conversion.")
    var keepWork = false
    @Option(
        name: .long,
        help:
            "Also export for other runtimes, published next to OUT (OUT.gguf, OUT.compressed-tensors, OUT.mlx): a comma-separated list of gguf, compressed-tensors, mlx."
    )
    var export: String?
    @Option(
        name: .customLong("gguf-metadata"),
        help: "JSON object of general.* keys for the GGUF export (as fireq export --metadata).")
    var ggufMetadata: String?
    @Flag(name: .long, help: "Replace an existing output folder (and existing exports).")
    var force = false
    @OptionGroup var shards: ShardOption

    var job: ConvertJob {
        var j = ConvertJob(model: modelOptions.model, out: out)
        j.recipe = recipe
        j.calibration = calibration.job
        j.threads = compute.threads
        j.evalText = evalText
        j.evalContext = evalContext
        j.evalWindows = evalWindows
        j.maxDeltaPPL = maxDeltaPPL
        j.work = work
        j.keepWork = keepWork
        j.exports = (export ?? "").split(separator: ",").compactMap {
            ExportFormat(rawValue: $0.trimmingCharacters(in: .whitespaces))
        }
        j.ggufMetadata = ggufMetadata
        j.force = force
        j.maxShardBytes = parseByteSize(shards.maxShardSize) ?? Quantizer.defaultMaxShardBytes
        return j
    }

    func validate() throws {
        if let export {
            for f in export.split(separator: ",")
            where ExportFormat(rawValue: f.trimmingCharacters(in: .whitespaces)) == nil {
                throw ValidationError(
                    "--export: '\(f)' is not one of \(ExportFormat.allCases.map(\.rawValue).joined(separator: ", ")).")
            }
        }
        do { try job.validate() } catch { throw ValidationError(String(describing: error)) }
    }

    func run() throws {
        do {
            let outcome = try ConvertPipeline.run(job, log: TerminalProgress(), onExport: printExportSummary)
            if let failure = outcome.failure {
                FileHandle.standardError.write(Data("error: \(failure)\n".utf8))
                Foundation.exit(3)
            }
        } catch { fail(error) }
    }
}
