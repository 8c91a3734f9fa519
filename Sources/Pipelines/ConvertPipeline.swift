import CalibrationStats
import Evaluation
import Exports
import Foundation
import JSONSupport
import LlamaReference
import ModelDescription
import PackedFormat
import Quantization
import Reports
import TensorStore
import Tokenizer

/// One conversion: what `fireq convert`'s flags and a batch manifest entry describe.
public struct ConvertJob: Sendable, Equatable {
    public var model: String
    public var out: String
    public var recipe: String?
    public var calibration = CalibrationJob()
    public var threads = ProcessInfo.processInfo.activeProcessorCount
    public var evalText: String?
    public var evalContext = 512
    public var evalWindows = 8
    public var maxDeltaPPL: Double = 100
    public var work: String?
    public var keepWork = false
    public var exports: [ExportFormat] = []
    public var ggufMetadata: String?
    public var force = false
    /// Largest packed shard (Quantizer.defaultMaxShardBytes unless given).
    public var maxShardBytes = Quantizer.defaultMaxShardBytes

    public init(model: String, out: String) {
        self.model = model
        self.out = out
    }

    /// The work folder: stage artifacts and records.
    public var workFolder: String { work ?? (out + ".fireq-work") }

    /// Where an export is published: next to OUT.
    public func exportDestination(_ f: ExportFormat) -> String { out + (f == .gguf ? ".gguf" : "." + f.rawValue) }

    /// The settings' own consistency (no file is read); names settings with `name`.
    public func validate(name: SettingName = SettingNames.flag) throws {
        try calibration.validate(name: name)
        guard evalContext >= 4 else { throw PipelineError("\(name("eval-context")) must be at least 4.") }
        guard evalWindows >= 1 else { throw PipelineError("\(name("eval-windows")) must be at least 1.") }
        guard maxDeltaPPL > 0, maxDeltaPPL.isFinite else {
            throw PipelineError("\(name("max-delta-ppl")) must be positive.")
        }
        if ggufMetadata != nil && !exports.contains(.gguf) {
            throw PipelineError("\(name("gguf-metadata")) needs \(name("export")) gguf.")
        }
        guard maxShardBytes >= 1 << 20 else { throw PipelineError("\(name("max-shard-size")) must be at least 1 MiB.") }
        if evalText == nil && (calibration.text == nil || calibration.shuffle) {
            throw PipelineError(
                "Give \(name("eval-text")): the default held-out text is the \(name("text")) calibration file after its in-order calibration windows."
            )
        }
    }
}

/// How long a stage took, and whether this run found it up to date.
public struct StageTiming: Sendable, Equatable {
    public var name: String
    public var seconds: Double
    public var skipped: Bool

    public init(name: String, seconds: Double, skipped: Bool) {
        self.name = name; self.seconds = seconds; self.skipped = skipped
    }

    /// "calibration 326.2 s, quantization 271.9 s, smoke evaluation 90.1 s" (a skipped stage: "up to
    /// date, recorded 326.2 s"): what `fireq convert` prints when it ends.
    public static func summary(_ stages: [StageTiming]) -> String {
        stages.map {
            $0.skipped
                ? String(format: "%@ up to date (recorded %.1f s)", $0.name, $0.seconds)
                : String(format: "%@ %.1f s", $0.name, $0.seconds)
        }.joined(separator: ", ")
    }

    /// `{"NAME": {"seconds": S[, "skipped": true]}, ...}` of batch status files and reports.
    public static func jsonValue(_ stages: [StageTiming]) -> JSONValue {
        .object(
            JSONObject(
                stages.map { s in
                    (
                        s.name,
                        .object(
                            JSONObject(
                                [("seconds", .double(s.seconds))] + (s.skipped ? [("skipped", .bool(true))] : [])))
                    )
                }))
    }
}

/// What a conversion ended with (errors are thrown; a failed threshold is an outcome).
public struct ConvertOutcome: Sendable {
    public var passed: Bool
    public var basePerplexity: Double
    public var perplexity: Double
    public var deltaPercent: Double
    /// The smoke line: "smoke evaluation: ppl A → B (+x %, threshold y %)".
    public var summary: String
    /// The one-sentence failure (threshold) for stderr; nil when passed.
    public var failure: String?
    /// Where report.json lies now: OUT/report.json, or the work folder's when the threshold failed.
    public var reportJSON: String
    public var stages: [StageTiming]
    public var seconds: Double
    /// SHA-256 of the packed model.safetensors.
    public var packedSHA256: String
    /// Where the loss came from, when the threshold failed.
    public var diagnosis: LossDiagnosis? = nil
}

public enum ConvertPipeline {
    /// Calibrate → quantize → smoke-evaluate → report → exports → publish, each stage recorded in
    /// the work folder so a rerun skips what is done. Holds the output's lock throughout.
    public static func run(
        _ job: ConvertJob, log: any ProgressReporter, name: SettingName = SettingNames.flag,
        onExport: (ExportSummary) -> Void = { _ in }
    ) throws -> ConvertOutcome {
        try job.validate(name: name)
        let fm = FileManager.default
        let out = job.out
        if canonicalPath(out) == canonicalPath(job.model) {
            throw PipelineError("\(out): is the source model's folder; choose another output folder.")
        }
        let parent = parentFolder(out)
        guard fm.isWritableFile(atPath: parent) else {
            throw PipelineError(
                "\(out): cannot write the output: the folder '\(parent)' does not exist or is not writable.")
        }
        // The recipe, and whether this model can take it, before the lock, the work folder or any
        // stage: a refused recipe leaves nothing behind.
        let r = try job.recipe.map { try Recipe.load($0) } ?? Recipe.convertDefault
        try Quantizer.checkRecipe(r, config: try ModelConfig(directory: job.model))
        for f in job.exports { try Exporter.checkTarget(f, model: job.model) }
        let lock = try OutputLock.acquire(out)
        defer { lock.release() }
        if fm.fileExists(atPath: out) && !job.force {
            throw PipelineError("\(out): already exists (pass \(name("force")) to replace it).")
        }
        for f in job.exports where fm.fileExists(atPath: job.exportDestination(f)) && !job.force {
            throw PipelineError("\(job.exportDestination(f)): already exists (pass \(name("force")) to replace it).")
        }
        var overrides = try job.ggufMetadata.map { try Exporter.ggufMetadata(fromJSONFile: $0) } ?? []
        // The GGUF's general.name defaults as `fireq export OUT` would give it: config.json's
        // _name_or_path, else OUT's folder name (not the work folder's).
        let nameOrPath =
            (FileBytes.readIfPresent(job.model + "/config.json", limit: FileBytes.smallJSONLimit).flatMap {
                try? JSONParser.parse($0)
            })?["_name_or_path"]?.stringValue ?? ""
        if nameOrPath.isEmpty && !overrides.contains(where: { $0.0 == "general.name" }) {
            overrides.insert(("general.name", .string((out as NSString).lastPathComponent)), at: 0)
        }
        let W = job.workFolder
        do { try fm.createDirectory(atPath: W, withIntermediateDirectories: true) } catch {
            throw PipelineError("\(W): cannot create the work folder (\(error.localizedDescription)).")
        }
        StageRecord.removeLeftovers(in: W)
        StageRecord.removeLeftovers(in: parent, prefix: "." + (out as NSString).lastPathComponent + ".tmp-")
        for f in job.exports {
            StageRecord.removeLeftovers(
                in: parent, prefix: "." + (job.exportDestination(f) as NSString).lastPathComponent + ".tmp-")
        }
        let started = Date()
        var stages: [StageTiming] = []
        /// A recorded stage: skipped when its record still matches `key` and `outputs()`, else
        /// `body` runs and the record is written (with `outputs()` as they stand then). Returns
        /// the outputs' hashes by file name.
        func stage(
            _ record: StageRecord, key: String, timing: String, skipped: String, running: String,
            outputs: () -> [String], _ body: () throws -> Void
        ) throws -> [String: String] {
            if let h = try record.current(key: key, outputs: outputs(), log: log) {
                log.line(skipped)
                stages.append(StageTiming(name: timing, seconds: h.seconds, skipped: true))
                return h.hashes
            }
            log.line(running)
            let t0 = Date()
            try body()
            let s = Date().timeIntervalSince(t0)
            stages.append(StageTiming(name: timing, seconds: s, skipped: false))
            return try record.write(key: key, outputs: outputs(), seconds: s)
        }

        let recipeJSON = r.canonicalJSON
        let calibrator = try Calibrator(directory: job.model, threads: job.threads)
        let modelHash = try calibrator.modelHash()
        let tool = FireQVersion.string

        // The covariance search's blocks are collected by the calibration pass (when it runs),
        // so quantization needs no second pass over the windows (the same bytes either way).
        let keys = try Quantizer.covarianceKeys(recipe: r, config: calibrator.config)
        let covariance =
            keys.isEmpty ? nil : CovarianceBlockCollector(config: calibrator.config, keys: keys, threads: job.threads)

        // Stage 1: calibration statistics.
        let stats = W + "/stats.h5"
        let c = job.calibration
        var sourceHash = "none"
        if let p = c.text ?? c.jsonl ?? c.tokens { sourceHash = try fileSHA256(p) }
        // "sealed": statistics files carry an integrity block since 2026-12-03; a work folder's older
        // file is recomputed, not handed to a reader that refuses it. "unbiased keys": since
        // 2026-12-06 a model with k_proj biases also gets the statistics of k − b, which
        // `attention.kv_center` needs.
        let calKey = StageRecord.key([
            "calibrate sealed unbiased-keys", tool, modelHash, c.source.kind, sourceHash, "\(c.samples)", "\(c.seqLen)",
            "\(c.shuffle)", "\(c.seed)",
            "\(c.temperature)", "\(c.topP)"
        ])
        let statsRecord = StageRecord(path: W + "/stats.stage.json", name: "calibration")
        let statsHashes = try stage(
            statsRecord, key: calKey, timing: "calibration",
            skipped: "[1/3] calibration: up to date (\(stats)), skipped",
            running: "[1/3] calibration", outputs: { [stats] }
        ) {
            try CalibrationPipeline.run(
                modelDir: job.model, job: c, threads: job.threads, out: stats, log: log, observer: covariance)
        }

        // Stage 2: quantization.
        let packed = W + "/packed"
        let statsHash = statsHashes["stats.h5"]!
        let qKey = StageRecord.key(["quantize", tool, modelHash, statsHash, recipeJSON])
        let packedRecord = StageRecord(path: W + "/packed.stage.json", name: "quantization")
        // The weight files as the folder stands (one model.safetensors, or an index and shards).
        func weightNames() -> [String] {
            let n = PackedModel.weightFileNames(in: packed)
            return n.isEmpty ? ["model.safetensors"] : n
        }
        let packedHashes = try stage(
            packedRecord, key: qKey, timing: "quantization",
            skipped: "[2/3] quantization: up to date (\(packed)), skipped",
            running: "[2/3] quantization with recipe '\(r.name)'",
            outputs: { weightNames().map { packed + "/" + $0 } + [packed + "/config.json", packed + "/tokenizer.json"] }
        ) {
            let t0 = Date()
            _ = try Quantizer.run(
                modelDir: job.model, statsPath: stats, recipe: r, recipeJSON: recipeJSON, outDir: packed,
                toolVersion: tool, threads: job.threads, force: true, maxShardBytes: job.maxShardBytes,
                covariance: covariance, note: { log.line($0) }
            ) { done, total in
                log.progress(done: done, total: total, started: t0, label: "steps")
            }
        }

        // The packed weights' identity (PackedModel.contentSHA256, from the recorded hashes).
        let packedSHA: String
        if weightNames() == ["model.safetensors"] {
            packedSHA = packedHashes["model.safetensors"]!
        } else {
            packedSHA = SHA256.hex(Array(weightNames().map { "\($0) \(packedHashes[$0]!)\n" }.joined().utf8))
        }

        // Stage 3: smoke evaluation on held-out text, and the report.
        let tok = try Tokenizer(directory: job.model)
        let evalPath = job.evalText ?? c.text!
        let evalRaw = try readText(evalPath)
        var ids = tok.encodeParallel(evalRaw)
        var heldOut = "all of \(evalPath)"
        if job.evalText == nil {
            let used = c.samples * c.seqLen
            ids = Array(ids.dropFirst(used))
            heldOut = "\(evalPath) after its first \(used) tokens (the calibration windows)"
            guard ids.count >= job.evalContext else {
                throw PipelineError(
                    "\(evalPath): only \(ids.count) tokens follow the calibration windows, fewer than one \(name("eval-context")) window of \(job.evalContext); give \(name("eval-text"))."
                )
            }
        }
        let reportBase = W + "/report"
        let reportFiles = [reportBase + ".json", reportBase + ".md", reportBase + ".html"]
        let evalKey = StageRecord.key([
            "smoke", tool, modelHash, packedSHA,
            SHA256.hex(Array(evalRaw.utf8)), "\(job.evalText == nil)", "\(job.evalContext)", "\(job.evalWindows)",
            "\(job.maxDeltaPPL)"
        ])
        let evalRecord = StageRecord(path: W + "/report.stage.json", name: "smoke evaluation")
        _ = try stage(
            evalRecord, key: evalKey, timing: "smoke",
            skipped: "[3/3] smoke evaluation: up to date (\(reportBase).json), skipped",
            running: "[3/3] smoke evaluation: \(job.evalWindows) × \(job.evalContext) tokens of \(heldOut)",
            outputs: { reportFiles }
        ) {
            let t0 = Date()
            // The source, then the packed model, one at a time against a scratch file of the
            // source's per-window results in the work folder: the peak is the larger model's.
            var provenances: [ModelProvenance] = []
            let threads = job.threads, model = job.model
            let baseEntry = ComparedModel {
                let m = try LoadedModel.open(model, label: "FP32 source", threads: threads)
                provenances.append(m.provenance)
                return (model, m.model)
            }
            let quantEntry = ComparedModel {
                let m = try LoadedModel.open(packed, label: r.name, threads: threads)
                provenances.append(m.provenance)
                return (m.provenance.label, m.model)
            }
            let result = try Comparison.run(
                baseline: baseEntry, models: [quantEntry], baselineName: job.model,
                tokens: ids, context: job.evalContext, maxWindows: job.evalWindows, scoring: .all, source: evalPath,
                scratchDirectory: W, threads: job.threads
            ) { done, total in
                log.progress(done: done, total: total, started: t0, label: "model windows")
            }
            let sourceConfig = try ModelConfig(directory: job.model)
            var rep = CompareReport(
                title: "fireq convert: \((job.model as NSString).lastPathComponent) with recipe '\(r.name)'",
                result: result, textPath: heldOut, textSHA256: SHA256.hex(Array(evalRaw.utf8)),
                baseline: provenances[0], models: [provenances[1]],
                environment: .current(toolVersion: tool, threads: job.threads), notes: modelNotes(for: sourceConfig))
            rep.threshold = LossThreshold(
                maxDeltaPerplexityPercent: job.maxDeltaPPL, passed: rep.deltaPercent(0) <= job.maxDeltaPPL)
            try rep.write(base: reportBase)
        }
        guard let data = FileBytes.readIfPresent(reportBase + ".json", limit: FileBytes.smallJSONLimit),
            let j = try? JSONParser.parse(data),
            let m = j["models"]?.arrayValue?.first, let delta = m["delta_perplexity_percent"]?.doubleValue,
            let basePPL = j["baseline"]?["perplexity"]?.doubleValue, let ppl = m["perplexity"]?.doubleValue
        else {
            throw PipelineError("\(reportBase).json: the smoke evaluation report cannot be read; delete it and rerun.")
        }
        let summary = String(
            format: "smoke evaluation: ppl %.3f → %.3f (%@%.1f %%, threshold %g %%)", basePPL, ppl,
            delta >= 0 ? "+" : "", delta, job.maxDeltaPPL)
        var outcome = ConvertOutcome(
            passed: delta <= job.maxDeltaPPL, basePerplexity: basePPL, perplexity: ppl, deltaPercent: delta,
            summary: summary, failure: nil, reportJSON: reportBase + ".json", stages: stages, seconds: 0,
            packedSHA256: packedSHA)
        guard outcome.passed else {
            log.line("\(summary): FAILED")
            // Where the loss comes from, on the same windows (two more runs of the packed model).
            log.line("[3/3] smoke evaluation: measuring where the loss comes from (weights alone, + FP8 activations)")
            let diagnosis = try LossDiagnosis.run(
                packedDir: packed, tokens: ids, context: job.evalContext, windows: job.evalWindows,
                basePPL: basePPL, fullPPL: ppl, threads: job.threads)
            outcome.diagnosis = diagnosis
            outcome.failure =
                "\(out): not written: the perplexity rose by \(String(format: "%.1f", delta)) %, more than \(name("max-delta-ppl")) \(String(format: "%g", job.maxDeltaPPL)) %; \(diagnosis.sentence); the converted model and report.html stay in \(W)."
            outcome.seconds = Date().timeIntervalSince(started)
            return outcome
        }
        log.line("\(summary): passed")

        // Export stages: each a re-expression of the packed folder, recorded like the others.
        var exports: [(ExportFormat, String)] = []
        for f in job.exports {
            let path = W + "/export." + (f == .gguf ? "gguf" : f.rawValue)
            let outputs = f.isFile ? [path] : [path + "/model.safetensors", path + "/config.json"]
            let key = StageRecord.key([
                "export", tool, f.rawValue, packedSHA, try fileSHA256(reportBase + ".json"),
                try job.ggufMetadata.map { try fileSHA256($0) } ?? "none", (out as NSString).lastPathComponent
            ])
            let record = StageRecord(path: W + "/export-\(f.rawValue).stage.json", name: "\(f.rawValue) export")
            _ = try stage(
                record, key: key, timing: "export-" + f.rawValue,
                skipped: "[export] \(f.rawValue): up to date (\(path)), skipped",
                running: "[export] \(f.rawValue)", outputs: { outputs }
            ) {
                onExport(
                    try Exporter.export(
                        packedDir: packed, format: f, out: path, force: true,
                        ggufMetadata: f == .gguf ? overrides : [], toolVersion: tool, report: reportBase + ".json",
                        modelName: (out as NSString).lastPathComponent))
            }
            exports.append((f, path))
        }

        // Publish OUT (packed folder + report), then each export next to it: moved out of the work
        // folder when it is not kept (no second copy of a model on disk), copied otherwise.
        try publish(from: packed, extra: reportFiles, to: out, parent: parent, move: !job.keepWork)
        for (f, path) in exports {
            try publish(from: path, to: job.exportDestination(f), parent: parent, move: !job.keepWork)
            log.line("wrote \(job.exportDestination(f))")
        }
        if !job.keepWork { try? fm.removeItem(atPath: W) }
        outcome.stages = stages
        outcome.reportJSON = out + "/report.json"
        outcome.seconds = Date().timeIntervalSince(started)
        log.line(String(format: "wrote %@ (report: %@/report.html) in %.1f s", out, out, outcome.seconds))
        log.line("stages: " + StageTiming.summary(stages))
        return outcome
    }

    /// Copies (or, with `move`, renames; copies when the work folder is on another file system)
    /// `source` (plus `extra` files into it, for a folder) beside `dest` under a temporary name,
    /// then renames it into place; an existing `dest` is first renamed aside (atomic), so `dest`
    /// is never half-deleted or half-written.
    static func publish(
        from source: String, extra: [String] = [], to dest: String, parent: String, move: Bool = false
    ) throws {
        let fm = FileManager.default
        let name = (dest as NSString).lastPathComponent, pid = ProcessInfo.processInfo.processIdentifier
        let tmp = parent + "/." + name + ".tmp-\(pid)", old = parent + "/." + name + ".tmp-old-\(pid)"
        try? fm.removeItem(atPath: tmp)
        if !(move && rename(source, tmp) == 0) { try fm.copyItem(atPath: source, toPath: tmp) }
        for f in extra { try fm.copyItem(atPath: f, toPath: tmp + "/" + (f as NSString).lastPathComponent) }
        if fm.fileExists(atPath: dest) { try fm.moveItem(atPath: dest, toPath: old) }
        try fm.moveItem(atPath: tmp, toPath: dest)
        try? fm.removeItem(atPath: old)
    }
}

/// The record a finished stage leaves: the hash of everything it read, of every file it wrote,
/// and how long it took.
public struct StageRecord {
    public let path: String
    public let name: String

    public static func key(_ parts: [String]) -> String {
        SHA256.hex(Array(parts.map { "\($0.utf8.count):\($0)" }.joined().utf8))
    }

    /// The outputs' hashes (by file name) and the recorded seconds when the record exists, its
    /// key matches and every output still has its recorded hash; nil when the stage must run.
    func current(
        key: String, outputs: [String], log: any ProgressReporter
    ) throws -> (hashes: [String: String], seconds: Double)? {
        guard let data = FileBytes.readIfPresent(path, limit: FileBytes.smallJSONLimit) else { return nil }
        guard let j = try? JSONParser.parse(data), let k = j["key"]?.stringValue, let o = j["outputs"]?.objectValue
        else {
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
            guard FileManager.default.fileExists(atPath: f), let h = o[file]?.stringValue, h == (try? fileSHA256(f))
            else {
                log.line("\(name): \(f) is missing or changed; recomputing")
                return nil
            }
            hashes[file] = h
        }
        return (hashes, j["seconds"]?.doubleValue ?? 0)
    }

    /// Records the stage as finished; returns the outputs' hashes (by file name).
    func write(key: String, outputs: [String], seconds: Double) throws -> [String: String] {
        var o = JSONObject(), hashes: [String: String] = [:]
        for f in outputs {
            let file = (f as NSString).lastPathComponent
            hashes[file] = try fileSHA256(f)
            o[file] = .string(hashes[file]!)
        }
        let text = JSONWriter.pretty(
            .object(
                JSONObject([
                    ("stage", .string(name)), ("key", .string(key)), ("outputs", .object(o)),
                    ("seconds", .double(seconds)), ("finished", .string(isoNow()))
                ])))
        try writeAtomically(text, to: path)
        return hashes
    }

    /// Temporary files and folders a killed run left behind (`*.tmp-PID…`).
    static func removeLeftovers(in dir: String, prefix: String? = nil) {
        let fm = FileManager.default
        for e in (try? fm.contentsOfDirectory(atPath: dir)) ?? []
        where prefix.map({ e.hasPrefix($0) }) ?? e.contains(".tmp-") {
            try? fm.removeItem(atPath: dir + "/" + e)
        }
    }
}

/// One writer per output folder: an exclusive flock(2) on `PARENT/.NAME.fireq-lock`, held from the
/// start of a conversion to its publication. The kernel drops it when the holder dies, so it is
/// never stale; the file (pid, host, start time of the holder) stays.
public final class OutputLock {
    let fd: Int32
    public let path: String

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    public static func lockPath(for out: String) -> String {
        parentFolder(out) + "/." + (out as NSString).lastPathComponent + ".fireq-lock"
    }

    /// Takes the lock, or throws naming the holder.
    public static func acquire(_ out: String) throws -> OutputLock {
        let path = lockPath(for: out)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw PipelineError("\(path): cannot open the output's lock file (\(String(cString: strerror(errno)))).")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let err = errno
            var buf = [UInt8](repeating: 0, count: 512)
            let n = pread(fd, &buf, buf.count, 0)
            close(fd)
            guard err == EWOULDBLOCK else {
                throw PipelineError("\(path): cannot lock the output (\(String(cString: strerror(err)))).")
            }
            let holder =
                n > 0
                ? String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                : "unknown holder"
            throw PipelineError(
                "\(out): another fireq conversion (\(holder)) is writing this output; wait for it to finish or stop it."
            )
        }
        let who = "pid \(getpid()) on \(hostName()), since \(isoNow())\n"
        _ = ftruncate(fd, 0)
        _ = who.withCString { pwrite(fd, $0, strlen($0), 0) }
        return OutputLock(fd: fd, path: path)
    }

    private var released = false

    public func release() {
        guard !released else { return }
        released = true
        _ = flock(fd, LOCK_UN)
        close(fd)
    }

    deinit { release() }
}
