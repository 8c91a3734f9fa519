import CFireQKernels
import Kernels
import LowPrecision
import PackedFormat

/// The INT4×FP8 linear layer of FIREQ-METHOD.md §2.4–2.5, on the CPU:
///
/// 1. each input row is quantized to FP8 E4M3 with its own σ = max|x|/448;
/// 2. the weights ŵ = E4M3(q·s_g) (or q·s_g) are expanded once at load to their FP32 values and
///    packed for the GEMM kernel — every FP8 value, INT4 value and FP8×FP8 product is exact in
///    FP32, so the kernel's FMA chain computes exactly Σ_k x_q·ŵ with FP32 accumulation in
///    k order (the reference sum), whatever the ISA or thread count;
/// 3. y = acc · σ[t] · (1/P) (+ bias), rounded to BF16 when the recipe asks (Decision, §2.5).
public final class Int4FP8Linear: @unchecked Sendable {
    public let n: Int, k: Int
    public let weights: PackedMatrix
    public let perTensorScaleInv: Float
    public let bias: [Float]?

    public init(_ l: PackedLinear, fp8Rerounding: Bool, bias: [Float]? = nil) {
        n = l.n; k = l.k
        let w = l.dequantized(fp8Rerounding: fp8Rerounding).map { $0 / l.perTensorScaleInv }  // ŵ without 1/P (exact: power of two)
        weights = w.withUnsafeBufferPointer { PackedMatrix(rowMajor: $0.baseAddress!, rows: l.n, cols: l.k) }
        perTensorScaleInv = l.perTensorScaleInv
        self.bias = bias
    }

    /// y[r, 0..<n] (+)= linear(x[rows, k]) with y's rows `ldy` apart; `scratch` holds ≥ rows·k
    /// floats (the FP8 activations) and `acc` ≥ rows·n floats (the FP32 accumulators).
    public func forward(x: UnsafePointer<Float>, rows: Int, y: UnsafeMutablePointer<Float>, ldy: Int? = nil, accumulate: Bool = false,
                        scratch: UnsafeMutablePointer<Float>, acc: UnsafeMutablePointer<Float>,
                        activationsFP8: Bool = true, outputBF16: Bool = false, threads: Int) {
        var sigma = [Float](repeating: 1, count: rows)
        if activationsFP8 {
            for r in 0..<rows { sigma[r] = fq_quantize_fp8_row(x + r * k, k, scratch + r * k) }
        } else {
            scratch.update(from: x, count: rows * k)
        }
        LinearAlgebra.linear(x: scratch, ldx: k, m: rows, w: weights, y: acc, ldy: n, threads: threads)
        let ld = ldy ?? n
        for r in 0..<rows {
            let f = sigma[r] * perTensorScaleInv
            let a = acc + r * n, row = y + r * ld
            for j in 0..<n {
                var v = a[j] * f
                if let bias { v += bias[j] }
                if outputBF16 { v = BF16.round(v) }
                row[j] = accumulate ? row[j] + v : v
            }
        }
    }
}
