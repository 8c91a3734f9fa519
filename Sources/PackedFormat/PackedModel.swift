import Foundation
import JSONSupport
import LowPrecision
import TensorStore

/// The tensors of a packed folder, in one `model.safetensors` or in shards named by
/// `model.safetensors.index.json` (Formats/fireq-packed-v1.md "Shards"): the subset of
/// `SafetensorsFile`'s interface the runtime and the exports use, over every file.
public final class PackedTensors: @unchecked Sendable {
    public let checkpoint: Checkpoint
    /// Every tensor, sorted by name.
    public let tensors: [TensorInfo]

    init(_ c: Checkpoint) {
        checkpoint = c
        tensors = c.tensorNames.compactMap { c.info($0) }
    }

    public var tensorNames: [String] { tensors.map(\.name) }
    public func info(_ name: String) -> TensorInfo? { checkpoint.info(name) }
    private func file(_ t: TensorInfo) -> SafetensorsFile { try! checkpoint.file(for: t.name).0 }
    public func rawBytes(_ t: TensorInfo) -> UnsafeRawBufferPointer { file(t).rawBytes(t) }
    public func releasePages(_ t: TensorInfo) { file(t).releasePages(t) }
    public func releasePages(_ t: TensorInfo, bytes range: Range<Int>) { file(t).releasePages(t, bytes: range) }
    /// Hands back the mapped pages of every tensor whose name starts with `prefix` ("" = all).
    public func releasePages(prefix: String) {
        for t in tensors where t.name.hasPrefix(prefix) { releasePages(t) }
    }
    public func float32(_ name: String) throws(TensorStoreError) -> [Float] {
        try checkpoint.file(for: name).0.float32(name)
    }
    public func readFloat32(_ t: TensorInfo, into dst: UnsafeMutablePointer<Float>) throws(TensorStoreError) {
        try file(t).readFloat32(t, into: dst)
    }
}

/// A packed model folder opened for reading (Formats/fireq-packed-v1.md).
public final class PackedModel: @unchecked Sendable {
    public let directory: String
    public let file: PackedTensors
    /// The shared `fireq.*` metadata (identical in every shard except `fireq.crc32`).
    public let metadata: [String: String]
    public let recipe: JSONValue
    public let crc: [String: String]
    /// The weight files: `model.safetensors`, or the index followed by the shards.
    public let weightFiles: [String]

    /// `model.safetensors`, or `model.safetensors.index.json` when sharded (for messages).
    public var weightsPath: String { weightFiles[0] }
    public var sharded: Bool { weightFiles.count > 1 }

    /// Whether `dir` holds a packed model (single file or shards), without validating it.
    public static func isPacked(_ dir: String) -> Bool {
        if let f = try? SafetensorsFile(path: dir + "/model.safetensors") {
            return f.metadata["fireq.format"] == PackedFormat.name
        }
        guard let d = FileBytes.readIfPresent(dir + "/model.safetensors.index.json", limit: FileBytes.smallJSONLimit),
            let j = try? JSONParser.parse(d)
        else { return false }
        return j["metadata"]?["fireq.format"]?.stringValue == PackedFormat.name
    }

    /// The weight file names of a packed folder as it stands on disk (empty when there is none).
    public static func weightFileNames(in dir: String) -> [String] {
        let fm = FileManager.default
        if fm.fileExists(atPath: dir + "/model.safetensors") { return ["model.safetensors"] }
        guard let d = FileBytes.readIfPresent(dir + "/model.safetensors.index.json", limit: FileBytes.smallJSONLimit),
            let j = try? JSONParser.parse(d),
            let map = j["weight_map"]?.objectValue
        else { return [] }
        return ["model.safetensors.index.json"] + Set(map.pairs.compactMap { $0.value.stringValue }).sorted()
    }

    public init(directory: String) throws {
        self.directory = directory
        let fm = FileManager.default
        if fm.fileExists(atPath: directory + "/model.safetensors")
            && fm.fileExists(atPath: directory + "/model.safetensors.index.json")
        {
            throw PackedError(
                path: directory,
                reason:
                    "holds both model.safetensors and model.safetensors.index.json (one is stale); remove the one that does not belong"
            )
        }
        let ckpt = try Checkpoint(directory: directory)  // its errors name the file
        let names = Self.weightFileNames(in: directory)
        weightFiles = names.map { directory + "/" + $0 }
        var crc: [String: String] = [:]
        var shared: [String: String]? = nil
        for f in ckpt.files {
            let path = f.path
            var m = f.metadata
            guard m["fireq.format"] == PackedFormat.name else {
                throw PackedError(path: path, reason: "is not a \(PackedFormat.name) file (no fireq.format metadata)")
            }
            guard m["fireq.version"] == PackedFormat.version else {
                throw PackedError(
                    path: path,
                    reason:
                        "has \(PackedFormat.name) version \(m["fireq.version"] ?? "?"), this tool reads version \(PackedFormat.version)"
                )
            }
            guard let c = m["fireq.crc32"], let cj = try? JSONParser.parse(c), let co = cj.objectValue else {
                throw PackedError(path: path, reason: "metadata fireq.crc32 is missing or not a JSON object")
            }
            let here = Set(f.tensorNames)
            for (k, v) in co.pairs {
                guard here.contains(k) else {
                    throw PackedError(path: path, reason: "tensor '\(k)' listed in fireq.crc32 is missing")
                }
                crc[k] = v.stringValue ?? ""
            }
            if let extra = f.tensorNames.sorted().first(where: { co[$0] == nil }) {
                throw PackedError(path: path, reason: "tensor '\(extra)' has no crc32 in the metadata")
            }
            m["fireq.crc32"] = nil
            if let s = shared, s != m {
                let key = Set(s.keys).union(m.keys).sorted().first { s[$0] != m[$0] } ?? "?"
                throw PackedError(
                    path: path, reason: "metadata \(key) differs from the first shard's; the shards are not one model")
            }
            shared = m
        }
        var meta = shared ?? [:]
        meta["fireq.crc32"] = ckpt.files.first?.metadata["fireq.crc32"]
        metadata = meta
        guard let r = metadata["fireq.recipe"], let rj = try? JSONParser.parse(r) else {
            throw PackedError(path: weightFiles[0], reason: "metadata fireq.recipe is missing or not JSON")
        }
        recipe = rj
        self.crc = crc
        file = PackedTensors(ckpt)
    }

    /// SHA-256 identifying the weights: the file's own for one `model.safetensors`; for shards,
    /// of the lines "NAME SHA256\n" of the index and each shard, in `weightFiles` order.
    public func contentSHA256() throws -> String {
        try Self.contentSHA256(directory: directory, names: weightFiles.map { ($0 as NSString).lastPathComponent })
    }

    public static func contentSHA256(directory: String, names: [String]) throws -> String {
        if names == ["model.safetensors"] { return try SHA256.fileHex(directory + "/model.safetensors") }
        var lines = ""
        for n in names { lines += "\(n) \(try SHA256.fileHex(directory + "/" + n))\n" }
        return SHA256.hex(Array(lines.utf8))
    }

    /// Checks every tensor's crc32; throws on the first mismatch.
    /// Checks every tensor's CRC-32 against `fireq.crc32`, on up to `threads` threads (tensors in
    /// interleaved order); the first mismatching tensor in name order is reported.
    public func verify(threads: Int = 1) throws {
        let tensors = file.tensors
        var computed = [String](repeating: "", count: tensors.count)
        let workers = max(1, min(threads, tensors.count))
        computed.withUnsafeMutableBufferPointer { out in
            let out = UnsafeSendable(out)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                for i in stride(from: w, to: tensors.count, by: workers) {
                    out.value[i] = PackedFormat.crc32Hex(file.rawBytes(tensors[i]))
                }
            }
        }
        for (t, got) in zip(tensors, computed) {
            if got != crc[t.name] {
                let path = (try? file.checkpoint.file(for: t.name).0.path) ?? weightsPath
                throw PackedError(
                    path: path,
                    reason:
                        "crc32 mismatch in tensor '\(t.name)' (stored \(crc[t.name]!), computed \(got)); the file is corrupt"
                )
            }
        }
    }

    public var fp8Rerounding: Bool { recipe["weights"]?["fp8_rerounding"]?.boolValue ?? true }

    /// Names of the quantized linear layers (without the `.weight` suffix), sorted.
    public var linearNames: [String] {
        file.tensorNames.filter { $0.hasSuffix(".weight_scale") }.map { String($0.dropLast(".weight_scale".count)) }
            .sorted()
    }

    /// Reads one quantized linear layer; `codes: false` skips unpacking the INT4 codes (`q` is
    /// then empty), for callers that need only the scales.
    public func linear(_ name: String, codes: Bool = true) throws -> PackedLinear {
        guard let w = file.info(name + ".weight"), let s = file.info(name + ".weight_scale"),
            let p = file.info(name + ".per_tensor_scale_inv")
        else {
            throw PackedError(path: weightsPath, reason: "quantized linear '\(name)' is incomplete")
        }
        guard w.dtype == .i32, w.shape.count == 2, s.shape.count == 2, s.shape[0] == w.shape[0], p.dtype == .bf16,
            p.shape == [1],
            s.shape[1] > 0, (w.shape[1] * 8) % s.shape[1] == 0
        else {
            throw PackedError(path: weightsPath, reason: "quantized linear '\(name)' has inconsistent shapes or dtypes")
        }
        let n = w.shape[0], k = w.shape[1] * 8, g = k / s.shape[1]
        let q = codes ? PackedFormat.unpackInt4(file.rawBytes(w), n: n, k: k) : []
        let sraw = file.rawBytes(s)
        let scales: [Float]
        let format: String
        switch s.dtype {
        case .f8e4m3: scales = (0..<s.elementCount).map { FP8E4M3.decode(sraw[$0]) }; format = "fp8_e4m3"
        case .bf16:
            scales = (0..<s.elementCount).map {
                BF16.decode(sraw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))
            }; format = "bf16"
        default:
            throw PackedError(
                path: weightsPath,
                reason: "'\(name).weight_scale' has dtype \(s.dtype.rawValue), expected F8_E4M3 or BF16")
        }
        let inv = BF16.decode(file.rawBytes(p).loadUnaligned(as: UInt16.self))
        return PackedLinear(
            name: name, n: n, k: k, groupSize: g, q: q, scales: scales, scaleFormat: format, perTensorScaleInv: inv)
    }
}

public struct PackedError: Error, CustomStringConvertible, Sendable {
    public let path: String, reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
    public var description: String { "\(path): \(reason)." }
}

/// A buffer handed to concurrent workers that each write disjoint elements.
struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
