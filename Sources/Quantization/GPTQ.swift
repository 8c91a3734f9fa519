import CFireQKernels
import Foundation
import Kernels
import LowPrecision

/// Input-aware INT4 rounding (Formats/recipe-schema.md `weights.scale_search`, `weights.gptq`).
///
/// * **Scale search**: per group, the E4M3 group scale (or BF16 for σ_BF16 recipes) among the
///   format's values from about a/14 up to the first one ≥ a/7 that minimises the input-weighted
///   error Σ_j d_j (w_j − ŵ_j)², d_j = E[x_j²] of the linear's smoothed input and ŵ what the
///   runtime computes (q·s, re-rounded to E4M3 when the recipe says so).
/// * **GPTQ** (Frantar et al., 2023): columns quantized in order; each column's rounding error,
///   divided by U[j,j], is taken off the later columns of the same row along U[j, j+1…], U the
///   upper Cholesky factor of H⁻¹ (H = XᵀX + λ·mean(diag)·I). A group's scales are chosen when its
///   first column is reached, from the row's weights as updated by then.
///
/// Everything runs in a fixed order (rows are independent; element-wise loops only), so the
/// result does not depend on the thread count or the CPU.
public enum GPTQ {
    /// What the scale search weighs each weight's squared error by (recipe
    /// `weights.scale_search_weights`): the input's d_j, or d_j · √(σ²_r + w_j²) with σ²_r the
    /// row's mean w² (llama.cpp's importance weighting for its Q4_0 with an importance matrix).
    public enum SearchWeights: String, Sendable, Equatable, CaseIterable {
        case input, inputMagnitude = "input_magnitude"
    }

    /// σ²_r: the mean of w² over a row, summed in Double in index order.
    static func rowMeanSquare(_ row: UnsafeBufferPointer<Float>) -> Float {
        var acc = 0.0
        for x in row { acc += Double(x) * Double(x) }
        return Float(acc / Double(max(row.count, 1)))
    }

    /// The search weights of one group: d_j, or d_j · √(σ²_r + w_j²) (`.inputMagnitude`).
    @inline(__always)
    static func groupWeights(
        _ w: UnsafeBufferPointer<Float>, _ d: UnsafeBufferPointer<Float>, sigma2: Float,
        _ mode: SearchWeights, into out: inout [Float]
    ) {
        for j in 0..<w.count { out[j] = mode == .input ? d[j] : d[j] * (sigma2 + w[j] * w[j]).squareRoot() }
    }
    /// The candidate group scales for absmax `a` (already × P): the format's values from about
    /// floor·a/7 (`weights.scale_search_floor`; 0.5: a/14) up to the first value ≥ a/7, largest first
    /// (so ties keep the plain absmax scale's side). With `signed`, then the negated candidates for
    /// a/8 (about −floor·a/8 … the first ≤ −a/8, largest magnitude first): a negative scale maps the
    /// group's largest positive weight to code −8, as a positive one maps its largest negative weight
    /// there (INT4 is −8 … 7). The floor bounds how far a candidate may clip the group's extreme: at
    /// most to floor·a.
    public static func candidateScales(
        absmax a: Float, format: Int4Groups.ScaleFormat, signed: Bool = false, floor: Float = 0.5
    ) -> [Float] {
        let positive = positiveCandidates(absmax: a, format: format, floor: floor)
        return signed
            ? positive + positiveCandidates(absmax: a * 7 / 8, format: format, floor: floor).map { -$0 } : positive
    }

    private static func positiveCandidates(absmax a: Float, format: Int4Groups.ScaleFormat, floor: Float) -> [Float] {
        let top = a / 7
        switch format {
        case .fp8e4m3:
            return FP8E4M3.int4ScaleCandidates(absmax: a, floor: floor)
        case .bf16:
            // BF16 has 128 values per octave: a ratio grid 1, 0.98, … down to the floor (0.5: 26 steps),
            // rounded, deduplicated.
            var out: [Float] = []
            for step in 0...25 where 1 - 0.02 * Float(step) >= floor - 1e-6 || step == 0 {
                let s = BF16.round(top * (1 - 0.02 * Float(step)))
                if s > 0 && out.last != s { out.append(s) }
            }
            return out.isEmpty ? [BF16.round(top)] : out
        }
    }

    /// Σ_i x_i y_i in index order (Double).
    @inline(__always)
    static func dot(_ x: UnsafePointer<Double>, _ y: UnsafePointer<Double>, n: Int) -> Double {
        var acc = 0.0
        for i in 0..<n { acc += x[i] * y[i] }
        return acc
    }

    /// ŵ for code q and scale s as the runtime computes it (the C rounding equals FP8E4M3.round
    /// on every finite float: FP8ActivationTests.roundE4M3MatchesCodecEverywhere).
    @inline(__always)
    static func dequantized(_ q: Float, _ s: Float, reround: Bool) -> Float {
        reround ? fq_round_e4m3_ref(q * s) : q * s
    }

    @inline(__always)
    static func code(_ w: Float, _ s: Float) -> Float { min(7, max(-8, (w / s).rounded(.toNearestOrEven))) }

    /// The group scale minimising Σ d_j (w_j − ŵ_j)² over `candidateScales` (with `signed`, the
    /// negative ones too); the first candidate wins ties. `w` and `d` have the group's length.
    public static func searchScale(
        _ w: UnsafeBufferPointer<Float>, weights d: UnsafeBufferPointer<Float>,
        format: Int4Groups.ScaleFormat, reround: Bool, signed: Bool = false, floor: Float = 0.5
    ) -> Float {
        searchScaleAndCodes(w, weights: d, format: format, reround: reround, signed: signed, fit: false, floor: floor)
            .scale
    }

    /// The searched scale s and the rounding scale t whose codes clamp(round(w/t), −8, 7) go with
    /// it (`weights.fitted_scales`, Formats/recipe-schema.md). Without `fit`, t = s over the
    /// candidates. With `fit`, then also codes rounded with t = a/n (and −a/n with `signed`),
    /// n = 6, 6.25, …, 8.75, each with its least-squares scale s* = Σ d q w / Σ d q² (Double)
    /// rounded to the format (E4M3: at least 2^-9 in magnitude) and kept only with t's sign; the
    /// two pairs of least closed-form error Σ d w² − 2 s Σ d q w + s² Σ d q² (ties: positive t
    /// first, then smaller n) are then scored
    /// exactly as the candidates are (ŵ as the runtime computes it), in that order, and replace
    /// the best only when strictly better — as llama.cpp's Q4_0 search, which rounds with several
    /// scales and keeps each rounding's fitted scale. With `block` (n×n, row-major:
    /// `weights.scale_search_covariance`) every error is eᵀBe instead of Σ d e² (`d` unused), the
    /// fitted scale qᵀBw / qᵀBq, the closed form wᵀBw − 2s·qᵀBw + s²·qᵀBq.
    public static func searchScaleAndCodes(
        _ w: UnsafeBufferPointer<Float>, weights d: UnsafeBufferPointer<Float>,
        format: Int4Groups.ScaleFormat, reround: Bool, signed: Bool, fit: Bool, floor: Float = 0.5,
        block: UnsafePointer<Double>? = nil
    ) -> (scale: Float, rounding: Float) {
        var a: Float = 0
        for x in w { a = max(a, abs(x)) }
        a = max(a, Int4Groups.absmaxFloor)
        let n = w.count
        // with a covariance block: e, B·e, codes and B·w as Doubles (n each)
        var scratch = block == nil ? [] : [Double](repeating: 0, count: 4 * n)
        func error(_ s: Float, _ t: Float) -> Double {
            if let B = block {
                // e as below, then eᵀ(B·e) (qform.c; GPTQTests pins it to the plain loops)
                return scratch.withUnsafeMutableBufferPointer { sp in
                    fq_group_error_cov(w.baseAddress!, n, t, s, reround ? 1 : 0, B, sp.baseAddress!)
                }
            }
            var err = 0.0
            for j in 0..<w.count {
                let e = Double(w[j] - dequantized(code(w[j], t), s, reround: reround))
                err += Double(d[j]) * e * e
            }
            return err
        }
        let candidates = candidateScales(absmax: a, format: format, signed: signed, floor: floor)
        var best = (scale: candidates[0], rounding: candidates[0]), bestErr = Double.infinity
        for s in candidates {
            let err = error(s, s)
            if err < bestErr { bestErr = err; best = (s, s) }
        }
        guard fit else { return best }
        var sw2 = 0.0
        if let B = block {
            // wᵀBw, then per rounding qᵀ(Bw) and qᵀBq
            sw2 = scratch.withUnsafeMutableBufferPointer { sp in
                let wv = sp.baseAddress!, bw = wv + n
                for j in 0..<n { wv[j] = Double(w[j]) }
                return fq_qform_f64(B, wv, n, bw)
            }
        } else {
            for j in 0..<w.count { sw2 += Double(d[j]) * Double(w[j]) * Double(w[j]) }
        }
        // the two pairs of least closed-form error, the earlier first on ties (no allocation: this
        // runs once per group)
        var first: (e: Double, s: Float, t: Float) = (.infinity, 0, 0), second = first
        for sign: Float in signed ? [1, -1] : [1] {
            for step in 0..<12 {
                let t = sign * a / (6 + 0.25 * Float(step))
                var sqw = 0.0, sqq = 0.0
                if let B = block {
                    scratch.withUnsafeMutableBufferPointer { sp in
                        let bw = sp.baseAddress! + n, q = bw + n, bq = q + n
                        for j in 0..<n { q[j] = Double(code(w[j], t)) }
                        sqq = fq_qform_f64(B, q, n, bq)
                        sqw = dot(q, bw, n: n)
                    }
                } else {
                    for j in 0..<w.count {
                        let q = Double(code(w[j], t))
                        sqw += Double(d[j]) * q * Double(w[j]); sqq += Double(d[j]) * q * q
                    }
                }
                guard sqq > 0 else { continue }
                let fitted = Float(sqw / sqq)
                var s: Float
                switch format {
                case .fp8e4m3:
                    s = FP8E4M3.round(fitted)
                    if abs(s) < Int4Groups.minScale { s = fitted < 0 ? -Int4Groups.minScale : Int4Groups.minScale }
                case .bf16: s = BF16.round(fitted)
                }
                guard s != 0 && s.isFinite && (s > 0) == (t > 0) else { continue }
                let sd = Double(s)
                let e = sw2 - 2 * sd * sqw + sd * sd * sqq
                if e < first.e {
                    second = first; first = (e, s, t)
                } else if e < second.e {
                    second = (e, s, t)
                }
            }
        }
        if first.e.isFinite {
            let err = error(first.s, first.t)
            if err < bestErr { bestErr = err; best = (first.s, first.t) }
        }
        if second.e.isFinite {
            let err = error(second.s, second.t)
            if err < bestErr { bestErr = err; best = (second.s, second.t) }
        }
        return best
    }

    /// δ of `weights.scale_search_covariance`: B = C_g + δ·mean(diag C)·I.
    public static let covarianceDamp = 0.01

    /// The search matrix B of group `gi` (`weights.scale_search_covariance`): its g×g diagonal block
    /// of C (`blocks`: the k/g blocks in order, each row-major) plus `damping` on the diagonal;
    /// with `.inputMagnitude` then B_ab·√(m_a m_b), m_j = √(σ²_r + w_j²) (the damping × m_a), so diag(B)
    /// is the diagonal search's weight of each input up to the damping (fq_cov_search_block_on;
    /// GPTQTests pins it to the plain loop).
    static func covarianceBlock(
        _ blocks: [Double], group gi: Int, _ w: UnsafeBufferPointer<Float>, sigma2: Float, _ mode: SearchWeights,
        damping: Double, into b: inout [Double]
    ) {
        let g = w.count
        blocks.withUnsafeBufferPointer { bp in
            b.withUnsafeMutableBufferPointer { op in
                fq_cov_search_block_on(
                    -1, bp.baseAddress! + gi * g * g, w.baseAddress!, g, sigma2, mode == .inputMagnitude ? 1 : 0,
                    damping, op.baseAddress!)
            }
        }
    }

    /// Round-to-nearest with searched group scales (no error feedback). `d` [K] weights the inputs;
    /// `covariance` (k/g blocks of g×g, `weights.scale_search_covariance`) replaces Σ d e² by eᵀBe.
    public static func quantizeSearched(
        _ w: [Float], rows: Int, k: Int, groupSize g: Int, inputWeights d: [Float],
        weighting: SearchWeights = .input, signed: Bool = false, fitted: Bool = false, floor: Float = 0.5,
        scaleFormat: Int4Groups.ScaleFormat, reround: Bool, threads: Int = 1, covariance: [Double]? = nil
    ) -> Int4Groups.Quantized {
        precondition(k % g == 0 && w.count == rows * k && d.count == k)
        precondition(covariance.map { $0.count == k * g } ?? true)
        // the damping δ·mean(diag C) of `weights.scale_search_covariance`
        var damping = 0.0
        if let c = covariance {
            for j in 0..<k { damping += c[(j / g) * g * g + (j % g) * g + j % g] }
            damping = covarianceDamp * (damping / Double(k))
        }
        let groups = k / g
        var q = [Int8](repeating: 0, count: rows * k)
        var scales = [Float](repeating: 0, count: rows * groups)
        w.withUnsafeBufferPointer { wp in
            d.withUnsafeBufferPointer { dp in
                q.withUnsafeMutableBufferPointer { qp in
                    scales.withUnsafeMutableBufferPointer { sp in
                        let (W, D, Q, S) = (SendableBuf(wp), SendableBuf(dp), SendableMutBuf(qp), SendableMutBuf(sp))
                        Parallel.forEachChunk(rows, chunk: 8, threads: threads) { range in
                            var gw = [Float](repeating: 0, count: g)
                            var blk = [Double](repeating: 0, count: g * g)
                            for r in range {
                                let sigma2 =
                                    weighting == .input
                                    ? 0 : rowMeanSquare(UnsafeBufferPointer(rebasing: W.b[(r * k)..<(r * k + k)]))
                                for gi in 0..<groups {
                                    let base = r * k + gi * g
                                    let grp = UnsafeBufferPointer(rebasing: W.b[base..<(base + g)])
                                    groupWeights(
                                        grp, UnsafeBufferPointer(rebasing: D.b[(gi * g)..<(gi * g + g)]),
                                        sigma2: sigma2, weighting, into: &gw)
                                    if let c = covariance {
                                        covarianceBlock(
                                            c, group: gi, grp, sigma2: sigma2, weighting, damping: damping,
                                            into: &blk)
                                    }
                                    let st = gw.withUnsafeBufferPointer { gwp in
                                        blk.withUnsafeBufferPointer { bp in
                                            searchScaleAndCodes(
                                                grp, weights: gwp, format: scaleFormat, reround: reround,
                                                signed: signed,
                                                fit: fitted, floor: floor,
                                                block: covariance == nil ? nil : bp.baseAddress)
                                        }
                                    }
                                    S.b[r * groups + gi] = st.scale
                                    for j in 0..<g { Q.b[base + j] = Int8(code(W.b[base + j], st.rounding)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        return Int4Groups.Quantized(q: q, scales: scales, rows: rows, k: k, groupSize: g)
    }

    /// U with H⁻¹ = UᵀU (U upper triangular, row-major [k, k], Double) of `h` [k, k] after adding
    /// `damp`·mean(diag) to the diagonal (a zero diagonal entry — an input that never fired —
    /// becomes 1 first). If H is not positive definite the damping is multiplied by 10 and the
    /// factorisation retried, up to 4 times; returns the factor and the damping used.
    public static func inverseCholeskyUpper(_ h: [Double], k: Int, damp: Double) -> (u: [Double], damp: Double)? {
        precondition(h.count == k * k)
        var base = h
        for j in 0..<k where base[j * k + j] <= 0 { base[j * k + j] = 1 }
        var mean = 0.0
        for j in 0..<k { mean += base[j * k + j] }
        mean /= Double(k)
        var lambda = damp
        for _ in 0..<5 {
            var a = base
            for j in 0..<k { a[j * k + j] += lambda * mean }
            if let u = factor(&a, k: k) { return (u, lambda) }
            lambda = lambda == 0 ? 1e-6 : lambda * 10
        }
        return nil
    }

    /// H = ŨŨᵀ with Ũ upper (the Cholesky factorisation from the last index), then U = Ũ⁻¹:
    /// H⁻¹ = Ũ⁻ᵀŨ⁻¹ = UᵀU. Right-looking, element-wise updates only (fixed order).
    static func factor(_ a: inout [Double], k: Int) -> [Double]? {
        var ut = [Double](repeating: 0, count: k * k)  // Ũ
        var col = [Double](repeating: 0, count: k)
        for j in stride(from: k - 1, through: 0, by: -1) {
            let piv = a[j * k + j]
            guard piv > 0, piv.isFinite else { return nil }
            let dj = piv.squareRoot()
            ut[j * k + j] = dj
            for i in 0..<j { col[i] = a[i * k + j] / dj; ut[i * k + j] = col[i] }
            // A[i, l] −= col[i]·col[l] for i, l < j.
            a.withUnsafeMutableBufferPointer { ap in
                col.withUnsafeBufferPointer { cp in
                    for i in 0..<j {
                        let ci = cp[i]
                        if ci == 0 { continue }
                        let row = ap.baseAddress! + i * k
                        for l in 0..<j { row[l] -= ci * cp[l] }
                    }
                }
            }
        }
        // U = Ũ⁻¹, rows from the bottom: U[i, :] = (e_i − Σ_{m>i} Ũ[i,m] U[m, :]) / Ũ[i,i].
        var u = [Double](repeating: 0, count: k * k)
        u.withUnsafeMutableBufferPointer { up in
            ut.withUnsafeBufferPointer { tp in
                for i in stride(from: k - 1, through: 0, by: -1) {
                    let row = up.baseAddress! + i * k
                    row[i] = 1
                    for m in (i + 1)..<max(i + 1, k) {
                        let t = tp[i * k + m]
                        if t == 0 { continue }
                        let other = up.baseAddress! + m * k
                        for l in m..<k { row[l] -= t * other[l] }
                    }
                    let inv = 1 / tp[i * k + i]
                    for l in i..<k { row[l] *= inv }
                }
            }
        }
        return u
    }

    /// GPTQ of W [rows, K] (already × P) with the upper inverse-Cholesky factor `u` (Double [K, K]).
    /// Group scales: searched on diag(H) (`inputWeights`) when `search`, else E4M3/BF16(a/7) as
    /// plain RTN, from the row's updated weights when the group's first column is reached.
    public static func quantize(
        _ w: [Float], rows: Int, k: Int, groupSize g: Int, u: [Double], inputWeights d: [Float],
        search: Bool, weighting: SearchWeights = .input, signed: Bool = false, floor: Float = 0.5,
        scaleFormat: Int4Groups.ScaleFormat, reround: Bool, threads: Int = 1
    ) -> Int4Groups.Quantized {
        precondition(k % g == 0 && w.count == rows * k && u.count == k * k && d.count == k)
        let groups = k / g
        let uf = u.map { Float($0) }
        var q = [Int8](repeating: 0, count: rows * k)
        var scales = [Float](repeating: 0, count: rows * groups)
        let block = 16
        w.withUnsafeBufferPointer { wp in
            uf.withUnsafeBufferPointer { up in
                d.withUnsafeBufferPointer { dp in
                    q.withUnsafeMutableBufferPointer { qp in
                        scales.withUnsafeMutableBufferPointer { sp in
                            let (W, U, D, Q, S) = (
                                SendableBuf(wp), SendableBuf(up), SendableBuf(dp), SendableMutBuf(qp),
                                SendableMutBuf(sp)
                            )
                            let blocks = (rows + block - 1) / block
                            Parallel.forEachChunk(blocks, chunk: 1, threads: threads) { range in
                                for b in range {
                                    let r0 = b * block, n = min(block, rows - r0)
                                    var work = Array(W.b[(r0 * k)..<((r0 + n) * k)])
                                    let sigma2 = (0..<n).map { r in
                                        weighting == .input
                                            ? 0
                                            : rowMeanSquare(
                                                UnsafeBufferPointer(rebasing: W.b[((r0 + r) * k)..<((r0 + r) * k + k)]))
                                    }
                                    var gw = [Float](repeating: 0, count: g)
                                    work.withUnsafeMutableBufferPointer { wk in
                                        var s = [Float](repeating: 0, count: n)
                                        for j in 0..<k {
                                            if j % g == 0 {
                                                for r in 0..<n {
                                                    let grp = UnsafeBufferPointer(
                                                        rebasing: wk[(r * k + j)..<(r * k + j + g)])
                                                    if search {
                                                        groupWeights(
                                                            grp, UnsafeBufferPointer(rebasing: D.b[j..<(j + g)]),
                                                            sigma2: sigma2[r], weighting, into: &gw)
                                                        s[r] = gw.withUnsafeBufferPointer {
                                                            searchScale(
                                                                grp, weights: $0, format: scaleFormat, reround: reround,
                                                                signed: signed, floor: floor)
                                                        }
                                                    } else {
                                                        var a: Float = 0
                                                        for x in grp { a = max(a, abs(x)) }
                                                        a = max(a, Int4Groups.absmaxFloor)
                                                        s[r] = Int4Groups.groupScale(absmax: a, format: scaleFormat)
                                                    }
                                                    S.b[(r0 + r) * groups + j / g] = s[r]
                                                }
                                            }
                                            let ujj = U.b[j * k + j]
                                            let urow = U.b.baseAddress! + j * k
                                            for r in 0..<n {
                                                let row = wk.baseAddress! + r * k
                                                let x = row[j]
                                                let c = code(x, s[r])
                                                Q.b[(r0 + r) * k + j] = Int8(c)
                                                let e = (x - dequantized(c, s[r], reround: reround)) / ujj
                                                if e == 0 { continue }
                                                for l in (j + 1)..<max(j + 1, k) { row[l] -= e * urow[l] }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return Int4Groups.Quantized(q: q, scales: scales, rows: rows, k: k, groupSize: g)
    }
}

struct SendableBuf<T>: @unchecked Sendable {
    let b: UnsafeBufferPointer<T>; init(_ b: UnsafeBufferPointer<T>) { self.b = b }
}
struct SendableMutBuf<T>: @unchecked Sendable {
    let b: UnsafeMutableBufferPointer<T>; init(_ b: UnsafeMutableBufferPointer<T>) { self.b = b }
}
