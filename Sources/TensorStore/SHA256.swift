import Crypto

/// SHA-256 (FIPS 180-4), streaming: swift-crypto's (BoringSSL, SHA-NI where the CPU has it),
/// behind the small interface the provenance hashes use (model, calibration data, packed files).
public struct SHA256 {
    private var hasher = Crypto.SHA256()

    public init() {}

    public mutating func update(_ data: UnsafeRawBufferPointer) {
        hasher.update(bufferPointer: data)
    }

    public mutating func update<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        if let done = bytes.withContiguousStorageIfAvailable({ update(UnsafeRawBufferPointer($0)) }) { return done }
        Array(bytes).withUnsafeBytes { update($0) }
    }

    /// The digest as lowercase hex.
    public mutating func finalizeHex() -> String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(64)
        for b in hasher.finalize() { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    public static func hex<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        var s = SHA256(); s.update(bytes); return s.finalizeHex()
    }
}

extension Checkpoint {
    /// Model hash of Formats/calibration-stats.md: SHA-256 over config.json's bytes, then for
    /// every tensor in byte-wise name order its UTF-8 name, 0x00, and its raw bytes.
    public func modelHash(configBytes: [UInt8]) throws(TensorStoreError) -> String {
        var s = SHA256()
        s.update(configBytes)
        for name in tensorNames.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) {
            s.update(Array(name.utf8) + [0])
            let (f, t) = try file(for: name)
            s.update(f.rawBytes(t))
            f.releasePages(t)
        }
        return s.finalizeHex()
    }
}

extension SHA256 {
    /// SHA-256 of a file's bytes (mapped, not read into memory), hex.
    public static func fileHex(_ path: String) throws(TensorStoreError) -> String {
        let f = try MappedFile(path: path)
        var s = SHA256()
        if let base = f.base { s.update(UnsafeRawBufferPointer(start: base, count: f.size)) }
        return s.finalizeHex()
    }
}
