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
///
/// Linears that read the same input (q/k/v, gate/up) can be fused into one: the input is
/// quantized once and one GEMM runs over their stacked rows; each output column keeps its own
/// 1/P, so every output is bit-identical to the unfused layer's.
public final class Int4FP8Linear: @unchecked Sendable {
    public let n: Int, k: Int
    public let weights: PackedMatrix
    /// 1/P of the linear each output column belongs to.
    public let columnScale: [Float]
    public let bias: [Float]?
    private let columnScaleBuffer: FloatBuffer, biasBuffer: FloatBuffer?

    public convenience init(_ l: PackedLinear, fp8Rerounding: Bool, bias: [Float]? = nil) {
        self.init(fusing: [(l, bias)], fp8Rerounding: fp8Rerounding)
    }

    /// Stacks the output rows of linears with the same input size k.
    public init(fusing parts: [(linear: PackedLinear, bias: [Float]?)], fp8Rerounding: Bool) {
        precondition(!parts.isEmpty && parts.allSatisfy { $0.linear.k == parts[0].linear.k }, "fused linears need one input size")
        k = parts[0].linear.k
        n = parts.reduce(0) { $0 + $1.linear.n }
        var w: [Float] = []
        w.reserveCapacity(n * k)
        var colScale: [Float] = [], b: [Float] = []
        for (l, bias) in parts {
            w += l.dequantized(fp8Rerounding: fp8Rerounding, perTensorScale: false)   // ŵ; 1/P goes to the epilogue
            colScale += [Float](repeating: l.perTensorScaleInv, count: l.n)
            b += bias ?? [Float](repeating: 0, count: l.n)
        }
        let (rows, cols) = (n, k)
        weights = w.withUnsafeBufferPointer { PackedMatrix(rowMajor: $0.baseAddress!, rows: rows, cols: cols) }
        columnScale = colScale
        self.bias = parts.contains { $0.bias != nil } ? b : nil
        columnScaleBuffer = FloatBuffer(colScale)
        biasBuffer = self.bias.map { FloatBuffer($0) }
    }

    /// y[r, 0..<n] (+)= linear(x[rows, k]) with y's rows `ldy` apart; `scratch` holds ≥ rows·k
    /// floats (the FP8 activations) and `acc` ≥ rows·n floats (the FP32 accumulators).
    public func forward(x: UnsafePointer<Float>, rows: Int, y: UnsafeMutablePointer<Float>, ldy: Int? = nil, accumulate: Bool = false,
                        scratch: UnsafeMutablePointer<Float>, acc: UnsafeMutablePointer<Float>,
                        activationsFP8: Bool = true, outputBF16: Bool = false, threads: Int) {
        var sigma = [Float](repeating: 1, count: rows)
        let k = self.k, n = self.n, ld = ldy ?? n
        let xs = SendablePointer(UnsafeMutablePointer(mutating: x)), sc = SendablePointer(scratch)
        if activationsFP8 {
            sigma.withUnsafeMutableBufferPointer { sg in
                let sp = SendablePointer(sg.baseAddress!)
                Parallel.forEachChunk(rows, chunk: 16, threads: threads) { r in
                    for row in r { sp.p[row] = fq_quantize_fp8_row(xs.p + row * k, k, sc.p + row * k) }
                }
            }
        } else {
            scratch.update(from: x, count: rows * k)
        }
        LinearAlgebra.linear(x: scratch, ldx: k, m: rows, w: weights, y: acc, ldy: n, threads: threads)
        let ac = SendablePointer(acc), ys = SendablePointer(y), cp = SendablePointer(columnScaleBuffer.pointer)
        let bp = biasBuffer.map { SendablePointer($0.pointer) }
        sigma.withUnsafeMutableBufferPointer { sg in
            let sp = SendablePointer(sg.baseAddress!)
            Parallel.forEachChunk(rows, chunk: 16, threads: threads) { r in
                fq_linear_epilogue(ac.p + r.lowerBound * n, r.count, n, sp.p + r.lowerBound, cp.p, bp?.p,
                                   outputBF16 ? 1 : 0, ys.p + r.lowerBound * ld, ld, accumulate ? 1 : 0)
            }
        }
    }

    /// The epilogue written literally (tests pin `fq_linear_epilogue` to it).
    public static func epilogueReference(acc: [Float], rows: Int, n: Int, sigma: [Float], columnScale: [Float], bias: [Float]?,
                                         outputBF16: Bool, y: inout [Float], accumulate: Bool) {
        for r in 0..<rows {
            for j in 0..<n {
                var v = acc[r * n + j] * (sigma[r] * columnScale[j])
                if let bias { v += bias[j] }
                if outputBF16 { v = BF16.round(v) }
                y[r * n + j] = accumulate ? y[r * n + j] + v : v
            }
        }
    }
}
