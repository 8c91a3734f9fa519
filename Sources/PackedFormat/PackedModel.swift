import Foundation
import JSONSupport
import LowPrecision
import TensorStore

/// A packed model folder opened for reading (Formats/fireq-packed-v1.md).
public final class PackedModel: @unchecked Sendable {
    public let directory: String
    public let file: SafetensorsFile
    public let metadata: [String: String]
    public let recipe: JSONValue
    public let crc: [String: String]

    public var weightsPath: String { directory + "/model.safetensors" }

    public init(directory: String) throws {
        self.directory = directory
        let path = directory + "/model.safetensors"
        file = try SafetensorsFile(path: path)
        metadata = file.metadata
        guard metadata["fireq.format"] == PackedFormat.name else {
            throw PackedError(path: path, reason: "is not a \(PackedFormat.name) file (no fireq.format metadata)")
        }
        guard metadata["fireq.version"] == PackedFormat.version else {
            throw PackedError(path: path, reason: "has \(PackedFormat.name) version \(metadata["fireq.version"] ?? "?"), this tool reads version \(PackedFormat.version)")
        }
        guard let r = metadata["fireq.recipe"], let rj = try? JSONParser.parse(r) else {
            throw PackedError(path: path, reason: "metadata fireq.recipe is missing or not JSON")
        }
        recipe = rj
        guard let c = metadata["fireq.crc32"], let cj = try? JSONParser.parse(c), let co = cj.objectValue else {
            throw PackedError(path: path, reason: "metadata fireq.crc32 is missing or not a JSON object")
        }
        var crc: [String: String] = [:]
        for (k, v) in co.pairs { crc[k] = v.stringValue ?? "" }
        self.crc = crc
        let names = Set(file.tensorNames)
        if let missing = crc.keys.sorted().first(where: { !names.contains($0) }) {
            throw PackedError(path: path, reason: "tensor '\(missing)' listed in fireq.crc32 is missing")
        }
        if let extra = names.sorted().first(where: { crc[$0] == nil }) {
            throw PackedError(path: path, reason: "tensor '\(extra)' has no crc32 in the metadata")
        }
    }

    /// Checks every tensor's crc32; throws on the first mismatch.
    public func verify() throws {
        for t in file.tensors {
            let got = PackedFormat.crc32Hex(file.rawBytes(t))
            if got != crc[t.name] {
                throw PackedError(path: weightsPath, reason: "crc32 mismatch in tensor '\(t.name)' (stored \(crc[t.name]!), computed \(got)); the file is corrupt")
            }
        }
    }

    public var fp8Rerounding: Bool { recipe["weights"]?["fp8_rerounding"]?.boolValue ?? true }

    /// Names of the quantized linear layers (without the `.weight` suffix), sorted.
    public var linearNames: [String] {
        file.tensorNames.filter { $0.hasSuffix(".weight_scale") }.map { String($0.dropLast(".weight_scale".count)) }.sorted()
    }

    /// Reads one quantized linear layer; `codes: false` skips unpacking the INT4 codes (`q` is
    /// then empty), for callers that need only the scales.
    public func linear(_ name: String, codes: Bool = true) throws -> PackedLinear {
        guard let w = file.info(name + ".weight"), let s = file.info(name + ".weight_scale"), let p = file.info(name + ".per_tensor_scale_inv") else {
            throw PackedError(path: weightsPath, reason: "quantized linear '\(name)' is incomplete")
        }
        guard w.dtype == .i32, w.shape.count == 2, s.shape.count == 2, s.shape[0] == w.shape[0], p.dtype == .bf16, p.shape == [1],
              s.shape[1] > 0, (w.shape[1] * 8) % s.shape[1] == 0 else {
            throw PackedError(path: weightsPath, reason: "quantized linear '\(name)' has inconsistent shapes or dtypes")
        }
        let n = w.shape[0], k = w.shape[1] * 8, g = k / s.shape[1]
        let q = codes ? PackedFormat.unpackInt4(file.rawBytes(w), n: n, k: k) : []
        let sraw = file.rawBytes(s)
        let scales: [Float]
        let format: String
        switch s.dtype {
        case .f8e4m3: scales = (0..<s.elementCount).map { FP8E4M3.decode(sraw[$0]) }; format = "fp8_e4m3"
        case .bf16: scales = (0..<s.elementCount).map { BF16.decode(sraw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) }; format = "bf16"
        default: throw PackedError(path: weightsPath, reason: "'\(name).weight_scale' has dtype \(s.dtype.rawValue), expected F8_E4M3 or BF16")
        }
        let inv = BF16.decode(file.rawBytes(p).loadUnaligned(as: UInt16.self))
        return PackedLinear(name: name, n: n, k: k, groupSize: g, q: q, scales: scales, scaleFormat: format, perTensorScaleInv: inv)
    }
}

public struct PackedError: Error, CustomStringConvertible, Sendable {
    public let path: String, reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
    public var description: String { "\(path): \(reason)." }
}
