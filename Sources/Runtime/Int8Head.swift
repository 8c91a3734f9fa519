import CFireQKernels
import Foundation
import Kernels

/// The lm_head as INT8 codes with one FP32 scale per vocabulary row (recipe
/// `lm_head.format: "int8"`; Formats/runtime-numerics.md "INT8 lm_head"), made at load from the
/// stored 16-bit table: half its bytes, read once per decoded token, and its logits computed with
/// AVX-512 BF16 (the input rounded to BF16; every path gives the same bits). With tied embeddings
/// it is the input embedding too (row values q·s).
public final class Int8Head: @unchecked Sendable {
    /// Vocabulary rows and hidden columns.
    public let rows: Int, cols: Int
    let codes: UnsafeMutablePointer<Int8>
    let shifts: UnsafeMutablePointer<UInt8>
    let scales: FloatBuffer

    /// From a row-major (rows, cols) table of binary16 (or bfloat16) values.
    public init(rowMajor16 w: UnsafeRawPointer, bf16: Bool, rows: Int, cols: Int) {
        self.rows = rows; self.cols = cols
        codes = .allocate(capacity: fq_int8_codes_bytes(rows, cols))
        shifts = .allocate(capacity: fq_int8_shifts_bytes(rows, cols))
        scales = FloatBuffer(count: rows, zeroed: false)
        fq_int8_quantize16(
            w.assumingMemoryBound(to: UInt16.self), bf16 ? 1 : 0, rows, cols, codes, shifts, scales.pointer)
    }

    /// From a row-major (rows, cols) FP32 table.
    public init(rowMajor w: UnsafePointer<Float>, rows: Int, cols: Int) {
        self.rows = rows; self.cols = cols
        codes = .allocate(capacity: fq_int8_codes_bytes(rows, cols))
        shifts = .allocate(capacity: fq_int8_shifts_bytes(rows, cols))
        scales = FloatBuffer(count: rows, zeroed: false)
        fq_int8_quantize(w, rows, cols, codes, shifts, scales.pointer)
    }

    deinit { codes.deallocate(); shifts.deallocate() }

    public var byteCount: Int { fq_int8_codes_bytes(rows, cols) + fq_int8_shifts_bytes(rows, cols) + 4 * rows }
    var panels: Int { (rows + 31) / 32 }

    /// Row r's values (q·2^−j)·s_r (the tied input embedding of token r).
    public func copyRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        fq_int8_row(codes, shifts, scales.pointer, cols, r, out)
    }

    /// out[i, 0..<rows] (rows `ldo` apart) = the logits of hidden row i (rows `cols` apart), on a
    /// chosen kernel path (-1 automatic; tests), the panels split over `threads` threads.
    public func logits(
        hidden: UnsafePointer<Float>, count m: Int, out: UnsafeMutablePointer<Float>, ldo: Int,
        threads: Int, path: Int32 = -1
    ) {
        let x = FloatBuffer(count: m * cols, zeroed: false)
        fq_int8_round_input(hidden, m * cols, x.pointer)
        let xp = SendablePointer(x.pointer), o = SendablePointer(out), cp = SendablePointer(codes),
            sp = SendablePointer(scales.pointer)
        let hp = SendablePointer(shifts)
        let (n, k) = (rows, cols)
        Parallel.forEachChunk(panels, chunk: max(1, (panels + 4 * threads - 1) / (4 * threads)), threads: threads) {
            r in
            fq_int8_gemm_on(path, xp.p, k, m, cp.p, hp.p, sp.p, n, k, r.lowerBound, r.upperBound, o.p, ldo)
        }
        withExtendedLifetime(x) {}
    }
}
