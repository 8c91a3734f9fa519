import CFireQKernels
import Foundation
import Kernels
import LowPrecision
import PackedFormat

/// The INT4×FP8 linear layer of FIREQ-METHOD.md §2.4–2.5, on the CPU:
///
/// 1. each input row is quantized to FP8 E4M3 with its own σ = max|x|/448;
/// 2. the weights stay in memory as their INT4 codes and group scales (`fq_int4_pack`'s panel
///    layout) and are decoded inside the kernel to ŵ = E4M3(q·s_g) (or q·s_g); every FP8 value, INT4
///    value and product is exact, and each output is the runtime's canonical chain over the input
///    pairs — odd product, then even product, each added with one rounding
///    (Formats/runtime-numerics.md) — on every path: AVX-512 BF16 (vdpbf16ps), AVX-512F, AVX2,
///    portable, whatever the thread count;
/// 3. y = acc · σ[t] · (1/P) (+ bias), rounded to BF16 when the recipe asks (Decision, §2.5).
///
/// Linears that read the same input (q/k/v, gate/up) can be fused into one: the input is
/// quantized once and one GEMM runs over their stacked rows; each output column keeps its own
/// 1/P, so every output is bit-identical to the unfused layer's.
///
/// `FIREQ_INT4_RESIDENT=0` expands ŵ at load instead (binary16 panels in the pair-swapped input
/// order: the same canonical chains through the FP32 GEMM): the benchmarks' baseline.
public final class Int4FP8Linear: @unchecked Sendable {
    public let n: Int, k: Int
    /// Group size of the resident scales (the gcd of the fused linears').
    public let groupSize: Int
    public let reround: Bool
    /// Whether every weight value is exact in BF16 (the AVX-512 BF16 path's precondition).
    public let weightsBF16Exact: Bool
    /// The resident weights, or nil when expanded.
    private let codes: UnsafeMutablePointer<UInt8>?
    private let scales: FloatBuffer?
    /// The BF16 path's table-decode metadata (`fq_int4_meta`), when the scales allow it.
    private let meta: UnsafeMutablePointer<UInt16>?
    /// The expanded weights (FIREQ_INT4_RESIDENT=0), columns in the pair-swapped order.
    public let expanded: PackedMatrix?
    /// 1/P of the linear each output column belongs to.
    public let columnScale: [Float]
    public let bias: [Float]?
    private let columnScaleBuffer: FloatBuffer, biasBuffer: FloatBuffer?

    static let residentDefault = ProcessInfo.processInfo.environment["FIREQ_INT4_RESIDENT"] != "0"

    public convenience init(_ l: PackedLinear, fp8Rerounding: Bool, bias: [Float]? = nil, resident: Bool? = nil) throws
    {
        try self.init(fusing: [(l, bias)], fp8Rerounding: fp8Rerounding, resident: resident)
    }

    /// Stacks the output rows of linears with the same input size k.
    public init(
        fusing parts: [(linear: PackedLinear, bias: [Float]?)], fp8Rerounding: Bool, resident: Bool? = nil
    ) throws {
        precondition(
            !parts.isEmpty && parts.allSatisfy { $0.linear.k == parts[0].linear.k }, "fused linears need one input size"
        )
        k = parts[0].linear.k
        n = parts.reduce(0) { $0 + $1.linear.n }
        func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
        let G = parts.map(\.linear.groupSize).reduce(0, gcd)
        guard k % 2 == 0, G % 2 == 0 else {
            throw PackedError(
                path: parts[0].linear.name,
                reason: "the runtime needs an even input size and group size (k = \(k), group size \(G))")
        }
        groupSize = G
        reround = fp8Rerounding
        var colScale: [Float] = [], b: [Float] = []
        for (l, bias) in parts {
            colScale += [Float](repeating: l.perTensorScaleInv, count: l.n)
            b += bias ?? [Float](repeating: 0, count: l.n)
        }
        // Stacked codes and the scales at granularity G (a coarser group's scale repeated).
        let groups = k / G
        var q = [Int8](), sc = [Float]()
        q.reserveCapacity(n * k); sc.reserveCapacity(n * groups)
        for (l, _) in parts {
            q += l.q
            let rep = l.groupSize / G, lg = l.k / l.groupSize
            for r in 0..<l.n { for g in 0..<groups { sc.append(l.scales[r * lg + g / rep]) } }
        }
        weightsBF16Exact = fq_int4_bf16_exact(sc, sc.count, fp8Rerounding ? 1 : 0) == 1
        if resident ?? Self.residentDefault {
            let c = UnsafeMutablePointer<UInt8>.allocate(capacity: fq_int4_codes_bytes(n, k))
            let s = FloatBuffer(count: fq_int4_scales_count(n, k, G), zeroed: false)
            fq_int4_pack(q, sc, n, k, G, c, s.pointer)
            let count = fq_int4_scales_count(n, k, G)
            let mt = UnsafeMutablePointer<UInt16>.allocate(capacity: count)
            if fq_int4_meta(s.pointer, count, fp8Rerounding ? 1 : 0, mt) == 1 {
                meta = mt
            } else {
                mt.deallocate(); meta = nil
            }
            codes = c; scales = s; expanded = nil
        } else {
            var w = [Float](repeating: 0, count: n * k)
            for r in 0..<n {
                for kk in 0..<k {
                    let code = UInt32(Int(q[r * k + kk]) + 8)
                    w[r * k + (kk ^ 1)] = fq_int4_weight(code, sc[r * groups + kk / G], fp8Rerounding ? 1 : 0)
                }
            }
            let (rows, cols) = (n, k)
            expanded = w.withUnsafeBufferPointer { PackedMatrix(rowMajor: $0.baseAddress!, rows: rows, cols: cols) }
            codes = nil; scales = nil; meta = nil
        }
        columnScale = colScale
        self.bias = parts.contains { $0.bias != nil } ? b : nil
        columnScaleBuffer = FloatBuffer(colScale)
        biasBuffer = self.bias.map { FloatBuffer($0) }
    }

    deinit { codes?.deallocate(); meta?.deallocate() }

    /// Bytes of weights held in memory (codes and scales, or the expanded panels).
    public var weightBytes: Int {
        if let expanded { return expanded.byteCount }
        return fq_int4_codes_bytes(n, k) + (meta == nil ? 4 : 6) * fq_int4_scales_count(n, k, groupSize)
    }

    public var panels: Int { (n + 31) / 32 }

    /// ŵ [n, k] row-major, decoded from what the layer holds (for tools and tests).
    public func weightValues() -> [Float] {
        var w = [Float](repeating: 0, count: n * k)
        if let codes, let scales {
            let pairs = k / 2, groups = k / groupSize
            for r in 0..<n {
                let (p, j) = (r / 32, r % 32)
                for kk in 0..<k {
                    let byte = codes[p * 32 * pairs + (kk / 2) * 32 + j]
                    let nibble = kk % 2 == 0 ? UInt32(byte & 15) : UInt32(byte >> 4)
                    w[r * k + kk] = fq_int4_weight(
                        nibble, scales.pointer[p * 32 * groups + (kk / groupSize) * 32 + j], reround ? 1 : 0)
                }
            }
        } else if let expanded {
            let e = expanded.rowMajor()
            for r in 0..<n { for kk in 0..<k { w[r * k + kk] = e[r * k + (kk ^ 1)] } }
        }
        return w
    }

    /// acc[rows, n] = the canonical chains of x[rows, k] (x rows `ldx` apart) on a chosen kernel
    /// path (-1 automatic; tests), the panels split over `threads` threads.
    public func accumulators(
        x: UnsafePointer<Float>, ldx: Int, rows: Int, acc: UnsafeMutablePointer<Float>, xExactBF16: Bool,
        threads: Int, path: Int32 = -1
    ) {
        let xs = SendablePointer(UnsafeMutablePointer(mutating: x)), ac = SendablePointer(acc)
        let chunk =
            rows == 1 ? max(1, (panels + 4 * threads - 1) / (4 * threads)) : max(1, (panels + threads - 1) / threads)
        if let codes, let scales {
            let (n, k, G, rr) = (n, k, groupSize, Int32(reround ? 1 : 0))
            let ok: Int32 = xExactBF16 && weightsBF16Exact ? 1 : 0
            let cp = SendablePointer(codes), sp = SendablePointer(scales.pointer), mp = meta.map { SendablePointer($0) }
            Parallel.forEachChunk(panels, chunk: chunk, threads: threads) { r in
                fq_int4_gemm_on(
                    path, xs.p, ldx, rows, cp.p, sp.p, mp?.p, n, k, G, rr, ok,
                    r.lowerBound, r.upperBound, ac.p, n)
            }
        } else if let expanded {
            // x in the pair-swapped order, to match the expanded columns
            let swapped = FloatBuffer(count: rows * k, zeroed: false)
            for r in 0..<rows {
                let src = x + r * ldx, dst = swapped.pointer + r * k
                for kk in stride(from: 0, to: k, by: 2) { dst[kk] = src[kk + 1]; dst[kk + 1] = src[kk] }
            }
            LinearAlgebra.linear(x: swapped.pointer, ldx: k, m: rows, w: expanded, y: acc, ldy: n, threads: threads)
        }
    }

    /// `accumulators` for rows (k apart) already prepared in place by `fq_int4_prepare_rows` for `level`.
    private func preparedAccumulators(
        level: Int32, x: UnsafeMutablePointer<Float>, rows: Int, acc: UnsafeMutablePointer<Float>, threads: Int
    ) {
        guard let codes, let scales else { preconditionFailure("prepared x needs resident codes") }
        let (n, k, G, rr) = (n, k, groupSize, Int32(reround ? 1 : 0))
        let xs = SendablePointer(x), ac = SendablePointer(acc)
        let cp = SendablePointer(codes), sp = SendablePointer(scales.pointer), mp = meta.map { SendablePointer($0) }
        Parallel.forEachChunk(panels, chunk: max(1, (panels + threads - 1) / threads), threads: threads) { r in
            fq_int4_gemm_prepared(
                level, xs.p, k, rows, cp.p, sp.p, mp?.p, n, k, G, rr, r.lowerBound, r.upperBound, ac.p, n)
        }
    }

    /// y[r, 0..<n] (+)= linear(x[rows, k]) with y's rows `ldy` apart; `scratch` holds ≥ rows·k
    /// floats (the FP8 activations) and `acc` ≥ rows·n floats (the FP32 accumulators).
    public func forward(
        x: UnsafePointer<Float>, rows: Int, y: UnsafeMutablePointer<Float>, ldy: Int? = nil, accumulate: Bool = false,
        scratch: UnsafeMutablePointer<Float>, acc: UnsafeMutablePointer<Float>,
        activationsFP8: Bool = true, outputBF16: Bool = false, threads: Int
    ) {
        var sigma = [Float](repeating: 1, count: rows)
        let k = self.k, n = self.n, ld = ldy ?? n
        let xs = SendablePointer(UnsafeMutablePointer(mutating: x)), sc = SendablePointer(scratch)
        // A many-row call on resident codes prepares x for its GEMM path in the same pass that
        // quantizes each row (pair-swapped, or BF16 pairs; in place) — once, not once per thread.
        let prepare: Int32? =
            rows > 1 && codes != nil ? fq_int4_level_rows(-1, activationsFP8 && weightsBF16Exact ? 1 : 0, rows) : nil
        let fp8 = activationsFP8
        sigma.withUnsafeMutableBufferPointer { sg in
            let sp = SendablePointer(sg.baseAddress!)
            Parallel.forEachChunk(rows, chunk: 16, threads: threads) { r in
                for row in r {
                    if fp8 {
                        sp.p[row] = fq_quantize_fp8_row(xs.p + row * k, k, sc.p + row * k)
                    } else {
                        (sc.p + row * k).update(from: xs.p + row * k, count: k)
                    }
                }
                if let level = prepare { fq_int4_prepare_rows(level, sc.p, k, r.lowerBound, r.upperBound, k) }
            }
        }
        if let level = prepare {
            preparedAccumulators(level: level, x: scratch, rows: rows, acc: acc, threads: threads)
        } else {
            accumulators(x: scratch, ldx: k, rows: rows, acc: acc, xExactBF16: activationsFP8, threads: threads)
        }
        let ac = SendablePointer(acc), ys = SendablePointer(y), cp = SendablePointer(columnScaleBuffer.pointer)
        let bp = biasBuffer.map { SendablePointer($0.pointer) }
        sigma.withUnsafeMutableBufferPointer { sg in
            let sp = SendablePointer(sg.baseAddress!)
            Parallel.forEachChunk(rows, chunk: 16, threads: threads) { r in
                fq_linear_epilogue(
                    ac.p + r.lowerBound * n, r.count, n, sp.p + r.lowerBound, cp.p, bp?.p,
                    outputBF16 ? 1 : 0, ys.p + r.lowerBound * ld, ld, accumulate ? 1 : 0)
            }
        }
    }

    /// The epilogue written literally (tests pin `fq_linear_epilogue` to it).
    public static func epilogueReference(
        acc: [Float], rows: Int, n: Int, sigma: [Float], columnScale: [Float], bias: [Float]?,
        outputBF16: Bool, y: inout [Float], accumulate: Bool
    ) {
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
