import ArgumentParser
import CalibrationStats
import Evaluation
import Exports
import Foundation
import JSONSupport
import LlamaReference
import Quantization
import Reports
import TensorStore
import Tokenizer

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
        one exits with status 3 and stays in the work folder for inspection.
        """)

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, help: "Output folder (fireq-packed model + report.*).")
    var out: String
    @Option(name: .long, help: "Recipe JSON file (default: the FireQ paper recipe, Calibration/recipes/fireq.json).")
    var recipe: String?
    @OptionGroup var calibration: CalibrationOptions
    @OptionGroup var compute: ComputeOptions
    @Option(name: .customLong("eval-text"), help: "Held-out text of the smoke evaluation (default: the --text calibration file after the calibration windows).")
    var evalText: String?
    @Option(name: .customLong("eval-context"), help: "Smoke evaluation window length.")
    var evalContext: Int = 512
    @Option(name: .customLong("eval-windows"), help: "Smoke evaluation windows.")
    var evalWindows: Int = 8
    @Option(name: .customLong("max-delta-ppl"), help: "Fail (exit 3) when the perplexity rises by more than this many percent.")
    var maxDeltaPPL: Double = 100
    @Option(name: .long, help: "Work folder for stage artifacts (default: OUT.fireq-work).")
    var work: String?
    @Flag(name: .customLong("keep-work"), help: "Keep the work folder after a successful conversion.")
    var keepWork = false
    @Option(name: .long, help: "Also export for other runtimes, published next to OUT (OUT.gguf, OUT.compressed-tensors, OUT.mlx): a comma-separated list of gguf, compressed-tensors, mlx.")
    var export: String?
    @Option(name: .customLong("gguf-metadata"), help: "JSON object of general.* keys for the GGUF export (as fireq export --metadata).")
    var ggufMetadata: String?
    @Flag(name: .long, help: "Replace an existing output folder (and existing exports).")
    var force = false

    /// The --export formats, in the order given.
    var exportFormats: [ExportFormat] {
        (export ?? "").split(separator: ",").compactMap { ExportFormat(rawValue: $0.trimmingCharacters(in: .whitespaces)) }
    }

    /// Where an export is published: next to OUT.
    func exportDestination(_ f: ExportFormat) -> String { out + (f == .gguf ? ".gguf" : "." + f.rawValue) }

    func validate() throws {
        guard evalContext >= 4 else { throw ValidationError("--eval-context must be at least 4.") }
        guard evalWindows >= 1 else { throw ValidationError("--eval-windows must be at least 1.") }
        guard maxDeltaPPL > 0 else { throw ValidationError("--max-delta-ppl must be positive.") }
        if let export {
            for f in export.split(separator: ",") where ExportFormat(rawValue: f.trimmingCharacters(in: .whitespaces)) == nil {
                throw ValidationError("--export: '\(f)' is not one of \(ExportFormat.allCases.map(\.rawValue).joined(separator: ", ")).")
            }
        }
        if ggufMetadata != nil && !exportFormats.contains(.gguf) { throw ValidationError("--gguf-metadata needs --export gguf.") }
        if evalText == nil && (calibration.text == nil || calibration.shuffle) {
            throw ValidationError("Give --eval-text: the default held-out text is the --text calibration file after its in-order calibration windows.")
        }
    }

    func run() throws {
        do {
            let fm = FileManager.default
            let log = ProgressLog(enabled: true)
            func canonical(_ p: String) -> String { URL(fileURLWithPath: p).standardizedFileURL.resolvingSymlinksInPath().path }
            if canonical(out) == canonical(modelOptions.model) {
                throw CLIError("\(out): is the source model's folder; choose another output folder.")
            }
            if fm.fileExists(atPath: out) && !force { throw CLIError("\(out): already exists (pass --force to replace it).") }
            for f in exportFormats where fm.fileExists(atPath: exportDestination(f)) && !force {
                throw CLIError("\(exportDestination(f)): already exists (pass --force to replace it).")
            }
            var overrides = try ggufMetadata.map { try Exporter.ggufMetadata(fromJSONFile: $0) } ?? []
            // The GGUF's general.name defaults as `fireq export OUT` would give it: config.json's
            // _name_or_path, else OUT's folder name (not the work folder's).
            let nameOrPath = (fm.contents(atPath: modelOptions.model + "/config.json").flatMap { try? JSONParser.parse($0) })?["_name_or_path"]?.stringValue ?? ""
            if nameOrPath.isEmpty && !overrides.contains(where: { $0.0 == "general.name" }) {
                overrides.insert(("general.name", .string((out as NSString).lastPathComponent)), at: 0)
            }
            let parent = (out as NSString).deletingLastPathComponent.isEmpty ? "." : (out as NSString).deletingLastPathComponent
            guard fm.isWritableFile(atPath: parent) else { throw CLIError("\(out): cannot write the output: the folder '\(parent)' does not exist or is not writable.") }
            let W = work ?? (out + ".fireq-work")
            try createFolder(W)
            StageRecord.removeLeftovers(in: W)
            StageRecord.removeLeftovers(in: parent, prefix: "." + (out as NSString).lastPathComponent + ".tmp-")
            for f in exportFormats {
                StageRecord.removeLeftovers(in: parent, prefix: "." + (exportDestination(f) as NSString).lastPathComponent + ".tmp-")
            }
            let started = Date()

            let r = try recipe.map { try Recipe.load($0) } ?? Recipe()
            let recipeJSON = r.canonicalJSON
            let calibrator = try Calibrator(directory: modelOptions.model, threads: compute.threads)
            let modelHash = try calibrator.modelHash()
            let tool = FireQVersion.string

            // Stage 1: calibration statistics.
            let stats = W + "/stats.h5"
            var sourceHash = "none"
            if let p = calibration.text ?? calibration.jsonl ?? calibration.tokens { sourceHash = try fileSHA256(p) }
            let c = calibration
            let calKey = StageRecord.key([
                "calibrate", tool, modelHash, c.source.kind, sourceHash, "\(c.samples)", "\(c.seqLen)", "\(c.shuffle)", "\(c.seed)",
                "\(c.temperature)", "\(c.topP)"])
            let statsRecord = StageRecord(path: W + "/stats.stage.json", name: "calibration")
            let statsHashes: [String: String]
            if let h = try statsRecord.current(key: calKey, outputs: [stats], log: log) {
                log.line("[1/3] calibration: up to date (\(stats)), skipped")
                statsHashes = h
            } else {
                log.line("[1/3] calibration")
                try runCalibration(modelDir: modelOptions.model, calibration: calibration, threads: compute.threads, out: stats)
                statsHashes = try statsRecord.write(key: calKey, outputs: [stats])
            }

            // Stage 2: quantization.
            let packed = W + "/packed"
            let statsHash = statsHashes["stats.h5"]!
            let qKey = StageRecord.key(["quantize", tool, modelHash, statsHash, recipeJSON])
            let packedRecord = StageRecord(path: W + "/packed.stage.json", name: "quantization")
            let packedFiles = [packed + "/model.safetensors", packed + "/config.json", packed + "/tokenizer.json"]
            let packedHashes: [String: String]
            if let h = try packedRecord.current(key: qKey, outputs: packedFiles, log: log) {
                log.line("[2/3] quantization: up to date (\(packed)), skipped")
                packedHashes = h
            } else {
                log.line("[2/3] quantization with recipe '\(r.name)'")
                let t0 = Date()
                _ = try Quantizer.run(modelDir: modelOptions.model, statsPath: stats, recipe: r, recipeJSON: recipeJSON, outDir: packed,
                                      toolVersion: tool, threads: compute.threads, force: true) { done, total in
                    log.progress(done: done, total: total, started: t0, label: "layers")
                }
                packedHashes = try packedRecord.write(key: qKey, outputs: packedFiles)
            }

            // Stage 3: smoke evaluation on held-out text, and the report.
            let tok = try Tokenizer(directory: modelOptions.model)
            let evalPath = evalText ?? calibration.text!
            let evalRaw = try readText(evalPath)
            var ids = tok.encodeParallel(evalRaw)
            var heldOut = "all of \(evalPath)"
            if evalText == nil {
                let used = calibration.samples * calibration.seqLen
                ids = Array(ids.dropFirst(used))
                heldOut = "\(evalPath) after its first \(used) tokens (the calibration windows)"
                guard ids.count >= evalContext else {
                    throw CLIError("\(evalPath): only \(ids.count) tokens follow the calibration windows, fewer than one --eval-context window of \(evalContext); give --eval-text.")
                }
            }
            let reportBase = W + "/report"
            let reportFiles = [reportBase + ".json", reportBase + ".md", reportBase + ".html"]
            let evalKey = StageRecord.key(["smoke", tool, modelHash, packedHashes["model.safetensors"]!,
                                           SHA256.hex(Array(evalRaw.utf8)), "\(evalText == nil)", "\(evalContext)", "\(evalWindows)", "\(maxDeltaPPL)"])
            let evalRecord = StageRecord(path: W + "/report.stage.json", name: "smoke evaluation")
            if try evalRecord.current(key: evalKey, outputs: reportFiles, log: log) != nil {
                log.line("[3/3] smoke evaluation: up to date (\(reportBase).json), skipped")
            } else {
                log.line("[3/3] smoke evaluation: \(evalWindows) × \(evalContext) tokens of \(heldOut)")
                let base = try LoadedModel.open(modelOptions.model, label: "FP32 source", threads: compute.threads)
                let quant = try LoadedModel.open(packed, label: r.name, threads: compute.threads)
                let t0 = Date()
                let result = try Comparison.run(baseline: base.model, models: [(quant.provenance.label, quant.model)], baselineName: modelOptions.model,
                                                tokens: ids, context: evalContext, maxWindows: evalWindows, scoring: .all, source: evalPath,
                                                threads: compute.threads) { done, total in
                    log.progress(done: done, total: total, started: t0, label: "windows")
                }
                var rep = CompareReport(title: "fireq convert: \((modelOptions.model as NSString).lastPathComponent) with recipe '\(r.name)'",
                                        result: result, textPath: heldOut, textSHA256: SHA256.hex(Array(evalRaw.utf8)),
                                        baseline: base.provenance, models: [quant.provenance],
                                        environment: .current(toolVersion: tool, threads: compute.threads), notes: notes(for: base.model.config))
                rep.threshold = LossThreshold(maxDeltaPerplexityPercent: maxDeltaPPL, passed: rep.deltaPercent(0) <= maxDeltaPPL)
                try rep.write(base: reportBase)
                _ = try evalRecord.write(key: evalKey, outputs: reportFiles)
            }
            guard let data = fm.contents(atPath: reportBase + ".json"), let j = try? JSONParser.parse(data),
                  let m = j["models"]?.arrayValue?.first, let delta = m["delta_perplexity_percent"]?.doubleValue,
                  let basePPL = j["baseline"]?["perplexity"]?.doubleValue, let ppl = m["perplexity"]?.doubleValue else {
                throw CLIError("\(reportBase).json: the smoke evaluation report cannot be read; delete it and rerun.")
            }
            let summary = String(format: "smoke evaluation: ppl %.3f → %.3f (%@%.1f %%, threshold %.1f %%)", basePPL, ppl, delta >= 0 ? "+" : "", delta, maxDeltaPPL)
            guard delta <= maxDeltaPPL else {
                log.line("\(summary): FAILED")
                FileHandle.standardError.write(Data("error: \(out): not written: the perplexity rose by \(String(format: "%.1f", delta)) %, more than --max-delta-ppl \(maxDeltaPPL) %; the converted model and report.html stay in \(W).\n".utf8))
                Foundation.exit(3)
            }
            log.line("\(summary): passed")

            // Export stages: each a re-expression of the packed folder, recorded like the others.
            var exports: [(ExportFormat, String)] = []
            for f in exportFormats {
                let path = W + "/export." + (f == .gguf ? "gguf" : f.rawValue)
                let outputs = f.isFile ? [path] : [path + "/model.safetensors", path + "/config.json"]
                let key = StageRecord.key(["export", tool, f.rawValue, packedHashes["model.safetensors"]!,
                                           try ggufMetadata.map { try fileSHA256($0) } ?? "none", (out as NSString).lastPathComponent])
                let record = StageRecord(path: W + "/export-\(f.rawValue).stage.json", name: "\(f.rawValue) export")
                if try record.current(key: key, outputs: outputs, log: log) != nil {
                    log.line("[export] \(f.rawValue): up to date (\(path)), skipped")
                } else {
                    log.line("[export] \(f.rawValue)")
                    let s = try Exporter.export(packedDir: packed, format: f, out: path, force: true,
                                                ggufMetadata: f == .gguf ? overrides : [], toolVersion: tool)
                    printExportSummary(s)
                    _ = try record.write(key: key, outputs: outputs)
                }
                exports.append((f, path))
            }

            // Publish OUT (packed folder + report), then each export next to it.
            try publish(from: packed, extra: reportFiles, to: out, parent: parent)
            for (f, path) in exports {
                try publish(from: path, to: exportDestination(f), parent: parent)
                log.line("wrote \(exportDestination(f))")
            }
            if !keepWork { try? fm.removeItem(atPath: W) }
            log.line(String(format: "wrote %@ (report: %@/report.html) in %.1f s", out, out, Date().timeIntervalSince(started)))
        } catch { fail(error) }
    }

    /// Copies `source` (plus `extra` files into it, for a folder) beside `dest` under a temporary
    /// name, then renames it into place; an existing `dest` is first renamed aside (atomic), so
    /// `dest` is never half-deleted or half-written.
    func publish(from source: String, extra: [String] = [], to dest: String, parent: String) throws {
        let fm = FileManager.default
        let name = (dest as NSString).lastPathComponent, pid = ProcessInfo.processInfo.processIdentifier
        let tmp = parent + "/." + name + ".tmp-\(pid)", old = parent + "/." + name + ".tmp-old-\(pid)"
        try? fm.removeItem(atPath: tmp)
        try fm.copyItem(atPath: source, toPath: tmp)
        for f in extra { try fm.copyItem(atPath: f, toPath: tmp + "/" + (f as NSString).lastPathComponent) }
        if fm.fileExists(atPath: dest) { try fm.moveItem(atPath: dest, toPath: old) }
        try fm.moveItem(atPath: tmp, toPath: dest)
        try? fm.removeItem(atPath: old)
    }

    func createFolder(_ path: String) throws {
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw CLIError("\(path): cannot create the work folder (\(error.localizedDescription)).")
        }
    }
}

/// The record a finished stage leaves: the hash of everything it read and of every file it wrote.
struct StageRecord {
    let path: String
    let name: String

    static func key(_ parts: [String]) -> String {
        SHA256.hex(Array(parts.map { "\($0.utf8.count):\($0)" }.joined().utf8))
    }

    /// The outputs' hashes (by file name) when the record exists, its key matches and every output
    /// still has its recorded hash; nil when the stage must run.
    func current(key: String, outputs: [String], log: ProgressLog) throws -> [String: String]? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        guard let j = try? JSONParser.parse(data), let k = j["key"]?.stringValue, let o = j["outputs"]?.objectValue else {
            log.line("\(name): the stage record \(path) is unreadable; recomputing")
            return nil
        }
        guard k == key else {
            log.line("\(name): inputs changed since the last run; recomputing")
            return nil
        }
        var hashes: [String: String] = [:]
        for f in outputs {
            let file = (f as NSString).lastPathComponent
            guard FileManager.default.fileExists(atPath: f), let h = o[file]?.stringValue, h == (try? fileSHA256(f)) else {
                log.line("\(name): \(f) is missing or changed; recomputing")
                return nil
            }
            hashes[file] = h
        }
        return hashes
    }

    /// Records the stage as finished; returns the outputs' hashes (by file name).
    func write(key: String, outputs: [String]) throws -> [String: String] {
        var o = JSONObject(), hashes: [String: String] = [:]
        for f in outputs {
            let file = (f as NSString).lastPathComponent
            hashes[file] = try fileSHA256(f)
            o[file] = .string(hashes[file]!)
        }
        let text = JSONWriter.pretty(.object(JSONObject([("stage", .string(name)), ("key", .string(key)), ("outputs", .object(o)),
                                                         ("finished", .string(ISO8601DateFormatter().string(from: Date())))])))
        try AtomicFile.write(to: path) { (h) throws(TensorStoreError) in try h.write(Data(text.utf8), path: path) }
        return hashes
    }

    /// Temporary files and folders a killed run left behind (`*.tmp-PID…`).
    static func removeLeftovers(in dir: String, prefix: String? = nil) {
        let fm = FileManager.default
        for e in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] where prefix.map({ e.hasPrefix($0) }) ?? e.contains(".tmp-") {
            try? fm.removeItem(atPath: dir + "/" + e)
        }
    }
}
