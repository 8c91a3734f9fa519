import CFireQKernels
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

    static func randomLinear(n: Int, k: Int, seed: UInt64, scale: Float) -> PackedLinear {
        var g = KernelTests.LCG(s: seed)
        let w = (0..<(n * k)).map { _ in g.next() * scale }
        let p = Int4Groups.powerOfTwoScale(w, rows: n, k: k, groupSize: 64)
        let qw = Int4Groups.quantize(w.map { $0 * p }, rows: n, k: k, groupSize: 64)
        return PackedLinear(name: "t\(seed)", n: n, k: k, groupSize: 64, q: qw.q, scales: qw.scales, scaleFormat: "fp8_e4m3", perTensorScaleInv: 1 / p)
    }

    /// q/k/v fused into one layer give the unfused layers' outputs bit for bit (each column keeps its 1/P).
    @Test func fusedEqualsSeparate() {
        let k = 576, rows = 17
        let parts = [Self.randomLinear(n: 576, k: k, seed: 1, scale: 0.05), Self.randomLinear(n: 192, k: k, seed: 2, scale: 3e-4),
                     Self.randomLinear(n: 192, k: k, seed: 3, scale: 2e-6)]
        #expect(Set(parts.map(\.perTensorScaleInv)).count == 3, "the parts need different P for this test")
        var g = KernelTests.LCG(s: 9)
        let x = (0..<(rows * k)).map { _ in g.next() }
        let biases: [[Float]?] = [nil, (0..<192).map { Float($0) / 100 }, nil]
        let fused = Int4FP8Linear(fusing: zip(parts, biases).map { ($0, $1) }, fp8Rerounding: true)
        for bf16 in [false, true] {
            var y = [Float](repeating: 0, count: rows * fused.n), scratch = [Float](repeating: 0, count: rows * k), acc = y
            fused.forward(x: x, rows: rows, y: &y, scratch: &scratch, acc: &acc, outputBF16: bf16, threads: 2)
            var col = 0
            for (p, b) in zip(parts, biases) {
                let one = Int4FP8Linear(p, fp8Rerounding: true, bias: b)
                var y1 = [Float](repeating: 0, count: rows * p.n), a1 = y1
                one.forward(x: x, rows: rows, y: &y1, scratch: &scratch, acc: &a1, outputBF16: bf16, threads: 1)
                var diffs = 0
                for r in 0..<rows { for j in 0..<p.n where y[r * fused.n + col + j].bitPattern != y1[r * p.n + j].bitPattern { diffs += 1 } }
                #expect(diffs == 0, "part \(p.name) bf16 \(bf16)")
                col += p.n
            }
        }
    }

    /// The C epilogue equals the literal Swift one bit for bit; its BF16 rounding equals the codec's.
    @Test func epilogueMatchesReference() {
        for (rows, n) in [(1, 1), (3, 7), (17, 33), (5, 1023), (2, 1536)] {
            var g = KernelTests.LCG(s: UInt64(rows * 100 + n))
            let acc = (0..<(rows * n)).map { _ in g.next() * 1e4 }
            let sigma = (0..<rows).map { _ in abs(g.next()) / 448 }
            let cols = (0..<n).map { Float(sign: .plus, exponent: $0 % 7 - 3, significand: 1) }
            let bias = (0..<n).map { _ in g.next() }
            let start = (0..<(rows * n)).map { _ in g.next() }
            for useBias in [false, true] {
                for bf16 in [false, true] {
                    for accumulate in [false, true] {
                        var want = start, got = start
                        Int4FP8Linear.epilogueReference(acc: acc, rows: rows, n: n, sigma: sigma, columnScale: cols, bias: useBias ? bias : nil,
                                                        outputBF16: bf16, y: &want, accumulate: accumulate)
                        if useBias {
                            fq_linear_epilogue(acc, rows, n, sigma, cols, bias, bf16 ? 1 : 0, &got, n, accumulate ? 1 : 0)
                        } else {
                            fq_linear_epilogue(acc, rows, n, sigma, cols, nil, bf16 ? 1 : 0, &got, n, accumulate ? 1 : 0)
                        }
                        #expect(zip(want, got).filter { $0.bitPattern != $1.bitPattern }.isEmpty, "rows \(rows) n \(n) \(useBias) \(bf16) \(accumulate)")
                    }
                }
            }
        }
        var xs: [Float] = [0, -0, .infinity, -.infinity, .nan, .greatestFiniteMagnitude, .leastNonzeroMagnitude, 1, 1.00390625, 1.01171875]
        var g = KernelTests.LCG(s: 5)
        for _ in 0..<100_000 { xs.append(Float(bitPattern: UInt32(truncatingIfNeeded: Int64((g.next() + 1) * 2_147_483_647)))) }
        var bad = 0
        for x in xs where fq_round_bf16(x).bitPattern != BF16.round(x).bitPattern && !(x.isNaN && fq_round_bf16(x).isNaN) { bad += 1 }
        #expect(bad == 0)
    }
}
