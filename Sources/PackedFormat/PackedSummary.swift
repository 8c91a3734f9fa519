import Foundation
import JSONSupport

/// What `fireq inspect` reports about a packed folder: format, provenance, the recipe, and per
/// quantized linear its shape, group size, P, scale format and bits per weight (codes, scales
/// and 1/P counted), with totals against the FP16 size of the same weights.
public struct PackedSummary: Sendable {
    public struct Linear: Sendable {
        public let name: String
        public let n: Int, k: Int, groupSize: Int
        public let perTensorScale: Float
        public let scaleFormat: String
        public let bytes: Int
        public var bitsPerWeight: Double { Double(bytes * 8) / Double(n * k) }
    }

    public let directory: String
    public let format: String, version: String, toolVersion: String
    public let recipe: JSONValue
    public let sourceModelSHA256: String, statsSHA256: String
    public let linears: [Linear]
    public let tensorBytes: Int
    public let weightFiles: [String]
    public let sharded: Bool
    public let verified: Bool

    public var quantizedBytes: Int { linears.reduce(0) { $0 + $1.bytes } }
    public var weights: Int { linears.reduce(0) { $0 + $1.n * $1.k } }
    public var linearBitsPerWeight: Double { Double(quantizedBytes * 8) / Double(max(weights, 1)) }
    public var linearSizeVsFP16: Double { Double(quantizedBytes) / Double(max(weights * 2, 1)) }

    /// Reads the summary of `m` (`verified` says whether the caller checked every crc32).
    public init(_ m: PackedModel, verified: Bool) throws {
        directory = m.directory
        format = m.metadata["fireq.format"] ?? ""
        version = m.metadata["fireq.version"] ?? ""
        toolVersion = m.metadata["fireq.tool_version"] ?? ""
        recipe = m.recipe
        sourceModelSHA256 = m.metadata["fireq.source_model_sha256"] ?? ""
        statsSHA256 = m.metadata["fireq.stats_sha256"] ?? ""
        linears = try m.linearNames.map { name in
            guard let w = m.file.info(name + ".weight"), let s = m.file.info(name + ".weight_scale"),
                let p = m.file.info(name + ".per_tensor_scale_inv")
            else { throw PackedError(path: m.directory, reason: "\(name) lacks its weight, scale or 1/P tensor") }
            let l = try m.linear(name)
            return Linear(
                name: name, n: w.shape[0], k: w.shape[1] * 8, groupSize: l.groupSize,
                perTensorScale: 1 / l.perTensorScaleInv, scaleFormat: l.scaleFormat,
                bytes: w.byteCount + s.byteCount + p.byteCount)
        }
        tensorBytes = m.file.tensors.reduce(0) { $0 + $1.byteCount }
        weightFiles = m.weightFiles.map { ($0 as NSString).lastPathComponent }
        sharded = m.sharded
        self.verified = verified
    }

    /// `fireq inspect --json`'s object.
    public var json: JSONValue {
        .object(
            JSONObject([
                ("format", .string(format)), ("version", .string(version)), ("tool_version", .string(toolVersion)),
                ("recipe", recipe), ("source_model_sha256", .string(sourceModelSHA256)),
                ("stats_sha256", .string(statsSHA256)), ("quantized_linears", .int(linears.count)),
                ("linear_bits_per_weight", .double(linearBitsPerWeight)),
                ("linear_size_vs_fp16", .double(linearSizeVsFP16)), ("tensor_bytes", .int(tensorBytes)),
                ("verified", .bool(verified)), ("weight_files", .array(weightFiles.map { .string($0) })),
                (
                    "layers",
                    .array(
                        linears.map {
                            .object(
                                JSONObject([
                                    ("name", .string($0.name)), ("shape", .array([.int($0.n), .int($0.k)])),
                                    ("group_size", .int($0.groupSize)), ("per_tensor_scale", .float($0.perTensorScale)),
                                    ("scale_format", .string($0.scaleFormat)),
                                    ("bits_per_weight", .double($0.bitsPerWeight))
                                ]))
                        })
                )
            ]))
    }

    /// The text `fireq inspect` prints.
    public var lines: [String] {
        var out = [
            "\(directory): \(format) v\(version), recipe '\(recipe["name"]?.stringValue ?? "?")', written by fireq \(toolVersion.isEmpty ? "?" : toolVersion)",
            String(
                format: "%d quantized linears, %.3f bits/weight, %.3f× their FP16 size; tensors %.1f MiB%@",
                linears.count, linearBitsPerWeight, linearSizeVsFP16, Double(tensorBytes) / 1_048_576,
                verified ? "; every crc32 verified" : "")
        ]
        if sharded { out.append("\(weightFiles.count - 1) shards: " + weightFiles.dropFirst().joined(separator: ", ")) }
        for l in linears {
            out.append(
                "  \(l.name)  G=\(l.groupSize)  P=\(JSONWriter.serialize(.float(l.perTensorScale)))  \(l.scaleFormat)")
        }
        return out
    }
}
