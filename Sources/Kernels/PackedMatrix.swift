import CFireQKernels

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
