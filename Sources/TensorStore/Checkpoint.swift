import Foundation
import JSONSupport

/// The tensors of a Hugging Face checkpoint directory: `model.safetensors`, or the shards named
/// by `model.safetensors.index.json`. Every file is validated on open.
public final class Checkpoint: @unchecked Sendable {
    public let directory: String
    public let files: [SafetensorsFile]
    private let location: [String: (file: Int, info: TensorInfo)]

    public init(directory: String) throws(TensorStoreError) {
        self.directory = directory
        let single = directory + "/model.safetensors"
        let indexPath = directory + "/model.safetensors.index.json"
        let fm = FileManager.default
        var files: [SafetensorsFile] = []
        var location: [String: (Int, TensorInfo)] = [:]
        if fm.fileExists(atPath: indexPath) {
            let data: [UInt8]
            do { data = try FileBytes.read(indexPath, limit: FileBytes.smallJSONLimit) } catch {
                throw .cannotOpen(path: indexPath, reason: error.reason)
            }
            let json: JSONValue
            do { json = try JSONParser.parse(data) } catch {
                throw .invalidIndex(path: indexPath, reason: error.description)
            }
            guard let map = json["weight_map"]?.objectValue else {
                throw .invalidIndex(path: indexPath, reason: "missing 'weight_map' object")
            }
            var shardNames: [String] = []
            var shardOf: [String: String] = [:]
            for (tensor, shard) in map.pairs {
                guard let s = shard.stringValue, !s.contains("/") else {
                    throw .invalidIndex(
                        path: indexPath, reason: "weight_map entry '\(tensor)' is not a file name in the same folder")
                }
                shardOf[tensor] = s
                if !shardNames.contains(s) { shardNames.append(s) }
            }
            for (i, shard) in shardNames.sorted().enumerated() {
                let f = try SafetensorsFile(path: directory + "/" + shard)
                files.append(f)
                for t in f.tensors {
                    if let prev = location[t.name] {
                        throw .invalidIndex(
                            path: indexPath, reason: "tensor '\(t.name)' is in both \(files[prev.0].path) and \(f.path)"
                        )
                    }
                    guard shardOf[t.name] == shard else {
                        throw .invalidIndex(
                            path: indexPath,
                            reason:
                                "tensor '\(t.name)' is in \(shard) but the weight_map says \(shardOf[t.name] ?? "nothing")"
                        )
                    }
                    location[t.name] = (i, t)
                }
            }
            for tensor in map.keys where location[tensor] == nil {
                throw .missingTensor(path: directory + "/" + shardOf[tensor]!, tensor: tensor)
            }
        } else if fm.fileExists(atPath: single) {
            let f = try SafetensorsFile(path: single)
            files = [f]
            for t in f.tensors { location[t.name] = (0, t) }
        } else {
            throw .cannotOpen(
                path: directory, reason: "no model.safetensors or model.safetensors.index.json in this folder")
        }
        self.files = files
        self.location = location
    }

    public var tensorNames: [String] { location.keys.sorted() }

    public func contains(_ name: String) -> Bool { location[name] != nil }

    public func info(_ name: String) -> TensorInfo? { location[name]?.info }

    /// The file that holds `name` (for error messages and raw access).
    public func file(for name: String) throws(TensorStoreError) -> (SafetensorsFile, TensorInfo) {
        guard let l = location[name] else { throw .missingTensor(path: directory, tensor: name) }
        return (files[l.file], l.info)
    }

    /// A tensor widened to Float32, with its shape checked; its mapped pages are released after copying.
    public func float32(_ name: String, shape: [Int]) throws(TensorStoreError) -> [Float] {
        let (f, t) = try file(for: name)
        guard t.shape == shape else { throw .wrongShape(path: f.path, tensor: name, expected: shape, found: t.shape) }
        let out = try f.float32(name)
        f.releasePages(t)
        return out
    }
}

extension Checkpoint {
    /// Rows of a 2-D floating-point tensor widened to Float32 (an embedding lookup that does not
    /// load the whole table): out[i, :] = T[rows[i], :].
    public func readRows(_ name: String, rows: [Int], into out: UnsafeMutablePointer<Float>) throws(TensorStoreError) {
        let (f, t) = try file(for: name)
        guard t.shape.count == 2 else {
            throw .wrongShape(path: f.path, tensor: name, expected: [-1, -1], found: t.shape)
        }
        let cols = t.shape[1], size = t.dtype.byteSize
        for (i, r) in rows.enumerated() {
            precondition(r >= 0 && r < t.shape[0], "row \(r) outside \(name)")
            let sub = TensorInfo(
                name: name, dtype: t.dtype, shape: [cols], begin: t.begin + r * cols * size,
                end: t.begin + (r + 1) * cols * size)
            try f.readFloat32(sub, into: out + i * cols)
        }
    }
}
