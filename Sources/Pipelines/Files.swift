import Foundation
import JSONSupport
import TensorStore

/// SHA-256 of a file's bytes (mapped, not read into memory).
public func fileSHA256(_ path: String) throws -> String { try SHA256.fileHex(path) }

/// Reads a whole file as UTF-8 text, with a one-sentence error when it cannot.
public func readText(_ path: String) throws -> String {
    let data: [UInt8]
    do { data = try FileBytes.read(path, limit: FileBytes.textLimit) } catch {
        throw PipelineError("\(path): cannot read the file (\(error.reason)).")
    }
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
public func parentFolder(_ p: String) -> String {
    let d = (p as NSString).deletingLastPathComponent
    return d.isEmpty ? "." : d
}

/// Host name (for lock and status records).
public func hostName() -> String {
    var buf = [CChar](repeating: 0, count: 256)
    guard gethostname(&buf, buf.count - 1) == 0 else { return "?" }
    return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

public func isoNow() -> String { ISO8601DateFormatter().string(from: Date()) }

/// Writes text to a file atomically (temp file, then rename).
public func writeAtomically(_ text: String, to path: String) throws {
    try AtomicFile.write(to: path) { (h) throws(TensorStoreError) in try h.write(Data(text.utf8), path: path) }
}
