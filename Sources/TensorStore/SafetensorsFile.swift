import Foundation
import JSONSupport
import LowPrecision

/// Where one tensor lives in a safetensors file.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Byte range relative to the start of the data section.
    public let begin: Int
    public let end: Int

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { end - begin }
}

/// A memory-mapped, strictly validated safetensors file (Formats/safetensors-profile.md).
public final class SafetensorsFile: @unchecked Sendable {
    /// Largest accepted header (the upstream library's limit).
    public static let maxHeaderBytes = 100_000_000

    public let path: String
    public let metadata: [String: String]
    /// Tensors in data-offset order.
    public let tensors: [TensorInfo]
    public let dataOffset: Int
    private let index: [String: Int]
    private let file: MappedFile

    public init(path: String) throws(TensorStoreError) {
        self.path = path
        file = try MappedFile(path: path)
        guard file.size >= 8, let base = file.base else { throw .truncated(path: path, size: file.size) }
        let headerLength = base.loadUnaligned(as: UInt64.self).littleEndian
        guard headerLength <= UInt64(Self.maxHeaderBytes) else {
            throw .headerTooLarge(path: path, length: headerLength, limit: Self.maxHeaderBytes)
        }
        guard 8 + Int(headerLength) <= file.size else {
            throw .headerPastEnd(path: path, length: headerLength, fileSize: file.size)
        }
        dataOffset = 8 + Int(headerLength)
        let dataSize = file.size - dataOffset
        let header: JSONValue
        do {
            header = try JSONParser.parse(UnsafeRawBufferPointer(start: base + 8, count: Int(headerLength)))
        } catch {
            throw .invalidHeaderJSON(path: path, reason: error.description)
        }
        guard let object = header.objectValue else {
            throw .invalidHeaderJSON(path: path, reason: "the top level is \(header.kindDescription), not an object")
        }
        var meta: [String: String] = [:]
        var infos: [TensorInfo] = []
        for (name, entry) in object.pairs {
            if name == "__metadata__" {
                guard let m = entry.objectValue else {
                    throw .invalidHeaderJSON(
                        path: path, reason: "__metadata__ is \(entry.kindDescription), not an object")
                }
                for (k, v) in m.pairs {
                    guard let s = v.stringValue else {
                        throw .invalidHeaderJSON(
                            path: path, reason: "__metadata__ value for '\(k)' is \(v.kindDescription), not a string")
                    }
                    meta[k] = s
                }
                continue
            }
            infos.append(try Self.parseEntry(name: name, entry: entry, path: path, dataSize: dataSize))
        }
        // The tensors must tile the data section: sort by begin, then check contiguity.
        infos.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var cursor = 0
        var last: TensorInfo?
        for t in infos {
            if t.begin < cursor, let last {
                throw .overlap(path: path, tensor: t.name, other: last.name, offset: t.begin)
            }
            if t.begin > cursor { throw .gap(path: path, tensor: t.name, offset: t.begin, expected: cursor) }
            cursor = t.end
            if t.byteCount > 0 { last = t }
        }
        if cursor != dataSize { throw .trailingBytes(path: path, dataEnd: cursor, dataSize: dataSize) }
        metadata = meta
        tensors = infos
        var idx: [String: Int] = [:]
        for (i, t) in infos.enumerated() { idx[t.name] = i }
        index = idx
    }

    private static func parseEntry(
        name: String, entry: JSONValue, path: String, dataSize: Int
    ) throws(TensorStoreError) -> TensorInfo {
        guard let o = entry.objectValue else {
            throw .invalidEntry(path: path, tensor: name, reason: "entry is \(entry.kindDescription), not an object")
        }
        for key in o.keys where !["dtype", "shape", "data_offsets"].contains(key) {
            throw .invalidEntry(path: path, tensor: name, reason: "unknown key '\(key)'")
        }
        guard let dtypeString = o["dtype"]?.stringValue else {
            throw .invalidEntry(path: path, tensor: name, reason: "missing or non-string 'dtype'")
        }
        guard let dtype = DType(rawValue: dtypeString) else {
            throw .unknownDType(path: path, tensor: name, dtype: dtypeString)
        }
        guard let shapeValues = o["shape"]?.arrayValue else {
            throw .invalidEntry(path: path, tensor: name, reason: "missing or non-array 'shape'")
        }
        var shape: [Int] = []
        for d in shapeValues {
            guard let v = d.intValue, v >= 0 else {
                throw .invalidEntry(path: path, tensor: name, reason: "shape entries must be non-negative integers")
            }
            shape.append(v)
        }
        guard let offs = o["data_offsets"]?.arrayValue, offs.count == 2,
            let begin = offs[0].intValue, let end = offs[1].intValue, begin >= 0, end >= begin
        else {
            throw .invalidEntry(
                path: path, tensor: name,
                reason: "'data_offsets' must be two integers [begin, end] with 0 <= begin <= end")
        }
        let (count, overflow) = shape.reduce((1, false)) { acc, d in
            let (m, o) = acc.0.multipliedReportingOverflow(by: d)
            return (m, acc.1 || o)
        }
        let (bytes, overflow2) = count.multipliedReportingOverflow(by: dtype.byteSize)
        if overflow || overflow2 || bytes != end - begin {
            throw .byteCountMismatch(
                path: path, tensor: name, shape: shape, dtype: dtype.rawValue,
                expected: overflow || overflow2 ? Int.max : bytes, found: end - begin)
        }
        if end > dataSize { throw .offsetPastEnd(path: path, tensor: name, end: end, dataSize: dataSize) }
        return TensorInfo(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }

    public var tensorNames: [String] { tensors.map(\.name) }

    public func info(_ name: String) -> TensorInfo? { index[name].map { tensors[$0] } }

    /// The raw little-endian bytes of a tensor (a view into the mapping, valid while `self` lives).
    public func rawBytes(_ name: String) throws(TensorStoreError) -> UnsafeRawBufferPointer {
        guard let t = info(name) else { throw .missingTensor(path: path, tensor: name) }
        return rawBytes(t)
    }

    public func rawBytes(_ t: TensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: file.base.map { $0 + dataOffset + t.begin }, count: t.byteCount)
    }

    /// Lets the OS drop the pages of a tensor that has been copied out (keeps peak RSS low).
    public func releasePages(_ t: TensorInfo) {
        file.release(offset: dataOffset + t.begin, count: t.byteCount)
    }

    /// Hands back the pages of bytes `range` of tensor t's data (whole pages inside it only).
    public func releasePages(_ t: TensorInfo, bytes range: Range<Int>) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = dataOffset + t.begin + range.lowerBound, end = dataOffset + t.begin + range.upperBound
        let first = (start + page - 1) / page * page, last = end / page * page
        if last > first { file.release(offset: first, count: last - first) }
    }

    /// Reads a floating-point tensor (F32, F16, BF16, F8) widened to Float32 into `dst`.
    public func readFloat32(_ t: TensorInfo, into dst: UnsafeMutablePointer<Float>) throws(TensorStoreError) {
        let raw = rawBytes(t)
        let n = t.elementCount
        guard n > 0, let src = raw.baseAddress else { return }
        switch t.dtype {
        case .f32:
            if Int(bitPattern: src) % 4 == 0 {
                dst.update(from: src.assumingMemoryBound(to: Float.self), count: n)
            } else {
                for i in 0..<n {
                    dst[i] = Float(
                        bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                }
            }
        case .f16, .bf16:
            if Int(bitPattern: src) % 2 == 0 {
                let p = src.assumingMemoryBound(to: UInt16.self)
                if t.dtype == .f16 { Widen.f16(p, dst, count: n) } else { Widen.bf16(p, dst, count: n) }
            } else {
                for i in 0..<n {
                    let h = UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                    dst[i] = t.dtype == .f16 ? FP16.decode(h) : BF16.decode(h)
                }
            }
        case .f8e4m3:
            let p = src.assumingMemoryBound(to: UInt8.self)
            for i in 0..<n { dst[i] = FP8E4M3.decode(p[i]) }
        case .f8e5m2:
            let p = src.assumingMemoryBound(to: UInt8.self)
            for i in 0..<n { dst[i] = FP8E5M2.decode(p[i]) }
        default:
            throw .wrongDType(path: path, tensor: t.name, expected: "a floating-point dtype", found: t.dtype.rawValue)
        }
    }

    /// Reads a floating-point tensor widened to Float32, checking its shape when `shape` is given.
    public func float32(_ name: String, shape: [Int]? = nil) throws(TensorStoreError) -> [Float] {
        guard let t = info(name) else { throw .missingTensor(path: path, tensor: name) }
        if let shape, shape != t.shape { throw .wrongShape(path: path, tensor: name, expected: shape, found: t.shape) }
        var out = [Float](repeating: 0, count: t.elementCount)
        try out.withUnsafeMutableBufferPointer { (b) throws(TensorStoreError) in
            if let p = b.baseAddress { try readFloat32(t, into: p) }
        }
        return out
    }
}
