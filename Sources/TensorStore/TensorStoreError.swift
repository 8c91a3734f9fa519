/// Errors reading or writing tensor files. Each reads as one sentence naming the file and the problem.
public enum TensorStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    case truncated(path: String, size: Int)
    case headerTooLarge(path: String, length: UInt64, limit: Int)
    case headerPastEnd(path: String, length: UInt64, fileSize: Int)
    case invalidHeaderJSON(path: String, reason: String)
    case invalidEntry(path: String, tensor: String, reason: String)
    case unknownDType(path: String, tensor: String, dtype: String)
    case byteCountMismatch(path: String, tensor: String, shape: [Int], dtype: String, expected: Int, found: Int)
    case offsetPastEnd(path: String, tensor: String, end: Int, dataSize: Int)
    case overlap(path: String, tensor: String, other: String, offset: Int)
    case gap(path: String, tensor: String, offset: Int, expected: Int)
    case trailingBytes(path: String, dataEnd: Int, dataSize: Int)
    case missingTensor(path: String, tensor: String)
    case unexpectedTensors(path: String, tensors: [String])
    case wrongShape(path: String, tensor: String, expected: [Int], found: [Int])
    case wrongDType(path: String, tensor: String, expected: String, found: String)
    case invalidIndex(path: String, reason: String)
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case .cannotOpen(let p, let r): return "\(p): cannot open: \(r)."
        case .truncated(let p, let s):
            return "\(p): file is truncated (\(s) bytes, a safetensors file needs at least the 8-byte header length)."
        case .headerTooLarge(let p, let l, let lim):
            return "\(p): header length \(l) exceeds the limit of \(lim) bytes."
        case .headerPastEnd(let p, let l, let s):
            return
                "\(p): header length \(l) runs past the end of the file (\(s) bytes); the file is truncated or not safetensors."
        case .invalidHeaderJSON(let p, let r): return "\(p): header is not valid JSON: \(r)."
        case .invalidEntry(let p, let t, let r): return "\(p): tensor '\(t)': \(r)."
        case .unknownDType(let p, let t, let d):
            return
                "\(p): tensor '\(t)' has unsupported dtype '\(d)' (supported: \(DType.allCases.map(\.rawValue).joined(separator: ", ")))."
        case .byteCountMismatch(let p, let t, let sh, let d, let e, let f):
            return
                "\(p): tensor '\(t)' with shape \(sh) and dtype \(d) needs \(e) bytes but its data_offsets span \(f)."
        case .offsetPastEnd(let p, let t, let e, let s):
            return
                "\(p): tensor '\(t)' ends at data offset \(e), past the end of the data section (\(s) bytes); the file is truncated."
        case .overlap(let p, let t, let o, let off):
            return "\(p): tensor '\(t)' overlaps tensor '\(o)' at data offset \(off)."
        case .gap(let p, let t, let off, let e):
            return
                "\(p): tensor '\(t)' starts at data offset \(off) but the previous tensor ends at \(e) (gap in the data section)."
        case .trailingBytes(let p, let e, let s):
            return "\(p): tensors end at data offset \(e) but the data section has \(s) bytes (unused trailing bytes)."
        case .missingTensor(let p, let t): return "\(p): tensor '\(t)' is missing."
        case .unexpectedTensors(let p, let ts):
            return
                "\(p): unexpected tensor(s) \(ts.prefix(5).map { "'\($0)'" }.joined(separator: ", "))\(ts.count > 5 ? " and \(ts.count - 5) more" : "")."
        case .wrongShape(let p, let t, let e, let f): return "\(p): tensor '\(t)' has shape \(f), expected \(e)."
        case .wrongDType(let p, let t, let e, let f): return "\(p): tensor '\(t)' has dtype \(f), expected \(e)."
        case .invalidIndex(let p, let r): return "\(p): invalid sharded-checkpoint index: \(r)."
        case .writeFailed(let p, let r): return "\(p): cannot write: \(r)."
        }
    }
}
