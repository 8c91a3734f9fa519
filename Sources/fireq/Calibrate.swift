import ArgumentParser
import CalibrationStats
import Foundation
import LlamaReference
import Tokenizer

struct CalibrationOptions: ParsableArguments {
    @Option(name: .long, help: "Calibration text file (UTF-8; bytes as stored, no BOS).")
    var text: String?
    @Option(name: .long, help: "Calibration JSON Lines file (objects with a string field 'text').")
    var jsonl: String?
    @Option(name: .long, help: "Pre-tokenized windows: HDF5 file with dataset 'tokens', int32 [N, L].")
    var tokens: String?
    @Flag(name: .long, help: "Data-free: sample the N windows from the model itself (seeded by --seed).")
    var generate = false
    @Option(name: .long, help: "Sampling temperature of --generate.")
    var temperature: Float = 1.0
    @Option(name: .customLong("top-p"), help: "Nucleus mass of --generate.")
    var topP: Float = 0.95
    @Option(name: .long, help: "Number of calibration windows N.")
    var samples: Int = 10
    @Option(name: .customLong("seq-len"), help: "Tokens per window L.")
    var seqLen: Int = 2048
    @Flag(name: .long, help: "Pick the N windows by a seeded shuffle instead of in order from token 0.")
    var shuffle = false
    @Option(name: .long, help: "Seed of --shuffle.")
    var seed: UInt64 = 0

    func validate() throws {
        let given = [text, jsonl, tokens].compactMap { $0 }.count + (generate ? 1 : 0)
        guard given == 1 else { throw ValidationError("Give exactly one of --text, --jsonl, --tokens, --generate.") }
        guard temperature >= 0, topP > 0, topP <= 1 else { throw ValidationError("--temperature must be ≥ 0 and --top-p in (0, 1].") }
        if generate && shuffle { throw ValidationError("--shuffle applies to --text, --jsonl and --tokens, not --generate.") }
        guard samples >= 1 else { throw ValidationError("--samples must be at least 1.") }
        guard seqLen >= 2 else { throw ValidationError("--seq-len must be at least 2.") }
    }

    var source: CalibrationSource {
        if generate { return .generate(temperature: temperature, topP: topP) }
        if let text { return .text(text) }
        if let jsonl { return .jsonl(jsonl) }
        return .tokens(tokens!)
    }
}

struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stream calibration windows through the FP32 model layer by layer and write the statistics (HDF5).",
        discussion: "Schema: Formats/calibration-stats.md. Peak memory ≈ N × L × hidden × 4 bytes + one layer.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var calibration: CalibrationOptions
    @OptionGroup var compute: ComputeOptions
    @Option(name: .long, help: "Output statistics file (.h5).")
    var out: String
    @Flag(name: .long, help: "Overwrite an existing output file.")
    var force = false

    func run() throws {
        do {
            if FileManager.default.fileExists(atPath: out) && !force { throw CalibrationError.exists(path: out) }
            let outDir = (out as NSString).deletingLastPathComponent.isEmpty ? "." : (out as NSString).deletingLastPathComponent
            guard FileManager.default.isWritableFile(atPath: outDir) else {
                throw CLIError("\(out): cannot write the output: the folder '\(outDir)' does not exist or is not writable.")
            }
            try runCalibration(modelDir: modelOptions.model, calibration: calibration, threads: compute.threads, out: out)
        } catch { fail(error) }
    }
}

/// Calibrates `modelDir` on the windows `calibration` describes and writes the statistics to `out`
/// (atomically; an existing file is replaced).
func runCalibration(modelDir: String, calibration: CalibrationOptions, threads: Int, out: String) throws {
    let log = ProgressLog(enabled: true)
    let started = Date()
    let calibrator = try Calibrator(directory: modelDir, threads: threads)
    let c = calibrator.config
    if calibration.seqLen > c.maxPositionEmbeddings {
        throw CLIError("--seq-len \(calibration.seqLen) exceeds the model's max_position_embeddings (\(c.maxPositionEmbeddings)).")
    }
    let windows: CalibrationWindows
    if calibration.generate {
        log.line("sampling \(calibration.samples) × \(calibration.seqLen) tokens from the model (seed \(calibration.seed))")
        let model = try LlamaModel(directory: modelDir, threads: threads)
        let t0 = Date()
        windows = try CalibrationWindows.generate(model: model, samples: calibration.samples, seqLen: calibration.seqLen,
                                                  temperature: calibration.temperature, topP: calibration.topP, seed: calibration.seed) { done, total in
            if done % 64 == 0 || done == total { log.progress(done: done, total: total, started: t0, label: "tokens") }
        }
    } else {
        let tok = try Tokenizer(directory: modelDir)
        windows = try CalibrationWindows.load(calibration.source, tokenizer: tok, vocabSize: c.vocabSize,
                                              samples: calibration.samples, seqLen: calibration.seqLen,
                                              shuffle: calibration.shuffle, seed: calibration.seed)
    }
    log.line("calibrating \(modelDir) on \(windows.windows.count) × \(calibration.seqLen) tokens of \(calibration.source.path)")
    let hash = try calibrator.modelHash()
    let attrs: [String: String] = [
        "tool_version": FireQVersion.string, "model_sha256": hash, "model_path": modelDir,
        "source_kind": calibration.source.kind, "source_path": calibration.source.path, "source_sha256": windows.sourceSHA256,
        "samples": String(calibration.samples), "seq_len": String(calibration.seqLen),
        "selection": calibration.generate ? "generated" : (windows.shuffled ? "shuffled" : "in-order"), "seed": String(windows.seed),
        "tokens": String(calibration.samples * calibration.seqLen),
    ]
    let writer = try StatsFile.Writer(path: out, config: c, attributes: attrs)
    let t0 = Date()
    do {
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

/// Terminal progress: a redrawn bar with ETA and resident memory on a TTY, plain lines otherwise.
/// Writes to stderr so stdout stays machine-readable.
final class ProgressLog {
    let tty = isatty(2) == 1
    let enabled: Bool
    init(enabled: Bool) { self.enabled = enabled }

    func line(_ s: String) {
        guard enabled else { return }
        FileHandle.standardError.write(Data((s + "\n").utf8))
    }

    func progress(done: Int, total: Int, started: Date, label: String) {
        guard enabled else { return }
        let elapsed = Date().timeIntervalSince(started)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let rss = Self.residentMiB()
        if tty {
            let width = 30, filled = total > 0 ? width * done / total : width
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            let s = String(format: "\r%@ %d/%d %@  %.0fs elapsed, ETA %.0fs, RSS %d MiB", bar, done, total, label, elapsed, eta, rss)
            FileHandle.standardError.write(Data((s + (done == total ? "\n" : "")).utf8))
        } else {
            line(String(format: "%d/%d %@ done, %.1fs elapsed, ETA %.0fs, RSS %d MiB", done, total, label, elapsed, eta, rss))
        }
    }

    /// Current resident set size from /proc/self/statm (0 where unavailable).
    static func residentMiB() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let parts = s.split(separator: " ")
        guard parts.count > 1, let pages = Int(parts[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE))) / (1 << 20)
    }

    /// Peak resident set size (VmHWM) from /proc/self/status.
    static func peakRSSMiB() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for l in s.split(separator: "\n") where l.hasPrefix("VmHWM:") {
            return (Int(l.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
        }
        return 0
    }
}
