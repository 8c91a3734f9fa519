import ArgumentParser
import Evaluation
import Foundation
import JSONSupport
import LlamaReference
import ModelDescription
import PackedFormat
import Pipelines
import Reports
import Runtime
import TensorStore
import Tokenizer

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a baseline and one or more models on the same windows and report what each lost.",
        discussion: """
            Per model: perplexity under both protocols, Δppl against the baseline, mean and 99th-percentile \
            KL(baseline ‖ model) of the next-token distributions, top-1 agreement, the relative error of \
            the residual stream after every decoder layer, and the error each layer adds on its own (run alone \
            on the baseline's input to it). --report BASE writes BASE.json, BASE.md and a \
            self-contained BASE.html with SVG charts. Folders are HF checkpoints (FP32 reference) or \
            fireq-packed folders (INT4-FP8 runtime), detected from their files.
            """)

    @Option(name: .long, help: "Baseline model folder (usually the source HF checkpoint).")
    var baseline: String
    @Option(name: .long, help: "Model folder to compare (repeat for several).")
    var model: [String]
    @Option(name: .long, help: "Display name of each --model, in order (default: its recipe name or folder name).")
    var label: [String] = []
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var window: WindowOptions
    @OptionGroup var numerics: NumericsOption
    @Option(name: .long, help: "Write BASE.json, BASE.md and BASE.html.")
    var report: String?
    @Option(name: .long, help: "Report title.")
    var title: String = "FireQ quantization report"
    @Flag(name: .long, help: "Print the report JSON on stdout instead of the text table.")
    var json = false

    func validate() throws {
        guard !model.isEmpty else { throw ValidationError("Give at least one --model.") }
        guard label.isEmpty || label.count == model.count else {
            throw ValidationError("Give one --label per --model, or none.")
        }
        guard window.context >= 4 else { throw ValidationError("--context must be at least 4.") }
        for d in [baseline] + model {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: d, isDirectory: &isDir), isDir.boolValue else {
                throw ValidationError("'\(d)' is not a folder.")
            }
        }
    }

    func run() throws {
        do {
            let log = TerminalProgress()
            if let report { try checkWritable(report) }
            let tok = try Tokenizer(directory: baseline)
            let text = window.text
            let raw = try readText(text)
            // Configurations first (cheap), so a mismatch is refused before any model runs; the
            // models are then opened one at a time, so memory holds one model, not all of them.
            let baseConfig = try ModelConfig(directory: baseline)
            for d in model {
                let mc = try ModelConfig(directory: d)
                guard mc.vocabSize == baseConfig.vocabSize, mc.hiddenSize == baseConfig.hiddenSize,
                    mc.layerCount == baseConfig.layerCount
                else {
                    throw ComparisonError.mismatch(name: d, baseline: baseline)
                }
            }
            let bosID = try window.check(baseConfig, modelPath: baseline)
            let ids = tok.encodeParallel(raw)
            var provenances: [ModelProvenance] = []
            let threads = compute.threads, numerics = numerics.value
            let baseEntry = ComparedModel {
                let m = try LoadedModel.open(baseline, label: nil, threads: threads)
                provenances.append(m.provenance)
                return (baseline, m.model)
            }
            let entries = model.enumerated().map { i, d in
                ComparedModel {
                    let m = try LoadedModel.open(
                        d, label: label.isEmpty ? nil : label[i], threads: threads, numerics: numerics)
                    provenances.append(m.provenance)
                    return (m.provenance.label, m.model)
                }
            }
            let t0 = Date()
            let result = try Comparison.run(
                baseline: baseEntry, models: entries,
                baselineName: baseline, tokens: ids, context: window.context, maxWindows: window.windows,
                scoring: window.scoring, bos: bosID, source: text,
                threads: compute.threads
            ) { done, total in
                log.progress(done: done, total: total, started: t0, label: "model windows")
            }
            let rep = CompareReport(
                title: title, result: result, textPath: text, textSHA256: SHA256.hex(Array(raw.utf8)),
                baseline: provenances[0], models: Array(provenances.dropFirst()),
                environment: .current(toolVersion: FireQVersion.string, threads: compute.threads),
                notes: modelNotes(for: baseConfig))
            if let report {
                try rep.write(base: report)
                log.line("wrote \(report).json, \(report).md, \(report).html")
            }
            if json { print(JSONWriter.pretty(rep.json()), terminator: "") } else { printTable(rep) }
        } catch { fail(error) }
    }
}

/// Fails early (before minutes of work) when a report base path cannot be written.
func checkWritable(_ base: String) throws {
    let dir = (base as NSString).deletingLastPathComponent.isEmpty ? "." : (base as NSString).deletingLastPathComponent
    guard FileManager.default.isWritableFile(atPath: dir) else {
        throw CLIError("\(base): cannot write the report: the folder '\(dir)' does not exist or is not writable.")
    }
}

func printTable(_ rep: CompareReport) {
    let r = rep.result, p = r.scoring
    print(
        String(
            format: "%d windows × %d tokens, scoring %@; baseline %@: ppl %.4f (all %.4f, llamacpp %.4f)",
            r.windows, r.context, p.rawValue, rep.baseline.label, r.baseline.perplexity(p), r.baseline.perplexity(.all),
            r.baseline.perplexity(.llamacpp)))
    for (i, s) in r.models.enumerated() {
        print(
            String(
                format:
                    "  %@: ppl %.4f (%@%.2f %%; all %.4f, llamacpp %.4f)  KL mean %.4f p99 %.3f  top-1 %.1f %%  last-layer error %.4f",
                rep.models[i].label, s.perplexity(p), rep.deltaPercent(i) >= 0 ? "+" : "", rep.deltaPercent(i),
                s.perplexity(.all), s.perplexity(.llamacpp), s.klMean ?? 0, s.klP99 ?? 0, 100 * (s.top1Agreement ?? 0),
                s.layerRelativeError.last ?? 0))
    }
}

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Re-render a saved report JSON (from `fireq compare --report` or `fireq convert`) as JSON, Markdown and HTML."
    )

    @Argument(help: "Report JSON file.")
    var json: String
    @Option(name: .long, help: "Write BASE.json, BASE.md and BASE.html.")
    var out: String
    @Option(name: .long, help: "Replace the title.")
    var title: String?

    func run() throws {
        do {
            let data: [UInt8]
            do { data = try FileBytes.read(json, limit: FileBytes.smallJSONLimit) } catch {
                throw CLIError("\(json): cannot read the file (\(error.reason)).")
            }
            let value: JSONValue
            do { value = try JSONParser.parse(data) } catch { throw CLIError("\(json): not valid JSON (\(error)).") }
            var rep = try CompareReport(json: value, path: json)
            if let title { rep.title = title }
            try checkWritable(out)
            try rep.write(base: out)
            FileHandle.standardError.write(Data("wrote \(out).json, \(out).md, \(out).html\n".utf8))
        } catch { fail(error) }
    }
}
