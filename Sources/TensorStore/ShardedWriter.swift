import Foundation
import JSONSupport

/// Writes tensors into safetensors shards as they are produced, holding none of them in memory
/// (Formats/fireq-packed-v1.md "Shards"): each tensor's bytes go to the current shard's spool file
/// at once; when a shard is full it is laid out as a safetensors file (tensors sorted by name,
/// the same bytes `SafetensorsWriter.write` gives for them) and the spool is deleted. One shard
/// is named `model.safetensors`; n > 1 shards `model-0000k-of-0000n.safetensors` with
/// `model.safetensors.index.json` (Hugging Face's convention). Everything is written inside
/// `folder`, which the caller publishes (renames) when complete.
public final class ShardedSafetensorsWriter {
    struct Entry { let name: String; let dtype: DType; let shape: [Int]; let offset: Int; let count: Int }

    public let folder: String
    public let maxShardBytes: Int
    /// The metadata of a shard, given the names of its tensors (the caller adds e.g. their crc32s).
    let metadata: ([String]) -> [String: String]
    private var entries: [Entry] = []
    private var spoolFD: Int32 = -1
    private var spoolPath: String { folder + "/.spool" }
    private var spoolBytes = 0
    private var shardFiles: [(tmp: String, names: [String], bytes: Int)] = []

    public init(folder: String, maxShardBytes: Int, metadata: @escaping ([String]) -> [String: String]) {
        precondition(maxShardBytes > 0)
        self.folder = folder
        self.maxShardBytes = maxShardBytes
        self.metadata = metadata
    }

    deinit {
        if spoolFD >= 0 { close(spoolFD); unlink(spoolPath) }
    }

    private func fail(_ path: String, _ what: String) -> TensorStoreError {
        .writeFailed(path: path, reason: "\(what): \(String(cString: strerror(errno)))")
    }

    /// Starts a group of tensors that stays in one shard (a decoder layer): closes the current
    /// shard first when the group would not fit in it. A group larger than a shard gets its own.
    public func beginGroup(bytes: Int) throws(TensorStoreError) {
        if !entries.isEmpty && spoolBytes + bytes > maxShardBytes { try closeShard() }
    }

    /// Appends one tensor to the current shard (its bytes go to disk now).
    public func add(_ t: TensorData) throws(TensorStoreError) {
        if spoolFD < 0 {
            spoolFD = open(spoolPath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard spoolFD >= 0 else { throw fail(spoolPath, "cannot create the spool file") }
            spoolBytes = 0
        }
        let fd = spoolFD
        guard t.bytes.withUnsafeBytes({ Self.writeAll(fd, $0) }) else { throw fail(spoolPath, "write failed") }
        entries.append(Entry(name: t.name, dtype: t.dtype, shape: t.shape, offset: spoolBytes, count: t.bytes.count))
        spoolBytes += t.bytes.count
    }

    /// Writes all of `b`; false (errno set) on failure.
    private static func writeAll(_ fd: Int32, _ b: UnsafeRawBufferPointer) -> Bool {
        var done = 0
        while done < b.count {
            let n = Foundation.write(fd, b.baseAddress! + done, b.count - done)
            if n < 0 { if errno == EINTR { continue }; return false }
            done += n
        }
        return true
    }

    /// Lays the spooled tensors out as one safetensors file (names sorted), fsyncs it.
    private func closeShard() throws(TensorStoreError) {
        guard !entries.isEmpty else { return }
        let sorted = entries.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        let path = folder + "/.shard-\(shardFiles.count).tmp"
        let header = SafetensorsWriter.header(
            entries: sorted.map { ($0.name, $0.dtype, $0.shape, $0.count) }, metadata: metadata(sorted.map(\.name)))
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw fail(path, "cannot create the shard") }
        defer { close(fd) }
        var len = UInt64(header.count).littleEndian
        guard withUnsafeBytes(of: &len, { Self.writeAll(fd, $0) }), header.withUnsafeBytes({ Self.writeAll(fd, $0) })
        else {
            throw fail(path, "write failed")
        }
        var buf = [UInt8](repeating: 0, count: 1 << 22)
        for e in sorted {
            var done = 0
            while done < e.count {
                let want = min(buf.count, e.count - done)
                let sfd = spoolFD
                let n = buf.withUnsafeMutableBytes { pread(sfd, $0.baseAddress!, want, off_t(e.offset + done)) }
                guard n > 0 else { throw fail(spoolPath, "cannot read the spool back") }
                guard buf.withUnsafeBytes({ Self.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }) else {
                    throw fail(path, "write failed")
                }
                done += n
            }
        }
        guard fsync(fd) == 0 else { throw fail(path, "fsync failed") }
        shardFiles.append((path, sorted.map(\.name), sorted.reduce(0) { $0 + $1.count }))
        entries = []
        close(spoolFD)
        spoolFD = -1
        unlink(spoolPath)
    }

    /// Closes the last shard and names the files; returns their names (index last when sharded).
    /// `indexMetadata` goes into the index's "metadata" next to "total_size".
    @discardableResult
    public func finish(indexMetadata: [String: String] = [:]) throws(TensorStoreError) -> [String] {
        try closeShard()
        guard !shardFiles.isEmpty else { throw .writeFailed(path: folder, reason: "no tensors to write") }
        let n = shardFiles.count
        if n == 1 {
            guard rename(shardFiles[0].tmp, folder + "/model.safetensors") == 0 else {
                throw fail(folder + "/model.safetensors", "rename failed")
            }
            return ["model.safetensors"]
        }
        var names: [String] = []
        var map: [(String, String)] = []
        for (k, s) in shardFiles.enumerated() {
            let name = String(format: "model-%05d-of-%05d.safetensors", k + 1, n)
            guard rename(s.tmp, folder + "/" + name) == 0 else { throw fail(folder + "/" + name, "rename failed") }
            names.append(name)
            for t in s.names { map.append((t, name)) }
        }
        map.sort { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }
        var meta = JSONObject([("total_size", .int(shardFiles.reduce(0) { $0 + $1.bytes }))])
        for k in indexMetadata.keys.sorted() { meta[k] = .string(indexMetadata[k]!) }
        let index = JSONObject([
            ("metadata", .object(meta)), ("weight_map", .object(JSONObject(map.map { ($0.0, .string($0.1)) })))
        ])
        try AtomicFile.write(
            Data((JSONWriter.pretty(.object(index)) + "\n").utf8), to: folder + "/model.safetensors.index.json")
        return names + ["model.safetensors.index.json"]
    }
}

/// "5GB", "500MB", "2GiB", "123456" → bytes (decimal units as Hugging Face's max_shard_size, binary with "i").
public func parseByteSize(_ s: String) -> Int? {
    let t = s.trimmingCharacters(in: .whitespaces).uppercased()
    let units: [(String, Double)] = [
        ("GIB", 1_073_741_824), ("MIB", 1_048_576), ("KIB", 1024), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1)
    ]
    for (u, m) in units where t.hasSuffix(u) {
        guard let v = Double(t.dropLast(u.count).trimmingCharacters(in: .whitespaces)), v * m >= 1, v * m < 1e18 else {
            return nil
        }
        return Int(v * m)
    }
    guard let v = Int(t), v > 0 else { return nil }
    return v
}
