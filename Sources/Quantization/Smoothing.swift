import Foundation

/// Outlier smoothing factors (FIREQ-METHOD.md §2.1, §3.1, §3.2). Pure functions.
public enum Smoothing {
    /// Channel-wise scales of a consumer weight W [rows, K] (rows of every linear reading the same
    /// input concatenated): s_j = c / mean_i |W[i, j]|, and 1 for a dead channel (mean 0).
    ///
    /// With a strength t ≠ 1 (Formats/recipe-schema.md `smoothing.gate_up_strength`):
    /// s_j = c / (m_j^t · μ^(1−t)), m_j the column's mean |W|, μ the mean of the nonzero m_j.
    public static func channelScales(_ w: [Float], rows: Int, k: Int, c: Float, strength t: Float = 1) -> [Float] {
        precondition(w.count == rows * k)
        var sums = [Double](repeating: 0, count: k)
        for r in 0..<rows { for j in 0..<k { sums[j] += Double(abs(w[r * k + j])) } }
        let means = sums.map { $0 / Double(rows) }
        if t == 1 { return means.map { $0 == 0 ? 1 : Float(Double(c) / $0) } }
        let live = means.filter { $0 > 0 }
        let mu = live.isEmpty ? 1 : live.reduce(0, +) / Double(live.count)
        let td = Double(t)
        return means.map { $0 == 0 ? 1 : Float(Double(c) / (pow($0, td) * pow(mu, 1 - td))) }
    }

    /// Post-RoPE channel selection per KV head (§3.2): the top-k channels by m[h, d] plus their
    /// RoPE partners d ± D/2, deduplicated, ascending. Ties broken by the lower channel index.
    /// Returns flat indices h·D + d for every KV head, concatenated.
    public static func postRopeChannels(absmax m: [Float], kvHeads: Int, headDim d: Int, topK: Int) -> [[Int]] {
        precondition(m.count == kvHeads * d)
        let half = d / 2
        return (0..<kvHeads).map { h in
            let order = (0..<d).sorted { m[h * d + $0] > m[h * d + $1] || (m[h * d + $0] == m[h * d + $1] && $0 < $1) }
            var chosen = Set<Int>()
            for c in order.prefix(topK) {
                chosen.insert(c)
                chosen.insert(c < half ? c + half : c - half)
            }
            return chosen.sorted().map { h * d + $0 }
        }
    }

    /// Post-RoPE key scales s_k = β / m[h, d] for the selected flat channels (1 where m = 0).
    public static func postRopeKeyScales(absmax m: [Float], channels: [Int], beta: Float) -> [Float] {
        channels.map { m[$0] > 0 ? beta / m[$0] : 1 }
    }

    /// Pre-RoPE key factors n_k [kvHeads, D] (§3.1): α / r[h, j] for both members of pair j
    /// (1 where r = 0), and 1 on channels in `excluded` (flat indices that get post-RoPE S only).
    public static func preRopeKeyFactors(
        pairNormMax r: [Float], kvHeads: Int, headDim d: Int, alpha: Float, excluded: Set<Int> = []
    ) -> [Float] {
        let half = d / 2
        precondition(r.count == kvHeads * half)
        var n = [Float](repeating: 1, count: kvHeads * d)
        for h in 0..<kvHeads {
            for j in 0..<half {
                let f: Float = r[h * half + j] > 0 ? alpha / r[h * half + j] : 1
                for c in [j, j + half] where !excluded.contains(h * d + c) { n[h * d + c] = f }
            }
        }
        return n
    }

    /// Query factors n_q [heads, D] = 1 / n_k of the KV head each query head reads (GQA).
    public static func queryFactors(keyFactors nk: [Float], heads: Int, kvHeads: Int, headDim d: Int) -> [Float] {
        let group = heads / kvHeads
        var out = [Float](repeating: 1, count: heads * d)
        for h in 0..<heads { for c in 0..<d { out[h * d + c] = 1 / nk[(h / group) * d + c] } }
        return out
    }
}
