import Foundation
import LowPrecision
import PackedFormat
import Quantization
import Runtime
import Testing

/// The INT4×FP8 linear against a float64 evaluation of FIREQ-METHOD.md §2.4–2.5.
@Suite struct Int4FP8LinearTests {
    @Test(arguments: [(1, 64, 64), (3, 576, 64), (7, 192, 576), (17, 576, 1536), (33, 100, 128)])
    func matchesFloat64Spec(rows: Int, n: Int, k: Int) {
        var g = KernelTests.LCG(s: UInt64(rows * 31 + n * 7 + k))
        let w = (0..<(n * k)).map { _ in g.next() * 0.05 }
        let x = (0..<(rows * k)).map { _ in g.next() * (g.next() > 0.95 ? 30 : 1) }
        let groupSize = 64 <= k ? 64 : k
        let p = Int4Groups.powerOfTwoScale(w, rows: n, k: k, groupSize: groupSize)
        let qw = Int4Groups.quantize(w.map { $0 * p }, rows: n, k: k, groupSize: groupSize)
        let packed = PackedLinear(name: "t", n: n, k: k, groupSize: groupSize, q: qw.q, scales: qw.scales, scaleFormat: "fp8_e4m3", perTensorScaleInv: 1 / p)
        let layer = Int4FP8Linear(packed, fp8Rerounding: true)
        var y = [Float](repeating: 0, count: rows * n), scratch = [Float](repeating: 0, count: rows * k), acc = y
        layer.forward(x: x, rows: rows, y: &y, scratch: &scratch, acc: &acc, threads: 2)
        // Literal spec in float64: σ, x_q = E4M3(x/σ), ŵ = E4M3(q·s), y = Σ x_q·ŵ · σ / P.
        for r in 0..<rows {
            let row = Array(x[(r * k)..<((r + 1) * k)])
            let m = row.map(abs).max()!
            let sigma = m > 0 ? m / 448 : 1
            let xq = row.map { FP8E4M3.round($0 / sigma) }
            for j in 0..<n {
                var acc = 0.0, mag = 0.0
                for c in 0..<k {
                    let wv = FP8E4M3.round(Float(qw.q[j * k + c]) * qw.scales[j * (k / groupSize) + c / groupSize])
                    acc += Double(xq[c]) * Double(wv); mag += abs(Double(xq[c]) * Double(wv))
                }
                let want = acc * Double(sigma) / Double(p)
                let err = abs(Double(y[r * n + j]) - want)
                #expect(err <= 1e-6 * mag * Double(sigma) / Double(p) + 1e-30, "row \(r) col \(j): \(y[r * n + j]) vs \(want)")
            }
        }
    }
}
