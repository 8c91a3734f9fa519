import Foundation
import JSONSupport
import LlamaReference
import LowPrecision
import ModelDescription
import PackedFormat
import TensorStore

/// The export targets of Formats/exports.md.
public enum ExportFormat: String, CaseIterable, Sendable {
    case gguf
    case compressedTensors = "compressed-tensors"
    case mlx

    /// Whether the export is one file (GGUF) or a folder.
    public var isFile: Bool { self == .gguf }
}

/// An export that cannot be made or written; reads as one sentence naming the file.
public struct ExportError: Error, CustomStringConvertible, Sendable {
    public let path: String, reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
    public var description: String { "\(path): \(reason)." }
}

/// What an export carried and what it could not (printed, and stored in the export).
public struct ExportSummary: Sendable {
    public let format: ExportFormat
    public let path: String
    /// One line per numeric feature of the packed model that the target cannot express.
    public let notCarried: [String]
    /// Groups whose scale s_g/P the target's scale type does not hold exactly (rounded to nearest).
    public let inexactScaleGroups: Int
    /// Quantized groups written.
    public let groups: Int
    /// The scale dtype written (e.g. "F16", "BF16", "float16").
    public let scaleType: String
    public let bytes: Int
}

/// A packed folder opened for export: its weights, config, recipe and tokenizer files.
final class ExportSource {
    let directory: String
    let packed: PackedModel
    let configJSON: JSONValue
    let config: ModelConfig
    let recipe: JSONValue
    /// Quantized linears by name (without `.weight`).
    let linearNames: Set<String>

    init(directory: String) throws {
        self.directory = directory
        guard !PackedModel.weightFileNames(in: directory).isEmpty else {
            throw ExportError(
                path: directory,
                reason:
                    "is not a fireq-packed folder (no model.safetensors or model.safetensors.index.json); run fireq quantize or fireq convert first"
            )
        }
        packed = try PackedModel(directory: directory)
        try packed.verify()
        let configPath = directory + "/config.json"
        let data: [UInt8]
        do { data = try FileBytes.read(configPath, limit: FileBytes.smallJSONLimit) } catch {
            throw ExportError(
                path: configPath,
                reason: error.missing ? "is missing; a packed folder carries its model's config.json" : error.reason)
        }
        do { configJSON = try JSONParser.parse(data) } catch {
            throw ExportError(path: configPath, reason: "is not valid JSON (\(error))")
        }
        config = try ModelConfig(json: configJSON, path: configPath)
        recipe = packed.recipe
        linearNames = Set(packed.linearNames)
    }

    var weightsPath: String { packed.weightsPath }

    /// The recipe's default group size.
    var groupSize: Int { recipe["weights"]?["group_size"]?.intValue ?? 64 }

    /// Numerics of the packed model that no target carries (Formats/exports.md), one line each.
    func runtimeOnlyNumerics(activationsCarried: Bool) -> [String] {
        var out: [String] = []
        if packed.fp8Rerounding {
            out.append(
                "FP8 re-rounding of dequantized weights (weights.fp8_rerounding): the export holds q·s_g·(1/P) exactly")
        }
        if !activationsCarried && recipe["activations"]?["format"]?.stringValue != "fp32" {
            out.append("FP8 E4M3 per-token activations (activations.format)")
        }
        if recipe["activations"]?["output_bf16"]?.boolValue == true {
            out.append("BF16 rounding of linear outputs (activations.output_bf16)")
        }
        if packed.file.tensorNames.contains(where: { $0.hasSuffix("post_k_smooth.smooth") }) {
            out.append("post-RoPE S (run-time Q/K channel scales; they cancel in q·k without Q/K quantization)")
        }
        if recipe["attention"]?["q_format"]?.stringValue != "fp32" {
            out.append("FP8 E4M3 queries per (token, head) (attention.q_format)")
        }
        if !(recipe["attention"]?["kv_bits"]?.isNull ?? false) {
            out.append("INT4 K/V cache per (token, KV head) with FP8 scales (attention.kv_bits)")
        }
        return out
    }

    /// Reads one quantized linear (`codes: false`: its scales only).
    func linear(_ name: String, codes: Bool = true) throws -> PackedLinear {
        try packed.linear(name, codes: codes)
    }

    /// Source-precision bytes and dtype of an unquantized tensor.
    func raw(_ name: String) throws -> (info: TensorInfo, bytes: [UInt8]) {
        guard let t = packed.file.info(name) else {
            throw ExportError(path: weightsPath, reason: "tensor '\(name)' is missing")
        }
        return (t, Array(packed.file.rawBytes(t)))
    }

    /// A JSON file of the packed folder, or nil when it is absent.
    func jsonFile(_ name: String) throws -> JSONValue? {
        let path = directory + "/" + name
        let data: [UInt8]
        do { data = try FileBytes.read(path, limit: FileBytes.tokenizerLimit) } catch {
            if error.missing { return nil }
            throw ExportError(path: path, reason: error.reason)
        }
        do { return try JSONParser.parse(data) } catch {
            throw ExportError(path: path, reason: "is not valid JSON (\(error))")
        }
    }

    /// Files other than the weights that a folder export copies as they are.
    static let companionFiles = ModelFiles.serving  // (README.md: the export writes its own model card)
}

/// Little-endian byte helpers for the exporters.
enum Bytes {
    static func append<T: FixedWidthInteger>(_ v: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out += $0 }
    }
}

/// Publishing a finished export under its final name (Formats/exports.md "Common checks").
enum Publish {
    static func canonical(_ p: String) -> String {
        URL(fileURLWithPath: p).standardizedFileURL.resolvingSymlinksInPath().path
    }

    /// Refuses an existing output without `force` and an output that is the packed folder.
    static func check(out: String, source: String, force: Bool) throws {
        if canonical(out) == canonical(source) || canonical(out).hasPrefix(canonical(source) + "/") {
            throw ExportError(path: out, reason: "is the packed folder itself or inside it; choose another --out")
        }
        if FileManager.default.fileExists(atPath: out) && !force {
            throw ExportError(path: out, reason: "already exists; pass --force to replace it")
        }
        let parent = (canonical(out) as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDir), isDir.boolValue else {
            throw ExportError(path: out, reason: "cannot be written: its parent folder \(parent) does not exist")
        }
    }

    /// Builds a folder beside `out` with `body`, then renames it into place (an existing `out` is
    /// first renamed aside, so `out` is never half-deleted or half-written).
    static func folder(_ out: String, _ body: (String) throws -> Void) throws {
        let fm = FileManager.default
        let parent = (canonical(out) as NSString).deletingLastPathComponent
        let base = (out as NSString).lastPathComponent
        let pid = ProcessInfo.processInfo.processIdentifier
        let tmp = parent + "/." + base + ".tmp-\(pid)"
        try? fm.removeItem(atPath: tmp)
        do {
            try fm.createDirectory(atPath: tmp, withIntermediateDirectories: false)
        } catch {
            throw ExportError(path: out, reason: "cannot create a folder beside it (\(error.localizedDescription))")
        }
        do {
            try body(tmp)
            let old = parent + "/." + base + ".tmp-old-\(pid)"
            if fm.fileExists(atPath: out) { try fm.moveItem(atPath: out, toPath: old) }
            try fm.moveItem(atPath: tmp, toPath: out)
            try? fm.removeItem(atPath: old)
        } catch let TensorStoreError.writeFailed(_, reason) {
            try? fm.removeItem(atPath: tmp)
            throw ExportError(path: out, reason: "cannot be written: \(reason)")
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw error
        }
    }

    /// Copies the companion files (tokenizer, generation config, …) from `source` into `dir`, those present.
    static func copyCompanions(from source: String, to dir: String) throws {
        let fm = FileManager.default
        for f in ExportSource.companionFiles where fm.fileExists(atPath: source + "/" + f) {
            do { try fm.copyItem(atPath: source + "/" + f, toPath: dir + "/" + f) } catch {
                throw ExportError(path: dir + "/" + f, reason: "cannot be written (\(error.localizedDescription))")
            }
        }
    }

    /// Writes text atomically.
    static func text(_ s: String, to path: String) throws {
        try AtomicFile.write(Data(s.utf8), to: path)
    }
}

/// An export's summary as printable lines (as `fireq export` prints them).
public struct ExportSummaryLine: Sendable {
    public let lines: [String]
    public init(_ s: ExportSummary) {
        lines =
            [
                "\(s.format.rawValue): \(s.groups) INT4 groups, scales as \(s.scaleType); \(s.inexactScaleGroups) group scale(s) not exact in \(s.scaleType)"
            ]
            + s.notCarried.map { "not carried: \($0)" }
    }
}
