import CFireQKernels
import Foundation

/// A weight matrix W (rows × cols, i.e. [out, in]) stored in the panel layout of
/// `fq_sgemm_packed` (CFireQKernels.h): panels of 32 rows, each [cols][32], zero-padded.
/// Packed once at load time, so GEMMs never re-pack weights.
///
/// Weights whose every value is exact in IEEE binary16 or bfloat16 (an F16/BF16 checkpoint's,
/// expanded FP8 values) are kept in 16 bits, so a model needs about its file size in memory, not
/// twice it; the kernels widen one panel at a time to FP32 and run the same FMA chains, so the
/// results are bit-identical to FP32 panels (tests pin them).
public final class PackedMatrix: @unchecked Sendable {
    public static let panelWidth = 32
    public enum Storage: String, Sendable { case f32, f16, bf16 }
    public let rows: Int
    public let cols: Int
    public let storage: Storage
    /// The panels: Float32 values for `.f32`, 16-bit patterns otherwise.
    private let f32: UnsafeMutablePointer<Float>?
    private let half: UnsafeMutablePointer<UInt16>?

    /// Packs a row-major (rows, cols) FP32 matrix, in 16 bits when every value is exact there
    /// (binary16 first, then bfloat16) unless `narrow` is false.
    public init(rowMajor w: UnsafePointer<Float>, rows: Int, cols: Int, narrow: Bool = true) {
        self.rows = rows
        self.cols = cols
        let count = fq_sgemm_packed_count(rows, cols)
        let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
        fq_sgemm_pack(w, rows, cols, p)
        if narrow {
            let h = UnsafeMutablePointer<UInt16>.allocate(capacity: count)
            if fq_f32_to_f16_exact(p, count, h) == 1 {
                p.deallocate(); storage = .f16; f32 = nil; half = h; return
            }
            if fq_f32_to_bf16_exact(p, count, h) == 1 {
                p.deallocate(); storage = .bf16; f32 = nil; half = h; return
            }
            h.deallocate()
        }
        storage = .f32; f32 = p; half = nil
    }

    /// Packs a row-major (rows, cols) matrix of little-endian 16-bit values (binary16, or
    /// bfloat16 when `bf16`) without widening it.
    /// `consumed(bytes)` is called after each block of rows is packed with the byte range of `w`
    /// read so far, so a caller reading from a mapped file can hand those pages back at once
    /// (an 8B-shape embedding is 1 GB: mapped source plus packed copy would double it).
    public init(
        rowMajor16 w: UnsafeRawPointer, bf16: Bool, rows: Int, cols: Int, consumed: ((Range<Int>) -> Void)? = nil
    ) {
        self.rows = rows
        self.cols = cols
        let count = fq_sgemm_packed_count(rows, cols)
        let h = UnsafeMutablePointer<UInt16>.allocate(capacity: count)
        let src = w.assumingMemoryBound(to: UInt16.self)
        let block = Self.panelWidth * max(1, (1 << 22) / max(1, Self.panelWidth * cols))  // ~8 MB of rows
        var r0 = 0
        while r0 < rows {
            let n = min(block, rows - r0)
            fq_pack16(src + r0 * cols, n, cols, h + r0 * cols)  // r0 is a multiple of 32: whole panels
            consumed?((2 * r0 * cols)..<(2 * (r0 + n) * cols))
            r0 += n
        }
        storage = bf16 ? .bf16 : .f16; f32 = nil; half = h
    }

    deinit { f32?.deallocate(); half?.deallocate() }

    public var panels: Int { (rows + Self.panelWidth - 1) / Self.panelWidth }
    /// Bytes the panels occupy.
    public var byteCount: Int { fq_sgemm_packed_count(rows, cols) * (storage == .f32 ? 4 : 2) }

    /// `FIREQ_DECODE_GEMV=0` in the environment sends single rows through the GEMM (benchmark baseline).
    static let gemvEnabled = ProcessInfo.processInfo.environment["FIREQ_DECODE_GEMV"] != "0"

    /// y[i, c] (+)= Σ_k x[i, k]·W[c, k] for the columns of panels p0 ..< p1 (one thread's share).
    public func multiply(
        x: UnsafePointer<Float>, ldx: Int, m: Int, panels p: Range<Int>, y: UnsafeMutablePointer<Float>, ldy: Int,
        accumulate: Bool
    ) {
        let acc: Int32 = accumulate ? 1 : 0
        if let f32 {
            fq_sgemm_packed(x, ldx, m, f32, rows, cols, p.lowerBound, p.upperBound, y, ldy, acc)
        } else if let half {
            let bf: Int32 = storage == .bf16 ? 1 : 0
            if m == 1 && Self.gemvEnabled {
                fq_gemv_h(x, half, bf, rows, cols, p.lowerBound, p.upperBound, y, acc)
            } else {
                fq_sgemm_packed16(x, ldx, m, half, bf, rows, cols, p.lowerBound, p.upperBound, y, ldy, acc)
            }
        }
    }

    /// W[r, c].
    @inline(__always) public func element(_ r: Int, _ c: Int) -> Float {
        let i = (r / Self.panelWidth) * Self.panelWidth * cols + c * Self.panelWidth + r % Self.panelWidth
        return value(i)
    }

    @inline(__always) private func value(_ i: Int) -> Float {
        if let f32 { return f32[i] }
        let h = half![i]
        return storage == .bf16 ? Float(bitPattern: UInt32(h) << 16) : Float(Float16(bitPattern: h))
    }

    /// Copies row r (cols values) into `out` (an embedding lookup when W is the embedding table).
    public func copyRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        let base = (r / Self.panelWidth) * Self.panelWidth * cols + r % Self.panelWidth
        for c in 0..<cols { out[c] = value(base + c * Self.panelWidth) }
    }

    /// The matrix back in row-major order (for tests and tools).
    public func rowMajor() -> [Float] {
        var out = [Float](repeating: 0, count: rows * cols)
        out.withUnsafeMutableBufferPointer { b in for r in 0..<rows { copyRow(r, into: b.baseAddress! + r * cols) } }
        return out
    }
}
