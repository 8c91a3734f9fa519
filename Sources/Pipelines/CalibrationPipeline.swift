import CalibrationStats
import Foundation
import LlamaReference
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
            throw PipelineError("Give exactly one of \(name("text")), \(name("jsonl")), \(name("tokens")), \(name("generate")).")
        }
        guard temperature >= 0, topP > 0, topP <= 1 else {
            throw PipelineError("\(name("temperature")) must be ≥ 0 and \(name("top-p")) in (0, 1].")
        }
        if generate && shuffle { throw PipelineError("\(name("shuffle")) applies to \(name("text")), \(name("jsonl")) and \(name("tokens")), not \(name("generate")).") }
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
    public static func run(modelDir: String, job: CalibrationJob, threads: Int, out: String, log: ProgressLog) throws {
        let started = Date()
        let calibrator = try Calibrator(directory: modelDir, threads: threads)
        let c = calibrator.config
        if job.seqLen > c.maxPositionEmbeddings {
            throw PipelineError("--seq-len \(job.seqLen) exceeds the model's max_position_embeddings (\(c.maxPositionEmbeddings)).")
        }
        let windows: CalibrationWindows
        if job.generate {
            log.line("sampling \(job.samples) × \(job.seqLen) tokens from the model (seed \(job.seed))")
            let model = try LlamaModel(directory: modelDir, threads: threads)
            let t0 = Date()
            windows = try CalibrationWindows.generate(model: model, samples: job.samples, seqLen: job.seqLen,
                                                      temperature: job.temperature, topP: job.topP, seed: job.seed) { done, total in
                if done % 64 == 0 || done == total { log.progress(done: done, total: total, started: t0, label: "tokens") }
            }
        } else {
            let tok = try Tokenizer(directory: modelDir)
            windows = try CalibrationWindows.load(job.source, tokenizer: tok, vocabSize: c.vocabSize,
                                                  samples: job.samples, seqLen: job.seqLen,
                                                  shuffle: job.shuffle, seed: job.seed)
        }
        log.line("calibrating \(modelDir) on \(windows.windows.count) × \(job.seqLen) tokens of \(job.source.path)")
        let hash = try calibrator.modelHash()
        let attrs: [String: String] = [
            "tool_version": FireQVersion.string, "model_sha256": hash, "model_path": modelDir,
            "source_kind": job.source.kind, "source_path": job.source.path, "source_sha256": windows.sourceSHA256,
            "samples": String(job.samples), "seq_len": String(job.seqLen),
            "selection": job.generate ? "generated" : (windows.shuffled ? "shuffled" : "in-order"), "seed": String(windows.seed),
            "tokens": String(job.samples * job.seqLen),
        ]
        let writer = try StatsFile.Writer(path: out, config: c, attributes: attrs)
        let t0 = Date()
        do {
            try writer.writeTokens(windows.windows)
            try calibrator.run(windows.windows, onLayer: { try writer.write($0) }) { done, total in
                log.progress(done: done, total: total, started: t0, label: "layers")
            }
            try writer.finish()
        } catch {
            writer.abandon()
            throw error
        }
        log.line(String(format: "wrote %@ (%d layers) in %.1f s, peak RSS %d MiB", out, c.layerCount,
                        Date().timeIntervalSince(started), ProgressLog.peakRSSMiB()))
    }
}
