import CalibrationStats
import Foundation
import LlamaReference
import ModelDescription
import Tokenizer

/// How a setting is named to the person who gave it: `--seq-len` on the command line,
/// `"seq_len"` in a batch manifest.
public typealias SettingName = @Sendable (String) -> String

public enum SettingNames {
    public static let flag: SettingName = { "--" + $0 }
    public static let manifestKey: SettingName = { "\"" + $0.replacingOccurrences(of: "-", with: "_") + "\"" }
}

/// Which calibration windows to run (`fireq calibrate` / `convert`'s calibration flags).
public struct CalibrationJob: Sendable, Equatable {
    public var text: String?
    public var jsonl: String?
    public var tokens: String?
    public var generate = false
    public var temperature: Float = 1.0
    public var topP: Float = 0.95
    public var samples = 10
    public var seqLen = 2048
    public var shuffle = false
    public var seed: UInt64 = 0

    public init() {}

    /// The settings' own consistency; names them with `name`.
    public func validate(name: SettingName = SettingNames.flag) throws {
        let given = [text, jsonl, tokens].compactMap { $0 }.count + (generate ? 1 : 0)
        guard given == 1 else {
            throw PipelineError(
                "Give exactly one of \(name("text")), \(name("jsonl")), \(name("tokens")), \(name("generate")).")
        }
        guard temperature >= 0, topP > 0, topP <= 1 else {
            throw PipelineError("\(name("temperature")) must be ≥ 0 and \(name("top-p")) in (0, 1].")
        }
        if generate && shuffle {
            throw PipelineError(
                "\(name("shuffle")) applies to \(name("text")), \(name("jsonl")) and \(name("tokens")), not \(name("generate"))."
            )
        }
        guard samples >= 1 else { throw PipelineError("\(name("samples")) must be at least 1.") }
        guard seqLen >= 2 else { throw PipelineError("\(name("seq-len")) must be at least 2.") }
    }

    public var source: CalibrationSource {
        if generate { return .generate(temperature: temperature, topP: topP) }
        if let text { return .text(text) }
        if let jsonl { return .jsonl(jsonl) }
        return .tokens(tokens!)
    }
}

public enum CalibrationPipeline {
    /// Calibrates `modelDir` on the windows `job` describes and writes the statistics to `out`
    /// (atomically; an existing file is replaced).
    /// With `part`, only that part's windows are run and a part file is written
    /// (Formats/calibration-stats.md "Parts and their merge").
    public static func run(
        modelDir: String, job: CalibrationJob, threads: Int, out: String, log: any ProgressReporter,
        part: StatsFile.Part? = nil, observer: ForwardObserver? = nil
    ) throws {
        if let part, !(part.count >= 1 && (1...part.count).contains(part.index)) {
            throw PipelineError("--part \(part.index)/\(part.count): I must be between 1 and P (P ≥ 1).")
        }
        if let part, part.count > job.samples {
            throw PipelineError(
                "--part \(part.index)/\(part.count): \(part.count) parts of \(job.samples) windows would leave a part empty; use at most \(job.samples) parts."
            )
        }
        let started = Date()
        let calibrator = try Calibrator(directory: modelDir, threads: threads)
        let c = calibrator.config
        if job.seqLen > c.maxPositionEmbeddings {
            throw PipelineError(
                "--seq-len \(job.seqLen) exceeds the model's max_position_embeddings (\(c.maxPositionEmbeddings)).")
        }
        let windows: CalibrationWindows
        if job.generate {
            log.line("sampling \(job.samples) × \(job.seqLen) tokens from the model (seed \(job.seed))")
            let model = try LlamaModel(directory: modelDir, threads: threads)
            let t0 = Date()
            windows = try CalibrationWindows.generate(
                model: model, samples: job.samples, seqLen: job.seqLen,
                temperature: job.temperature, topP: job.topP, seed: job.seed
            ) { done, total in
                if done % 64 == 0 || done == total {
                    log.progress(done: done, total: total, started: t0, label: "tokens")
                }
            }
        } else {
            let tok = try Tokenizer(directory: modelDir)
            windows = try CalibrationWindows.load(
                job.source, tokenizer: tok, vocabSize: c.vocabSize,
                samples: job.samples, seqLen: job.seqLen,
                shuffle: job.shuffle, seed: job.seed)
        }
        log.line("calibrating \(modelDir) on \(windows.windows.count) × \(job.seqLen) tokens of \(job.source.path)")
        let hash = try calibrator.modelHash()
        let attrs: [String: String] = [
            "tool_version": FireQVersion.string, "model_sha256": hash, "model_path": canonicalPath(modelDir),
            "source_kind": job.source.kind,
            "source_path": job.generate ? job.source.path : canonicalPath(job.source.path),
            "source_sha256": windows.sourceSHA256,
            "samples": String(job.samples), "seq_len": String(job.seqLen),
            "selection": job.generate ? "generated" : (windows.shuffled ? "shuffled" : "in-order"),
            "seed": String(windows.seed),
            "tokens": String(job.samples * job.seqLen)
        ]
        let range = part?.range(windows: windows.windows.count) ?? 0..<windows.windows.count
        let mine = Array(windows.windows[range])
        if let part {
            log.line(
                "part \(part.index)/\(part.count): windows \(range.lowerBound) … \(range.upperBound - 1) of \(windows.windows.count)"
            )
        }
        let writer = try StatsFile.Writer(
            path: out, config: c, attributes: attrs, part: part, firstWindow: range.lowerBound, windowCount: mine.count)
        let t0 = Date()
        do {
            try writer.writeTokens(mine)
            try calibrator.run(mine, keepWindowSums: part != nil, observer: observer, onLayer: { try writer.write($0) })
            { done, total in
                log.progress(done: done, total: total, started: t0, label: "layers")
            }
            try writer.finish()
        } catch {
            writer.abandon()
            throw error
        }
        log.line(
            String(
                format: "wrote %@ (%d layers) in %.1f s, peak RSS %d MiB", out, c.layerCount,
                Date().timeIntervalSince(started), ProcessMemory.peakRSSMiB()))
    }

    /// Merges the part files of one calibration run into its statistics file (byte-identical to the
    /// run over all windows: Formats/calibration-stats.md "Parts and their merge"). `modelDir`
    /// gives the shapes; every refusal names the file.
    public static func merge(modelDir: String, parts paths: [String], out: String, log: any ProgressReporter) throws {
        let c = try ModelConfig(directory: modelDir)
        guard !paths.isEmpty else {
            throw PipelineError("calibrate-merge needs the part files (fireq calibrate --part I/P) to merge.")
        }
        let parts = try paths.map { try StatsFile.readPart($0, config: c) }
        let runKeys = StatsFile.attributeNames.filter { $0 != "format" }
        var byIndex: [Int: (path: String, contents: StatsFile.Contents)] = [:]
        var total: Int?
        for (path, p) in zip(paths, parts) {
            let a = p.attributes
            for k in runKeys where a[k] != parts[0].attributes[k] {
                throw PipelineError(
                    "\(path): is a part of another calibration than \(paths[0]) (its \(k) is '\(a[k] ?? "")', not '\(parts[0].attributes[k] ?? "")')."
                )
            }
            let fields = (a["part"] ?? "").split(separator: "/").map { Int($0) }
            guard fields.count == 2, let i = fields[0], let n = fields[1], n >= 1, (1...n).contains(i) else {
                throw PipelineError("\(path): its part attribute '\(a["part"] ?? "")' is not I/P with 1 ≤ I ≤ P.")
            }
            if let total, total != n {
                throw PipelineError("\(path): is part \(i) of \(n), but \(paths[0]) is of \(total) parts.")
            }
            total = n
            if let other = byIndex[i] {
                throw PipelineError("\(path): part \(i)/\(n) is given twice (also \(other.path)).")
            }
            let samples = Int(a["samples"] ?? "") ?? -1
            let want = StatsFile.Part(index: i, count: n).range(windows: samples)
            guard a["first_window"] == String(want.lowerBound), a["window_count"] == String(want.count) else {
                throw PipelineError(
                    "\(path): holds windows from \(a["first_window"] ?? "?") (\(a["window_count"] ?? "?") of them), not the \(want.count) from \(want.lowerBound) that part \(i)/\(n) of \(samples) covers."
                )
            }
            byIndex[i] = (path, p)
        }
        let n = total!
        if let missing = (1...n).first(where: { byIndex[$0] == nil }) {
            throw PipelineError("\(out): part \(missing)/\(n) is missing (given: \(paths.joined(separator: ", "))).")
        }
        let ordered = (1...n).map { byIndex[$0]!.contents }
        log.line("merging \(n) parts (\(ordered.reduce(0) { $0 + ($1.tokens?.count ?? 0) }) windows) into \(out)")
        var attrs = parts[0].attributes
        for k in [
            "format", "format_version", "layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim",
            "intermediate_size"
        ]
            + StatsFile.partAttributeNames
        { attrs[k] = nil }
        let writer = try StatsFile.Writer(path: out, config: c, attributes: attrs)
        do {
            if ordered.allSatisfy({ $0.tokens != nil }) { try writer.writeTokens(ordered.flatMap { $0.tokens! }) }
            for i in 0..<c.layerCount {
                try writer.write(Self.combine(ordered.map { $0.layers[i] }, config: c))
            }
            try writer.finish()
        } catch {
            writer.abandon()
            throw error
        }
        log.line("wrote \(out)")
    }

    /// One layer's statistics from its parts' (in part order): maxima as the collector takes them,
    /// sums as 0 + each window's partial in window order.
    static func combine(_ parts: [LayerStatistics], config c: ModelConfig) -> LayerStatistics {
        var s = LayerStatistics(layer: parts[0].layer, config: c)
        func maxInto(_ m: inout [Float], _ x: [Float]) {
            for j in m.indices where x[j] > m[j] || x[j].isNaN { m[j] = x[j] }
        }
        for p in parts {
            maxInto(&s.kPreRopePairNormMax, p.kPreRopePairNormMax)
            maxInto(&s.kPostRopeAbsmax, p.kPostRopeAbsmax)
            maxInto(&s.qPostRopeAbsmax, p.qPostRopeAbsmax)
            maxInto(&s.vAbsmax, p.vAbsmax)
            if let u = p.kPreRopePairNormMaxUnbiased {
                var m = s.kPreRopePairNormMaxUnbiased ?? [Float](repeating: 0, count: u.count); maxInto(&m, u);
                s.kPreRopePairNormMaxUnbiased = m
            }
            if let u = p.kPostRopeAbsmaxUnbiased {
                var m = s.kPostRopeAbsmaxUnbiased ?? [Float](repeating: 0, count: u.count); maxInto(&m, u);
                s.kPostRopeAbsmaxUnbiased = m
            }
            for tap in InputTap.allCases {
                let pt = p.inputs[tap]!
                maxInto(&s.inputs[tap]!.absmax, pt.absmax)
                for w in pt.windows ?? [] { s.inputs[tap]!.add(window: w, keep: false) }
            }
        }
        return s
    }
}
