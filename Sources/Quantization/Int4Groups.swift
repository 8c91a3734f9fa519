import LowPrecision

/// INT4 weights with FP8 E4M3 (or BF16) group scales and a power-of-two per-tensor scale
/// (FIREQ-METHOD.md §2.2–2.3). All functions are pure; W is row-major [rows, K].
public enum Int4Groups {
    /// Guard on a group's absmax (§2.3).
    public static let absmaxFloor: Float = 1e-5
    /// Smallest E4M3 magnitude: group scales below it are raised to it.
    public static let minScale: Float = 0x1p-9
    /// Underflow threshold on a group absmax: a/7 below 2^-9 would underflow (§2.2).
    public static let underflowAbsmax: Float = 7 * 0x1p-9

    /// How group scales are stored.
    public enum ScaleFormat: String, Sendable, Equatable, CaseIterable { case fp8e4m3 = "fp8_e4m3", bf16 }

    /// a_g = max(|W_g|, 1e-5) for every group of `groupSize` consecutive inputs of every row,
    /// scaled by `multiplier` first; layout [rows, K/G].
    public static func groupAbsmax(_ w: [Float], rows: Int, k: Int, groupSize g: Int, multiplier: Float = 1) -> [Float]
    {
        precondition(k % g == 0 && w.count == rows * k)
        var out = [Float](repeating: 0, count: rows * (k / g))
        for r in 0..<rows {
            for gi in 0..<(k / g) {
                var m: Float = 0
                for j in 0..<g { m = max(m, abs(w[r * k + gi * g + j] * multiplier)) }
                out[r * (k / g) + gi] = max(m, absmaxFloor)
            }
        }
        return out
    }

    /// The per-tensor power-of-two scale P of §2.2: over m = 2^0 … 2^14, stop before the first m
    /// whose scaled groups have an absmax above 448; among the rest take the smallest m with the
    /// least underflow slack Σ_{a_g < 7·2^-9} (7·2^-9 − a_g)/(7·2^-9). P = 1 if m = 1 overflows.
    public static func powerOfTwoScale(_ w: [Float], rows: Int, k: Int, groupSize g: Int) -> Float {
        var best: Float = 1
        var bestSlack = Double.infinity
        for e in 0...14 {
            let m = Float(sign: .plus, exponent: e, significand: 1)
            let a = groupAbsmax(w, rows: rows, k: k, groupSize: g, multiplier: m)
            if a.contains(where: { $0 > FP8E4M3.max }) { break }
            var slack = 0.0
            for x in a where x < underflowAbsmax { slack += Double((underflowAbsmax - x) / underflowAbsmax) }
            if slack < bestSlack { bestSlack = slack; best = m }
        }
        return best
    }

    /// Quantized weights: q in [-8, 7] ([rows, K]) and group scales ([rows, K/G], as Float32 values
    /// of the chosen format).
    public struct Quantized: Sendable, Equatable {
        public var q: [Int8]
        public var scales: [Float]
        public var rows: Int
        public var k: Int
        public var groupSize: Int
    }

    /// The plain group scale for absmax a: E4M3(a / 7) raised to 2^-9, or BF16(a / 7).
    @inline(__always)
    public static func groupScale(absmax a: Float, format: ScaleFormat) -> Float {
        switch format {
        case .fp8e4m3: return max(FP8E4M3.round(a / 7), minScale)
        case .bf16: return BF16.round(a / 7)
        }
    }

    /// s_g = E4M3(a_g / 7) raised to 2^-9 (or BF16(a_g / 7) for the σ_BF16 variant);
    /// q = clamp(round_half_even(W / s_g), −8, 7) (§2.3). W is already multiplied by P.
    public static func quantize(
        _ w: [Float], rows: Int, k: Int, groupSize g: Int, scaleFormat: ScaleFormat = .fp8e4m3
    ) -> Quantized {
        let a = groupAbsmax(w, rows: rows, k: k, groupSize: g)
        let groups = k / g
        var scales = [Float](repeating: 0, count: a.count)
        var q = [Int8](repeating: 0, count: rows * k)
        for r in 0..<rows {
            for gi in 0..<groups {
                let s = groupScale(absmax: a[r * groups + gi], format: scaleFormat)
                scales[r * groups + gi] = s
                for j in 0..<g {
                    let idx = r * k + gi * g + j
                    let v = (w[idx] / s).rounded(.toNearestOrEven)
                    q[idx] = Int8(min(7, max(-8, v)))
                }
            }
        }
        return Quantized(q: q, scales: scales, rows: rows, k: k, groupSize: g)
    }

    /// ŵ = q·s_g, re-rounded to FP8 E4M3 when `fp8Rerounding` (what the H100 kernel computes, §2.5).
    public static func dequantize(_ qw: Quantized, fp8Rerounding: Bool) -> [Float] {
        let groups = qw.k / qw.groupSize
        var out = [Float](repeating: 0, count: qw.q.count)
        for r in 0..<qw.rows {
            for c in 0..<qw.k {
                let v = Float(qw.q[r * qw.k + c]) * qw.scales[r * groups + c / qw.groupSize]
                out[r * qw.k + c] = fp8Rerounding ? FP8E4M3.round(v) : v
            }
        }
        return out
    }
}
