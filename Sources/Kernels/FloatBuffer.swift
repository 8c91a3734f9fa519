#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An owned, 64-byte-aligned Float32 buffer (weights and activations of the reference pass).
///
/// Buffers of 1 MiB and more are anonymous memory mappings returned to the OS on release: with
/// malloc, a layer-by-layer pass (calibration) grew its resident set by one freed layer per layer,
/// because glibc raises its mmap threshold after the first large free and keeps later ones in
/// the heap (measured: +14 MiB per SmolLM2 layer).
public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>
    private let mappedBytes: Int

    static let mmapThreshold = 1 << 20

    public init(count: Int, zeroed: Bool = true) {
        self.count = count
        let bytes = max(count, 1) * 4
        if bytes >= Self.mmapThreshold,
            let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED
        {
            mappedBytes = bytes
            pointer = p.bindMemory(to: Float.self, capacity: max(count, 1))  // fresh mappings are zero
        } else {
            mappedBytes = 0
            let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
            if zeroed { pointer.initialize(repeating: 0, count: max(count, 1)) }
        }
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count, zeroed: false)
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    deinit {
        if mappedBytes > 0 { munmap(UnsafeMutableRawPointer(pointer), mappedBytes) } else { pointer.deallocate() }
    }
}

/// Lets concurrently running closures write disjoint parts of a buffer.
public struct SendablePointer<T>: @unchecked Sendable {
    public let p: UnsafeMutablePointer<T>
    public init(_ p: UnsafeMutablePointer<T>) { self.p = p }
}
