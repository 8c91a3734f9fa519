import COpenBLAS

/// FP32 GEMMs of the reference pass, through OpenBLAS (single-threaded calls; parallelism is
/// ours: the output columns are split over threads). OpenBLAS's summation order depends on the
/// shape of each call, so the column blocks have a fixed width whatever the thread count: every
/// call has the same shape, and results do not depend on the thread count (a test pins this).
public enum LinearAlgebra {
    /// Width of every column block.
    static let columnGranule = 64

    /// Pins OpenBLAS to one thread per call (we parallelise across calls).
    public static func configureBLAS() {
        openblas_set_num_threads(1)
    }

    /// y[m, n] = x[m, k] · W[n, k]ᵀ (+ y when `accumulate`). Row strides `ldx`, `ldy`.
    public static func linear(x: UnsafePointer<Float>, ldx: Int, m: Int,
                              w: UnsafePointer<Float>, n: Int, k: Int,
                              y: UnsafeMutablePointer<Float>, ldy: Int,
                              accumulate: Bool = false, threads: Int) {
        guard m > 0, n > 0 else { return }
        let xs = SendablePointer(UnsafeMutablePointer(mutating: x))
        let ws = SendablePointer(UnsafeMutablePointer(mutating: w))
        let ys = SendablePointer(y)
        Parallel.forEachChunk(n, chunk: columnGranule, threads: threads) { r in
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(r.count), Int32(k),
                        1, xs.p, Int32(ldx), ws.p + r.lowerBound * k, Int32(k),
                        accumulate ? 1 : 0, ys.p + r.lowerBound, Int32(ldy))
        }
    }

    /// C[m, n] = alpha · A[m, k] · B[n, k]ᵀ, single-threaded (used inside parallel attention).
    @inline(__always)
    static func gemmNT(m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                       b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
    }

    /// C[m, n] = A[m, k] · B[k, n], single-threaded.
    @inline(__always)
    static func gemmNN(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                       b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                    1, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
    }
}
