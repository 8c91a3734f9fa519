import Foundation

/// Why a file could not be read whole; `description` is one sentence naming the file.
public struct FileReadError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let reason: String
    /// The file does not exist (callers that have a "missing file" message of their own use it).
    public let missing: Bool
    public init(path: String, reason: String, missing: Bool = false) {
        self.path = path; self.reason = reason; self.missing = missing
    }
    public var description: String { "\(path): \(reason)" }
}

/// Reads small input files (JSON, recipes, manifests, texts) whole, with the size checked against a
/// limit *before* anything is allocated for the contents. Used instead of
/// `FileManager.contents(atPath:)`, which has no limit and, in the Swift 6.3 toolchain's
/// FoundationEssentials, leaks 4 KiB on every empty file (found by the fuzzers, issue #13).
public enum FileBytes {
    /// config.json, recipes, metadata overrides, index files, reports: far below this.
    public static let smallJSONLimit = 64 << 20
    /// tokenizer.json: the largest public ones (Gemma's 262 k vocabulary) are ~35 MB.
    public static let tokenizerLimit = 512 << 20
    /// Calibration and evaluation texts, token files.
    public static let textLimit = 4 << 30

    public static func read(_ path: String, limit: Int) throws(FileReadError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            throw FileReadError(
                path: path,
                reason: e == ENOENT ? "does not exist" : "cannot be opened (\(String(cString: strerror(e))))",
                missing: e == ENOENT)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw FileReadError(path: path, reason: "cannot be read (\(String(cString: strerror(errno))))")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw FileReadError(path: path, reason: "is a folder, not a file") }
        if (st.st_mode & S_IFMT) != S_IFREG { return try stream(fd, path: path, limit: limit) }  // a pipe, /dev/stdin, <(…)
        let size = Int(st.st_size)
        guard size <= limit else {
            throw FileReadError(
                path: path, reason: "has \(size) bytes, more than this kind of file may have (\(limit))")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n = bytes.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress! + done, size - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileReadError(path: path, reason: "cannot be read (\(String(cString: strerror(errno))))")
            }
            if n == 0 {
                throw FileReadError(path: path, reason: "shrank while it was read (from \(size) to \(done) bytes)")
            }
            done += n
        }
        return bytes
    }

    /// Reads a pipe or device to its end in 1 MiB steps, failing as soon as it passes the limit.
    private static func stream(_ fd: Int32, path: String, limit: Int) throws(FileReadError) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileReadError(path: path, reason: "cannot be read (\(String(cString: strerror(errno))))")
            }
            if n == 0 { return out }
            guard out.count + n <= limit else {
                throw FileReadError(
                    path: path, reason: "has more than \(limit) bytes, more than this kind of file may have")
            }
            out += chunk[0..<n]
        }
    }

    /// The contents, or nil when the file is missing, unreadable or over the limit (for optional files).
    public static func readIfPresent(_ path: String, limit: Int) -> [UInt8]? {
        try? read(path, limit: limit)
    }
}
