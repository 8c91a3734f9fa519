import CFireQKernels
import COpenBLAS

/// FP32 GEMMs of the reference pass.
///
/// Linear layers use the packed-weight kernel of CFireQKernels (`fq_sgemm_packed`): every
/// output element is one FMA chain over k, so results do not depend on blocking, thread count or
/// instruction set (AVX2 and portable paths agree bit for bit; tests pin them). Measured on this
/// machine (2-core AMD EPYC, AVX2): on par with OpenBLAS 0.3.21 single-threaded SGEMM,
/// ~80–90 GFLOP/s per core at 512×1536×576 (Benchmarks/README.md). Attention runs on the
/// fixed-order kernels (`LlamaForward.attention`); OpenBLAS is linked only as the benchmarks'
/// baseline, since its kernels (and so its rounding) differ from one CPU to another.
public enum LinearAlgebra {
    /// Pins OpenBLAS to one thread per call (we parallelise across calls).
    public static func configureBLAS() {
        openblas_set_num_threads(1)
    }

    /// The benchmarks' baseline: OpenBLAS SGEMM y[m, n] = x[m, k] · w[n, k]ᵀ on `threads` threads
    /// (row-major, unpacked; restores one thread per call afterwards).
    public static func openblasSGEMM(
        x: UnsafePointer<Float>, w: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int,
        threads: Int
    ) {
        openblas_set_num_threads(Int32(threads))
        defer { configureBLAS() }
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1, x, Int32(k), w, Int32(k), 0, y,
            Int32(n))
    }

    /// y[m, n] = x[m, k] · Wᵀ (+ y when `accumulate`), W packed (n, k). Row strides `ldx`, `ldy`.
    /// The weight panels are split over `threads` threads.
    public static func linear(
        x: UnsafePointer<Float>, ldx: Int, m: Int, w: PackedMatrix,
        y: UnsafeMutablePointer<Float>, ldy: Int,
        accumulate: Bool = false, threads: Int
    ) {
        guard m > 0, w.rows > 0 else { return }
        let xs = SendablePointer(UnsafeMutablePointer(mutating: x)), ys = SendablePointer(y)
        let panels = w.panels
        // One row (decode) is bound by memory traffic: smaller chunks spread it over the threads.
        let chunk =
            m == 1 ? max(1, (panels + 4 * threads - 1) / (4 * threads)) : max(1, (panels + threads - 1) / threads)
        Parallel.forEachChunk(panels, chunk: chunk, threads: threads) { r in
            w.multiply(x: xs.p, ldx: ldx, m: m, panels: r, y: ys.p, ldy: ldy, accumulate: accumulate)
        }
    }
}
