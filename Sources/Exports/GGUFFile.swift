import Foundation
import TensorStore

/// A GGUF v3 value (ggml `gguf_type`), as stored in the key-value section.
public enum GGUFValue: Equatable, Sendable {
    case u32(UInt32), i32(Int32), f32(Float), bool(Bool), string(String)
    case stringArray([String]), i32Array([Int32]), f32Array([Float])

    var typeCode: UInt32 {
        switch self {
        case .u32: return 4
        case .i32: return 5
        case .f32: return 6
        case .bool: return 7
        case .string: return 8
        case .stringArray, .i32Array, .f32Array: return 9
        }
    }
}

/// ggml tensor types this exporter writes, with their block geometry (ggml-common.h).
public enum GGMLType: UInt32, Sendable {
    case f32 = 0, f16 = 1, q4_0 = 2, bf16 = 30

    /// Elements per block and bytes per block.
    var block: (elements: Int, bytes: Int) {
        switch self {
        case .f32: return (1, 4)
        case .f16, .bf16: return (1, 2)
        case .q4_0: return (32, 18)  // block_q4_0: ggml_half d; uint8_t qs[16]
        }
    }

    /// Bytes of a tensor whose innermost dimension is `cols` and that has `rows` rows.
    func byteCount(rows: Int, cols: Int) -> Int {
        precondition(cols % block.elements == 0)
        return rows * cols / block.elements * block.bytes
    }
}

/// Writes a GGUF v3 file (ggml/docs/gguf.md): magic, version, counts, key-values, tensor infos,
/// padding to the alignment, then every tensor's data at its aligned offset. Tensor data is
/// produced one tensor at a time by a closure, so the whole file never sits in memory.
public struct GGUFWriter {
    public struct Tensor {
        public let name: String
        /// Shape in row-major (numpy) order; GGUF stores it reversed (`ne[0]` innermost).
        public let shape: [Int]
        public let type: GGMLType
        public var byteCount: Int { type.byteCount(rows: shape.dropLast().reduce(1, *), cols: shape.last!) }
        public init(name: String, shape: [Int], type: GGMLType) {
            self.name = name; self.shape = shape; self.type = type
        }
    }

    public static let alignment = 32
    public var keyValues: [(String, GGUFValue)] = []
    public var tensors: [Tensor] = []

    public init() {}

    /// The bytes up to the first tensor's data (header, key-values, tensor infos, padding).
    func headerBytes() -> [UInt8] {
        var out: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func str(_ s: String) { let b = Array(s.utf8); u64(UInt64(b.count)); out += b }
        out += Array("GGUF".utf8)
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(keyValues.count))
        for (key, value) in keyValues {
            str(key)
            u32(value.typeCode)
            switch value {
            case .u32(let v): u32(v)
            case .i32(let v): u32(UInt32(bitPattern: v))
            case .f32(let v): u32(v.bitPattern)
            case .bool(let v): out.append(v ? 1 : 0)
            case .string(let s): str(s)
            case .stringArray(let a): u32(8); u64(UInt64(a.count)); for s in a { str(s) }
            case .i32Array(let a): u32(5); u64(UInt64(a.count)); for v in a { u32(UInt32(bitPattern: v)) }
            case .f32Array(let a): u32(6); u64(UInt64(a.count)); for v in a { u32(v.bitPattern) }
            }
        }
        var offset = 0
        for t in tensors {
            str(t.name)
            u32(UInt32(t.shape.count))
            for d in t.shape.reversed() { u64(UInt64(d)) }
            u32(t.type.rawValue)
            u64(UInt64(offset))
            offset += Self.padded(t.byteCount)
        }
        out += [UInt8](repeating: 0, count: Self.padded(out.count) - out.count)
        return out
    }

    static func padded(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    /// Writes the file atomically; `data(i)` returns tensor i's bytes (exactly `byteCount`).
    public func write(to path: String, data: (Int) throws -> [UInt8]) throws {
        let header = headerBytes()
        try AtomicFile.write(to: path) { (h) throws(TensorStoreError) in
            try h.write(Data(header), path: path)
            for (i, t) in tensors.enumerated() {
                let bytes: [UInt8]
                do { bytes = try data(i) } catch let e as TensorStoreError { throw e } catch {
                    throw TensorStoreError.writeFailed(path: path, reason: "\(error)")
                }
                precondition(
                    bytes.count == t.byteCount, "tensor \(t.name): \(bytes.count) bytes, expected \(t.byteCount)")
                try h.write(
                    Data(bytes + [UInt8](repeating: 0, count: Self.padded(bytes.count) - bytes.count)), path: path)
            }
        }
    }
}
