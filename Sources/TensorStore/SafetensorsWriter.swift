import Foundation
import JSONSupport
import LowPrecision

/// A tensor to be written: name, dtype, shape and its little-endian bytes.
public struct TensorData: Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let bytes: [UInt8]

    public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
        precondition(shape.reduce(1, *) * dtype.byteSize == bytes.count, "byte count does not match shape for \(name)")
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    public init(name: String, float32 values: [Float], shape: [Int]) {
        self.init(name: name, values: values, dtype: .f32, shape: shape)
    }

    /// Float values stored as F32, F16 or BF16 (round to nearest even), little-endian.
    public init(name: String, values: [Float], dtype: DType, shape: [Int]) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * dtype.byteSize)
        for v in values {
            switch dtype {
            case .f32: withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 }
            case .f16: withUnsafeBytes(of: FP16.encode(v).littleEndian) { bytes += $0 }
            case .bf16: withUnsafeBytes(of: BF16.encode(v).littleEndian) { bytes += $0 }
            default: preconditionFailure("TensorData(values:) stores F32, F16 or BF16, not \(dtype.rawValue)")
            }
        }
        self.init(name: name, dtype: dtype, shape: shape, bytes: bytes)
    }

    /// Integers stored as little-endian I32.
    public init(name: String, int32 values: [Int], shape: [Int]) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count * 4)
        for v in values { withUnsafeBytes(of: Int32(v).littleEndian) { bytes += $0 } }
        self.init(name: name, dtype: .i32, shape: shape, bytes: bytes)
    }
}

/// Writes safetensors files per Formats/safetensors-profile.md (deterministic, atomic).
public enum SafetensorsWriter {
    /// The header bytes (length prefix not included) for tensors in the given order.
    public static func header(for tensors: [TensorData], metadata: [String: String]) -> [UInt8] {
        header(entries: tensors.map { ($0.name, $0.dtype, $0.shape, $0.bytes.count) }, metadata: metadata)
    }

    /// The header bytes for (name, dtype, shape, byte count) entries laid out in the given order.
    public static func header(
        entries: [(name: String, dtype: DType, shape: [Int], bytes: Int)], metadata: [String: String]
    ) -> [UInt8] {
        var obj = JSONObject()
        var meta = JSONObject()
        meta["format"] = .string("pt")
        for k in metadata.keys.sorted() where k != "format" { meta[k] = .string(metadata[k]!) }
        obj["__metadata__"] = .object(meta)
        var offset = 0
        for t in entries {
            precondition(t.name != "__metadata__", "a tensor cannot be named __metadata__")
            precondition(obj[t.name] == nil, "duplicate tensor name \(t.name)")
            obj[t.name] = .object(
                JSONObject([
                    ("dtype", .string(t.dtype.rawValue)),
                    ("shape", .array(t.shape.map { .int($0) })),
                    ("data_offsets", .array([.int(offset), .int(offset + t.bytes)]))
                ]))
            offset += t.bytes
        }
        var bytes = Array(JSONWriter.serialize(.object(obj)).utf8)
        while (8 + bytes.count) % 8 != 0 { bytes.append(0x20) }
        return bytes
    }

    /// Writes `tensors` to `path` atomically: a temporary file in the same folder, fsync, rename.
    public static func write(
        _ tensors: [TensorData], metadata: [String: String] = [:], to path: String
    ) throws(TensorStoreError) {
        let header = header(for: tensors, metadata: metadata)
        try AtomicFile.write(to: path) { (h) throws(TensorStoreError) in
            var len = UInt64(header.count).littleEndian
            try h.write(Data(bytes: &len, count: 8), path: path)
            try h.write(Data(header), path: path)
            for t in tensors { try h.write(Data(t.bytes), path: path) }
        }
    }
}

/// Atomic file creation: write to `NAME.tmp-PID-RANDOM`, fsync, rename to `NAME`.
public enum AtomicFile {
    public final class Handle {
        let fh: FileHandle
        init(_ fh: FileHandle) { self.fh = fh }
        public func write(_ data: Data, path: String) throws(TensorStoreError) {
            do { try fh.write(contentsOf: data) } catch {
                throw .writeFailed(path: path, reason: AtomicFile.reason(error))
            }
        }
    }

    /// The operating system's words for a failed write ("No space left on device", "File too
    /// large"), not Foundation's generic "The operation could not be completed".
    public static func reason(_ error: Error) -> String {
        let ns = error as NSError
        if let u = ns.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(u.code)))
        }
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        return error.localizedDescription
    }

    public static func write(
        to path: String, _ body: (Handle) throws(TensorStoreError) -> Void
    ) throws(TensorStoreError) {
        let tmp = "\(path).tmp-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
        guard FileManager.default.createFile(atPath: tmp, contents: nil) else {
            let dir = (path as NSString).deletingLastPathComponent
            throw .writeFailed(
                path: path,
                reason: "cannot create a file in '\(dir.isEmpty ? "." : dir)' (missing folder or no permission)")
        }
        do {
            guard let fh = FileHandle(forWritingAtPath: tmp) else {
                throw TensorStoreError.writeFailed(path: path, reason: "cannot open temporary file")
            }
            do {
                try body(Handle(fh))
                try fh.synchronize()
                try fh.close()
            } catch let e as TensorStoreError {
                try? fh.close(); throw e
            } catch {
                try? fh.close(); throw TensorStoreError.writeFailed(path: path, reason: reason(error))
            }
            if rename(tmp, path) != 0 {
                throw TensorStoreError.writeFailed(path: path, reason: String(cString: strerror(errno)))
            }
        } catch let e as TensorStoreError {
            unlink(tmp)
            throw e
        } catch {
            unlink(tmp)
            throw .writeFailed(path: path, reason: "\(error)")
        }
    }

    /// Writes a whole byte buffer atomically.
    public static func write(_ data: Data, to path: String) throws(TensorStoreError) {
        try write(to: path) { (h) throws(TensorStoreError) in try h.write(data, path: path) }
    }
}
