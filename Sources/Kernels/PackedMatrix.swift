import CFireQKernels
import Foundation

/// A weight matrix W (rows × cols, i.e. [out, in]) stored in the panel layout of
/// `fq_sgemm_packed` (CFireQKernels.h): panels of 32 rows, each [cols][32], zero-padded.
/// Packed once at load time, so GEMMs never re-pack weights.
public final class PackedMatrix: @unchecked Sendable {
    public static let panelWidth = 32
    public let rows: Int
    public let cols: Int
    public let storage: FloatBuffer

    /// Packs a row-major (rows, cols) matrix.
    public init(rowMajor w: UnsafePointer<Float>, rows: Int, cols: Int) {
        self.rows = rows
        self.cols = cols
        storage = FloatBuffer(count: fq_sgemm_packed_count(rows, cols), zeroed: false)
        fq_sgemm_pack(w, rows, cols, storage.pointer)
    }

    public var panels: Int { (rows + Self.panelWidth - 1) / Self.panelWidth }

    private let halfLock = NSLock()
    private var halfState: (tried: Bool, storage: UnsafeMutablePointer<UInt16>?) = (false, nil)

    /// The same panels in binary16, made on first use, when every value is exact in binary16 (an
    /// F16 checkpoint's weights, every FP8 E4M3 value); nil otherwise. The single-row (decode)
    /// GEMV reads these: half the memory traffic, the same result bit for bit.
    /// `FIREQ_DECODE_GEMV=0` in the environment turns the path off (benchmark baseline).
    public func halfPanels() -> UnsafePointer<UInt16>? {
        halfLock.lock(); defer { halfLock.unlock() }
        if !halfState.tried && Self.halfGEMVEnabled {
            halfState.tried = true
            let count = fq_gemv_f16_count(rows, cols)
            let p = UnsafeMutablePointer<UInt16>.allocate(capacity: count)
            if fq_f32_to_f16_exact(storage.pointer, count, p) == 1 { halfState.storage = p } else { p.deallocate() }
        }
        return halfState.storage.map { UnsafePointer($0) }
    }

    static let halfGEMVEnabled = ProcessInfo.processInfo.environment["FIREQ_DECODE_GEMV"] != "0"

    deinit { halfState.storage?.deallocate() }

    /// W[r, c].
    @inline(__always) public func element(_ r: Int, _ c: Int) -> Float {
        storage.pointer[(r / Self.panelWidth) * Self.panelWidth * cols + c * Self.panelWidth + r % Self.panelWidth]
    }

    /// Copies row r (cols values) into `out` (an embedding lookup when W is the embedding table).
    public func copyRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        let base = storage.pointer + (r / Self.panelWidth) * Self.panelWidth * cols + r % Self.panelWidth
        for c in 0..<cols { out[c] = base[c * Self.panelWidth] }
    }

    /// The matrix back in row-major order (for tests and tools).
    public func rowMajor() -> [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        out.withUnsafeMutableBufferPointer { b in for r in 0..<rows { copyRow(r, into: b.baseAddress! + r * cols) } }
        return out
    }
}
