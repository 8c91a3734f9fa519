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
        let packed = PackedLinear(
            name: "t", n: n, k: k, groupSize: groupSize, q: qw.q, scales: qw.scales, scaleFormat: "fp8_e4m3",
            perTensorScaleInv: 1 / p)
        let layer = try! Int4FP8Linear(packed, fp8Rerounding: true)
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
                #expect(
                    err <= 1e-6 * mag * Double(sigma) / Double(p) + 1e-30,
                    "row \(r) col \(j): \(y[r * n + j]) vs \(want)")
            }
        }
    }

    static func randomLinear(n: Int, k: Int, seed: UInt64, scale: Float) -> PackedLinear {
        var g = KernelTests.LCG(s: seed)
        let w = (0..<(n * k)).map { _ in g.next() * scale }
        let p = Int4Groups.powerOfTwoScale(w, rows: n, k: k, groupSize: 64)
        let qw = Int4Groups.quantize(w.map { $0 * p }, rows: n, k: k, groupSize: 64)
        return PackedLinear(
            name: "t\(seed)", n: n, k: k, groupSize: 64, q: qw.q, scales: qw.scales, scaleFormat: "fp8_e4m3",
            perTensorScaleInv: 1 / p)
    }

    /// q/k/v fused into one layer give the unfused layers' outputs bit for bit (each column keeps its 1/P).
    @Test func fusedEqualsSeparate() {
        let k = 576, rows = 17
        let parts = [
            Self.randomLinear(n: 576, k: k, seed: 1, scale: 0.05),
            Self.randomLinear(n: 192, k: k, seed: 2, scale: 3e-4),
            Self.randomLinear(n: 192, k: k, seed: 3, scale: 2e-6)
        ]
        #expect(Set(parts.map(\.perTensorScaleInv)).count == 3, "the parts need different P for this test")
        var g = KernelTests.LCG(s: 9)
        let x = (0..<(rows * k)).map { _ in g.next() }
        let biases: [[Float]?] = [nil, (0..<192).map { Float($0) / 100 }, nil]
        let fused = try! Int4FP8Linear(fusing: zip(parts, biases).map { ($0, $1) }, fp8Rerounding: true)
        for bf16 in [false, true] {
            var y = [Float](repeating: 0, count: rows * fused.n), scratch = [Float](repeating: 0, count: rows * k),
                acc = y
            fused.forward(x: x, rows: rows, y: &y, scratch: &scratch, acc: &acc, outputBF16: bf16, threads: 2)
            var col = 0
            for (p, b) in zip(parts, biases) {
                let one = try! Int4FP8Linear(p, fp8Rerounding: true, bias: b)
                var y1 = [Float](repeating: 0, count: rows * p.n), a1 = y1
                one.forward(x: x, rows: rows, y: &y1, scratch: &scratch, acc: &a1, outputBF16: bf16, threads: 1)
                var diffs = 0
                for r in 0..<rows {
                    for j in 0..<p.n where y[r * fused.n + col + j].bitPattern != y1[r * p.n + j].bitPattern {
                        diffs += 1
                    }
                }
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
                        Int4FP8Linear.epilogueReference(
                            acc: acc, rows: rows, n: n, sigma: sigma, columnScale: cols, bias: useBias ? bias : nil,
                            outputBF16: bf16, y: &want, accumulate: accumulate)
                        if useBias {
                            fq_linear_epilogue(
                                acc, rows, n, sigma, cols, bias, bf16 ? 1 : 0, &got, n, accumulate ? 1 : 0)
                        } else {
                            fq_linear_epilogue(
                                acc, rows, n, sigma, cols, nil, bf16 ? 1 : 0, &got, n, accumulate ? 1 : 0)
                        }
                        #expect(
                            zip(want, got).filter { $0.bitPattern != $1.bitPattern }.isEmpty,
                            "rows \(rows) n \(n) \(useBias) \(bf16) \(accumulate)")
                    }
                }
            }
        }
        var xs: [Float] = [
            0, -0, .infinity, -.infinity, .nan, .greatestFiniteMagnitude, .leastNonzeroMagnitude, 1, 1.00390625,
            1.01171875
        ]
        var g = KernelTests.LCG(s: 5)
        for _ in 0..<100_000 {
            xs.append(Float(bitPattern: UInt32(truncatingIfNeeded: Int64(Double(g.next() + 1) * 2_147_483_647))))
        }
        var bad = 0
        for x in xs
        where fq_round_bf16(x).bitPattern != BF16.round(x).bitPattern && !(x.isNaN && fq_round_bf16(x).isNaN) {
            bad += 1
        }
        #expect(bad == 0)
    }

    // ---- resident INT4 weights and the canonical accumulation order (Formats/runtime-numerics.md) ----

    /// The canonical chain written literally in Swift: per output, from +0, over the input pairs,
    /// x[2kp+1]·ŵ[2kp+1] then x[2kp]·ŵ[2kp], each added with one rounding (an FMA).
    static func canonical(
        x: [Float], m: Int, q: [Int8], scales: [Float], n: Int, k: Int, groupSize G: Int, reround: Bool
    ) -> [Float] {
        var y = [Float](repeating: 0, count: m * n)
        func w(_ r: Int, _ c: Int) -> Float {
            let v = Float(q[r * k + c]) * scales[r * (k / G) + c / G]
            return reround ? FP8E4M3.round(v) : v
        }
        for i in 0..<m {
            for r in 0..<n {
                var acc: Float = 0
                for kp in 0..<(k / 2) {
                    acc = acc.addingProduct(x[i * k + 2 * kp + 1], w(r, 2 * kp + 1))
                    acc = acc.addingProduct(x[i * k + 2 * kp], w(r, 2 * kp))
                }
                y[i * n + r] = acc
            }
        }
        return y
    }

    /// Random codes with FP8 (or BF16) group scales, and inputs that are FP8 values (or any FP32).
    static func int4Case(
        m: Int, n: Int, k: Int, G: Int, seed: UInt64, bf16Scales: Bool, fp8Inputs: Bool, signed: Bool = false
    ) -> (x: [Float], q: [Int8], s: [Float]) {
        var g = KernelTests.LCG(s: seed)
        let q = (0..<(n * k)).map { _ in Int8(max(-8, min(7, Int((g.next() * 8.5).rounded(.down))))) }
        let big = seed % 3 == 0  // some cases with large scales (up to 100: past the table decode's 56)
        let s = (0..<(n * (k / G))).map { _ -> Float in
            let v = abs(g.next()) * (big ? 100 : 0.02) + 0x1p-9
            let sign: Float = signed && g.next() < 0 ? -1 : 1
            return sign * (bf16Scales ? BF16.round(v) : max(FP8E4M3.round(v), 0x1p-9))
        }
        let x = (0..<(m * k)).map { _ -> Float in
            let v = g.next() * (g.next() > 0.9 ? 300 : 2)
            return fp8Inputs ? FP8E4M3.round(v) : v
        }
        return (x, q, s)
    }

    /// Every kernel path (AVX-512 BF16, AVX-512F, AVX2, portable; the ones this CPU lacks fall back)
    /// equals the literal canonical chain bit for bit, split over panels, for FP8 and FP32 inputs,
    /// FP8 and BF16 scales, positive or of either sign (`weights.signed_scales`), with and without FP8
    /// re-rounding; and the order is not the plain k order.
    @Test(arguments: [
        (1, 64, 64, 64), (3, 70, 128, 32), (13, 96, 576, 64), (1, 576, 1536, 64), (29, 33, 192, 64), (12, 64, 256, 128),
        (1, 100, 192, 64), (2, 64, 128, 64), (1, 40, 96, 6), (5, 40, 96, 6)
    ])
    func int4KernelPathsEqualCanonical(m: Int, n: Int, k: Int, G: Int) {
        var orderMatters = false
        let cases = [
            (false, true, true), (false, true, false), (true, true, false), (false, false, true), (true, false, false)
        ]
        for (bf16Scales, fp8Inputs, reround, signed) in cases.flatMap({ c in [false, true].map { (c.0, c.1, c.2, $0) } }
        ) {
            let c = Self.int4Case(
                m: m, n: n, k: k, G: G, seed: UInt64(m * 1000 + n + k), bf16Scales: bf16Scales, fp8Inputs: fp8Inputs,
                signed: signed)
            let want = Self.canonical(x: c.x, m: m, q: c.q, scales: c.s, n: n, k: k, groupSize: G, reround: reround)
            var codes = [UInt8](repeating: 0, count: fq_int4_codes_bytes(n, k))
            var sc = [Float](repeating: 0, count: fq_int4_scales_count(n, k, G))
            fq_int4_pack(c.q, c.s, n, k, G, &codes, &sc)
            let exact = fq_int4_bf16_exact(sc, sc.count, reround ? 1 : 0)
            #expect(
                exact == (bf16Scales && !reround ? 0 : 1), "BF16 scales make q·s inexact in BF16; FP8 scales never do")
            var meta = [UInt16](repeating: 0, count: sc.count)
            let tableOK = fq_int4_meta(sc, sc.count, reround ? 1 : 0, &meta) == 1
            let big = c.s.contains { abs($0) > 56 }
            #expect(!signed || c.s.contains { $0 < 0 })
            #expect(
                tableOK == (!bf16Scales && !(reround && big)), "table decode: FP8 scales, and ≤ 56 when re-rounding")
            let panels = (n + 31) / 32
            for path: Int32 in [-1, 0, 1, 2, 3] {
                for useMeta in tableOK ? [false, true] : [false] {
                    var y = [Float](repeating: .nan, count: m * n)
                    let ok: Int32 = fp8Inputs && exact == 1 ? 1 : 0
                    meta.withUnsafeBufferPointer { mp in
                        let mt = useMeta ? mp.baseAddress : nil
                        fq_int4_gemm_on(
                            path, c.x, k, m, codes, sc, mt, n, k, G, reround ? 1 : 0, ok, 0, panels / 2, &y, n)
                        fq_int4_gemm_on(
                            path, c.x, k, m, codes, sc, mt, n, k, G, reround ? 1 : 0, ok, panels / 2, panels, &y, n)
                    }
                    let bad = zip(want, y).filter { $0.bitPattern != $1.bitPattern }.count
                    #expect(
                        bad == 0,
                        "m \(m) n \(n) k \(k) G \(G) path \(path) (resolved \(fq_int4_level_rows(path, ok, m))) table \(useMeta) bf16 scales \(bf16Scales) signed \(signed) fp8 x \(fp8Inputs) reround \(reround): \(bad) differ"
                    )
                    // x prepared once in place (two row ranges), then the prepared panel loop (two panel ranges)
                    let level = fq_int4_level_rows(path, ok, m)
                    #expect(m > 1 || level == fq_int4_level(path, ok), "one row keeps the direct GEMV's path")
                    var xp = c.x, yp = [Float](repeating: .nan, count: m * n)
                    fq_int4_prepare_rows(level, &xp, k, 0, m / 2, k)
                    fq_int4_prepare_rows(level, &xp, k, m / 2, m, k)
                    meta.withUnsafeBufferPointer { mp in
                        let mt = useMeta ? mp.baseAddress : nil
                        fq_int4_gemm_prepared(
                            level, xp, k, m, codes, sc, mt, n, k, G, reround ? 1 : 0, 0, panels / 2, &yp, n)
                        fq_int4_gemm_prepared(
                            level, xp, k, m, codes, sc, mt, n, k, G, reround ? 1 : 0, panels / 2, panels, &yp, n)
                    }
                    let badPrepared = zip(want, yp).filter { $0.bitPattern != $1.bitPattern }.count
                    #expect(
                        badPrepared == 0,
                        "prepared x: m \(m) n \(n) k \(k) path \(path) (level \(level)) table \(useMeta) reround \(reround): \(badPrepared) differ"
                    )
                }
            }
            // the plain k-order chain gives other bits somewhere: the pair order is what is pinned
            for i in 0..<m where !orderMatters {
                for r in 0..<n {
                    var acc: Float = 0
                    for kk in 0..<k {
                        let v = Float(c.q[r * k + kk]) * c.s[r * (k / G) + kk / G]
                        acc = acc.addingProduct(c.x[i * k + kk], reround ? FP8E4M3.round(v) : v)
                    }
                    if acc.bitPattern != want[i * n + r].bitPattern { orderMatters = true; break }
                }
            }
        }
        #expect(orderMatters || k <= 64)
    }

    /// Every FP8 scale, positive and negative, with every code, one row at a time (the decode
    /// kernels): with a unit input e_j the chain returns ŵ[r, j] itself, which must equal the
    /// reference's `fq_int4_weight` bit for bit (a zero weight as +0: the chain starts at +0) —
    /// with and without re-rounding, through the table decode (|s| ≤ 56) and without it (every
    /// scale up to 448), on every path.
    @Test func oneRowDecodeEveryScaleAndCode() {
        let positive = (1..<0x7F).map { FP8E4M3.decode(UInt8($0)) }.filter { $0.isFinite && $0 > 0 }
        #expect(positive.count == 126)
        let all = positive + positive.map { -$0 }
        let k = 32, G = 32
        for scales in [all.filter { abs($0) <= 56 }, all] {
            let n = scales.count
            let q = (0..<(n * k)).map { Int8($0 % 16 - 8) }
            var codes = [UInt8](repeating: 0, count: fq_int4_codes_bytes(n, k))
            var sc = [Float](repeating: 0, count: fq_int4_scales_count(n, k, G))
            fq_int4_pack(q, scales, n, k, G, &codes, &sc)
            for reround in [true, false] {
                var meta = [UInt16](repeating: 0, count: sc.count)
                let tableOK = fq_int4_meta(sc, sc.count, reround ? 1 : 0, &meta) == 1
                #expect(tableOK == (!reround || scales.count < all.count))
                for path: Int32 in [-1, 0, 1, 2, 3] {
                    var bad = 0
                    for j in 0..<k {
                        var x = [Float](repeating: 0, count: k)
                        x[j] = 1
                        var y = [Float](repeating: .nan, count: n)
                        meta.withUnsafeBufferPointer { mp in
                            fq_int4_gemm_on(
                                path, x, k, 1, codes, sc, tableOK ? mp.baseAddress : nil, n, k, G, reround ? 1 : 0, 1,
                                0, (n + 31) / 32, &y, n)
                        }
                        for r in 0..<n
                        where y[r].bitPattern
                            != (fq_int4_weight(UInt32(j % 16), scales[r], reround ? 1 : 0) + 0).bitPattern
                        {
                            bad += 1
                        }
                    }
                    #expect(bad == 0, "\(n) scales, reround \(reround), path \(path): \(bad) weights differ")
                }
            }
        }
    }

    /// Re-rounded products below 2^-6 land on E4M3's subnormal spacing 2^-9, so the table decode
    /// (R(q·M)·2^E) holds only for scales with E ≥ -9: a BF16 scale 2^-10 gives ŵ = E4M3(2^-10) = 0
    /// (a tie, to even) and E4M3(3·2^-10) = 2^-8, not q·s. Such scales are refused for the table,
    /// and every path — the one-row decode kernels included — still equals the canonical chain.
    /// Load-time checks remember scale values already decided (a cache keyed by bit pattern): on a
    /// long array of repeated scales they must answer exactly as each scale checked alone, and a
    /// failing scale after many passing repeats must still fail.
    @Test func loadChecksEqualPerScaleChecks() {
        var values = (0..<256).map { FP8E4M3.decode(UInt8($0)) }.filter { $0.isFinite }
        values += [Float(BF16.decode(0x3F81)), 100, -0.001]  // a BF16 scale, one above 56, one tiny
        var state: UInt64 = 7
        func draw() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        for reround in [0, 1] as [Int32] {
            for v in values {
                var one: UInt16 = 0
                let okOne = fq_int4_meta([v], 1, reround, &one)
                // v after 4096 draws of other scales (repeats included), then again.
                var arr = (0..<4096).map { _ in values[Int(draw() % UInt64(values.count))] }
                arr += [v, v]
                var meta = [UInt16](repeating: 0, count: arr.count)
                let okAll = fq_int4_meta(arr, arr.count, reround, &meta)
                let allSingles = arr.allSatisfy { x in
                    var m: UInt16 = 0
                    return fq_int4_meta([x], 1, reround, &m) == 1
                }
                #expect(okAll == (allSingles ? 1 : 0))
                if okAll == 1 {
                    #expect(meta[arr.count - 1] == one && okOne == 1)
                    for (x, m) in zip(arr, meta) {
                        var want: UInt16 = 0
                        _ = fq_int4_meta([x], 1, reround, &want)
                        #expect(m == want)
                    }
                }
                let exactAll = fq_int4_bf16_exact(arr, arr.count, reround)
                #expect(exactAll == (arr.allSatisfy { fq_int4_bf16_exact([$0], 1, reround) == 1 } ? 1 : 0))
            }
        }
    }

    /// The packed format's nibble order (Formats/fireq-packed-v1.md): word 0x76543210 holds codes
    /// 0 … 7 (code + 8 would be 8 … 15 stored as two's complement nibbles), 0xFEDCBA98 holds −8 … −1.
    @Test func unpackInt4NibbleOrder() {
        let words: [UInt32] = [0x7654_3210, 0xFEDC_BA98]
        let bytes = words.flatMap { w in (0..<4).map { UInt8((w >> (8 * UInt32($0))) & 0xFF) } }
        let q = bytes.withUnsafeBytes { PackedFormat.unpackInt4($0, n: 2, k: 8) }
        #expect(q == [0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1])
        var state: UInt64 = 3
        let codes = (0..<(6 * 64)).map { _ -> Int8 in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int8(Int(state >> 60) - 8)
        }
        let packed = PackedFormat.packInt4(codes, n: 6, k: 64)
        #expect(packed.withUnsafeBytes { PackedFormat.unpackInt4($0, n: 6, k: 64) } == codes)
    }

    @Test func tableRefusesScalesBelowE4M3Spacing() {
        #expect(fq_int4_weight(9, 0x1p-10, 1) == 0)
        #expect(fq_int4_weight(11, 0x1p-10, 1) == 0x1p-8)
        #expect(fq_int4_weight(7, 3 * 0x1p-10, 1) == -0x1p-8)
        let (n, k, G) = (70, 128, 32)
        for lowest in [-9, -12] {
            var g = KernelTests.LCG(s: UInt64(100 - lowest))
            let q = (0..<(n * k)).map { _ in Int8(max(-8, min(7, Int((g.next() * 8.5).rounded(.down))))) }
            let s = (0..<(n * (k / G))).map { i -> Float in
                let M = Float(2 * (i % 8) + 1), E = lowest + (i / 8) % (-5 - lowest)
                return M * Float(sign: .plus, exponent: E, significand: 1)
            }
            var codes = [UInt8](repeating: 0, count: fq_int4_codes_bytes(n, k))
            var sc = [Float](repeating: 0, count: fq_int4_scales_count(n, k, G))
            fq_int4_pack(q, s, n, k, G, &codes, &sc)
            var meta = [UInt16](repeating: 0, count: sc.count)
            let tableOK = fq_int4_meta(sc, sc.count, 1, &meta) == 1
            #expect(tableOK == (lowest >= -9), "scales down to 2^\(lowest)")
            #expect(fq_int4_meta(sc, sc.count, 0, &meta) == 1, "without re-rounding q·M·2^E is exact at any E")
            _ = fq_int4_meta(sc, sc.count, 1, &meta)
            for m in [1, 5] {
                let x = (0..<(m * k)).map { _ in FP8E4M3.round(g.next() * 4) }
                let want = Self.canonical(x: x, m: m, q: q, scales: s, n: n, k: k, groupSize: G, reround: true)
                for path: Int32 in [-1, 0, 1, 2, 3] {
                    var y = [Float](repeating: .nan, count: m * n)
                    meta.withUnsafeBufferPointer { mp in
                        fq_int4_gemm_on(
                            path, x, k, m, codes, sc, tableOK ? mp.baseAddress : nil, n, k, G, 1, 1, 0, (n + 31) / 32,
                            &y, n)
                    }
                    let bad = zip(want, y).filter { $0.bitPattern != $1.bitPattern }.count
                    #expect(bad == 0, "lowest 2^\(lowest) m \(m) path \(path): \(bad) differ")
                }
            }
        }
    }

    /// The layer with resident codes equals the layer with expanded binary16 weights (the benchmark
    /// baseline) bit for bit, for one row (decode) and many, fused, with FP8 and FP32 inputs.
    @Test func residentEqualsExpanded() throws {
        let k = 576
        let parts = [
            Self.randomLinear(n: 576, k: k, seed: 11, scale: 0.05),
            Self.randomLinear(n: 192, k: k, seed: 12, scale: 3e-3)
        ]
        let resident = try Int4FP8Linear(fusing: parts.map { ($0, nil) }, fp8Rerounding: true, resident: true)
        let expanded = try Int4FP8Linear(fusing: parts.map { ($0, nil) }, fp8Rerounding: true, resident: false)
        #expect(resident.expanded == nil && expanded.expanded?.storage == .f16)
        #expect(resident.weightValues() == expanded.weightValues())
        #expect(resident.weightBytes * 3 < expanded.weightBytes, "\(resident.weightBytes) vs \(expanded.weightBytes)")
        for rows in [1, 37] {
            var g = KernelTests.LCG(s: UInt64(rows))
            let x = (0..<(rows * k)).map { _ in g.next() * 3 }
            for fp8 in [true, false] {
                var outs: [[Float]] = []
                for layer in [resident, expanded] {
                    var y = [Float](repeating: 0, count: rows * layer.n),
                        scratch = [Float](repeating: 0, count: rows * k), acc = y
                    layer.forward(
                        x: x, rows: rows, y: &y, scratch: &scratch, acc: &acc, activationsFP8: fp8, threads: 2)
                    outs.append(y)
                }
                #expect(
                    zip(outs[0], outs[1]).filter { $0.bitPattern != $1.bitPattern }.isEmpty, "rows \(rows) fp8 \(fp8)")
            }
        }
        // linears with different group sizes fuse at their gcd
        let coarse = PackedLinear(
            name: "c", n: 64, k: k, groupSize: 192, q: [Int8](repeating: 3, count: 64 * k),
            scales: [Float](repeating: 0.5, count: 64 * 3), scaleFormat: "fp8_e4m3", perTensorScaleInv: 1)
        let mixed = try Int4FP8Linear(fusing: [(parts[1], nil), (coarse, nil)], fp8Rerounding: false)
        #expect(mixed.groupSize == 64)
        let wv = mixed.weightValues()
        #expect(wv[192 * k + 100] == 1.5 && wv[(192 + 63) * k + 575] == 1.5)
    }
}
