import CFireQKernels
import Foundation
import Kernels
import LowPrecision
import Runtime
import Testing

/// Fast C kernels pinned to their portable references, bit for bit, over odd sizes
/// (the llama.cpp test-quantize-fns list) and the model's shapes.
@Suite struct KernelTests {
    static let sizes = [1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 127, 129, 255, 1023]

    struct LCG {
        var s: UInt64
        mutating func next() -> Float {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2_000_001 - 1_000_000) / 1_000_000
        }
    }

    static func gemm(m: Int, n: Int, k: Int, path: Int32, accumulate: Bool, seed: UInt64) -> [Float] {
        var g = LCG(s: seed)
        let x = (0..<(m * k)).map { _ in g.next() }
        let w = (0..<(n * k)).map { _ in g.next() }
        var y = (0..<(m * n)).map { _ in g.next() }
        var packed = [Float](repeating: .nan, count: fq_sgemm_packed_count(n, k))
        fq_sgemm_pack(w, n, k, &packed)
        let panels = (n + 31) / 32
        if path == 0 {
            fq_sgemm_packed_ref(x, k, m, packed, n, k, 0, panels, &y, n, accumulate ? 1 : 0)
        } else {
            // Split the panels in two calls, as two threads would.
            fq_sgemm_packed_on(path, x, k, m, packed, n, k, 0, panels / 2, &y, n, accumulate ? 1 : 0)
            fq_sgemm_packed_on(path, x, k, m, packed, n, k, panels / 2, panels, &y, n, accumulate ? 1 : 0)
        }
        return y
    }

    @Test func packedGEMMPathsAgreeBitForBit() {
        var shapes: [(Int, Int, Int)] = []
        for s in Self.sizes { shapes.append((s, s, s)); shapes.append((13, s, 37)); shapes.append((s, 70, 9)) }
        shapes += [
            (12, 576, 576), (7, 1536, 576), (25, 576, 1536), (3, 1023, 5), (64, 1536, 576), (64, 576, 1536),
            (5, 49152, 576)
        ]
        for (m, n, k) in shapes {
            for acc in [false, true] {
                let ref = Self.gemm(m: m, n: n, k: k, path: 0, accumulate: acc, seed: UInt64(m * 1000 + n * 10 + k))
                for path: Int32 in [1, 2] {
                    let fast = Self.gemm(
                        m: m, n: n, k: k, path: path, accumulate: acc, seed: UInt64(m * 1000 + n * 10 + k))
                    let diffs = zip(ref, fast).filter { $0.bitPattern != $1.bitPattern }.count
                    #expect(diffs == 0, "m \(m) n \(n) k \(k) accumulate \(acc) path \(path)")
                }
            }
        }
    }

    /// The decode GEMV on binary16 panels equals the GEMM on the same (binary16-exact) values, bit
    /// for bit, on every path, with and without accumulation.
    /// 16-bit panels (binary16 and bfloat16): the GEMM (widened panel by panel) and the single-row
    /// GEMV equal the FP32 GEMM on the same values bit for bit, on every path, split over panels.
    @Test(arguments: [false, true])
    func sixteenBitPanelsEqualFP32(bf16: Bool) {
        var shapes: [(Int, Int)] =
            Self.sizes.map { ($0, $0) } + Self.sizes.map { (37, $0) } + Self.sizes.map { ($0, 70) }
        shapes += [(576, 1536), (1536, 576), (960, 576), (49152, 576)]
        for (n, k) in shapes {
            var g = LCG(s: UInt64(n * 7919 + k + (bf16 ? 1 : 0)))
            // Values exact in 16 bits: random finite bit patterns (normals and subnormals).
            let w = (0..<(n * k)).map { _ -> Float in
                while true {
                    let bits = UInt16(truncatingIfNeeded: Int64((g.next() + 1) * 32767.5))
                    let v = bf16 ? Float(bitPattern: UInt32(bits) << 16) : Float(Float16(bitPattern: bits))
                    if v.isFinite && (!bf16 || abs(v) < 1e30) { return v }
                }
            }
            let m = n > 4096 ? 3 : 13
            let x = (0..<(m * k)).map { _ in g.next() }
            let y0 = (0..<(m * n)).map { _ in g.next() }
            var packed = [Float](repeating: 0, count: fq_sgemm_packed_count(n, k))
            fq_sgemm_pack(w, n, k, &packed)
            var half = [UInt16](repeating: 0, count: fq_gemv_f16_count(n, k))
            #expect(
                (bf16
                    ? fq_f32_to_bf16_exact(packed, packed.count, &half)
                    : fq_f32_to_f16_exact(packed, packed.count, &half)) == 1)
            // the same panels packed straight from 16-bit row-major values
            let raw = w.map { bf16 ? UInt16($0.bitPattern >> 16) : Float16($0).bitPattern }
            var direct = [UInt16](repeating: 1, count: half.count)
            fq_pack16(raw, n, k, &direct)
            #expect(direct == half, "n \(n) k \(k)")
            let panels = (n + 31) / 32
            for acc: Int32 in [0, 1] {
                var ref1 = y0, ref = y0
                fq_sgemm_packed_ref(x, k, 1, packed, n, k, 0, panels, &ref1, n, acc)
                fq_sgemm_packed_ref(x, k, m, packed, n, k, 0, panels, &ref, n, acc)
                for path: Int32 in [0, 1, 2] {
                    var y = y0, y1 = y0
                    fq_sgemm_packed16_on(path, x, k, m, half, bf16 ? 1 : 0, n, k, 0, panels / 2, &y, n, acc)
                    fq_sgemm_packed16_on(path, x, k, m, half, bf16 ? 1 : 0, n, k, panels / 2, panels, &y, n, acc)
                    #expect(
                        zip(ref, y).filter { $0.bitPattern != $1.bitPattern }.isEmpty,
                        "GEMM n \(n) k \(k) path \(path) accumulate \(acc)")
                    fq_gemv_h_on(path, x, half, bf16 ? 1 : 0, n, k, 0, panels / 2, &y1, acc)
                    fq_gemv_h_on(path, x, half, bf16 ? 1 : 0, n, k, panels / 2, panels, &y1, acc)
                    #expect(
                        zip(ref1.prefix(n), y1.prefix(n)).filter { $0.bitPattern != $1.bitPattern }.isEmpty,
                        "GEMV n \(n) k \(k) path \(path) accumulate \(acc)")
                }
            }
        }
        // Values 16 bits cannot hold are refused.
        var out = [UInt16](repeating: 0, count: 1)
        for v: Float in [1.0 / 3, 70000, 0x1p-25, 1 + 0x1p-11] {
            #expect(fq_f32_to_f16_exact([v], 1, &out) == 0, "\(v)")
        }
        for v: Float in [0.5, -448, 0x1p-24, 65504, 0x1.ffcp-1] {
            #expect(fq_f32_to_f16_exact([v], 1, &out) == 1 && out[0] == Float16(v).bitPattern, "\(v)")
        }
        for v: Float in [1.0 / 3, 1 + 0x1p-8, .infinity, .nan] {
            #expect(fq_f32_to_bf16_exact([v], 1, &out) == 0, "\(v)")
        }
        for v: Float in [0.5, -448, 1 + 0x1p-7, 0x1p-130, 0x1.fep127] {
            #expect(fq_f32_to_bf16_exact([v], 1, &out) == 1 && out[0] == UInt16(v.bitPattern >> 16), "\(v)")
        }
    }

    /// PackedMatrix keeps exact 16-bit weights in 16 bits (binary16 first), other weights in FP32,
    /// and multiplies identically either way.
    @Test func packedMatrixStorage() {
        let f16: [Float] = (0..<(40 * 64)).map { Float(Float16(Float($0 % 97) / 17)) }
        let bf16: [Float] = f16.enumerated().map {
            $0.offset == 5 ? 0x1p70 : Float(bitPattern: $0.element.bitPattern & 0xFFFF0000)
        }
        let f32: [Float] = f16.enumerated().map { $0.offset == 7 ? 1.0 / 3 : $0.element }
        for (w, want) in [(f16, PackedMatrix.Storage.f16), (bf16, .bf16), (f32, .f32)] {
            let m = w.withUnsafeBufferPointer { PackedMatrix(rowMajor: $0.baseAddress!, rows: 40, cols: 64) }
            let wide = w.withUnsafeBufferPointer {
                PackedMatrix(rowMajor: $0.baseAddress!, rows: 40, cols: 64, narrow: false)
            }
            #expect(m.storage == want && wide.storage == .f32)
            #expect(m.rowMajor() == w && m.element(33, 5) == w[33 * 64 + 5])
            let x = (0..<(3 * 64)).map { Float($0) / 7 }
            var a = [Float](repeating: 0, count: 3 * 40), b = a
            m.multiply(x: x, ldx: 64, m: 3, panels: 0..<2, y: &a, ldy: 40, accumulate: false)
            wide.multiply(x: x, ldx: 64, m: 3, panels: 0..<2, y: &b, ldy: 40, accumulate: false)
            #expect(a == b)
        }
    }

    /// Fixed-order attention products: AVX-512 = AVX2 = portable bit for bit; a score depends only on
    /// its own query and key (not on the key count or the transposed buffer's stride); two queries at
    /// once (scores, and P·V with the second query one key longer, as the causal pairs are) give each
    /// query what it gets alone.
    @Test func attentionKernelsAgree() {
        for D in [1, 3, 8, 17, 64, 128] {
            for n in Self.sizes + [576, 1536] {
                var g = LCG(s: UInt64(D * 10_000 + n))
                let q = (0..<D).map { _ in g.next() }, p = (0..<n).map { _ in abs(g.next()) }
                let ld = n + 5
                let kt = (0..<(D * ld)).map { _ in g.next() }, v = (0..<(n * (D + 3))).map { _ in g.next() }
                var s0 = [Float](repeating: 0, count: n), s1 = s0, o0 = [Float](repeating: 0, count: D), o1 = o0
                fq_attn_scores_on(0, q, kt, ld, D, n, 0.125, &s0)
                fq_attn_scores_on(1, q, kt, ld, D, n, 0.125, &s1)
                #expect(s0.map(\.bitPattern) == s1.map(\.bitPattern), "scores D \(D) n \(n)")
                var s512 = s0
                fq_attn_scores_on(2, q, kt, ld, D, n, 0.125, &s512)
                #expect(s0.map(\.bitPattern) == s512.map(\.bitPattern), "scores AVX-512 D \(D) n \(n)")
                // The AVX-512 tails are masked: nothing past n is written (sentinels kept), one query or two.
                var wide0 = [Float](repeating: 7, count: n + 64), wide1 = wide0
                fq_attn_scores_on(2, q, kt, ld, D, n, 0.125, &wide0)
                #expect(
                    Array(wide0.prefix(n)).map(\.bitPattern) == s0.map(\.bitPattern)
                        && wide0.dropFirst(n).allSatisfy { $0 == 7 })
                fq_attn_scores2_on(2, q, q, kt, ld, D, n, 0.125, &wide0, &wide1)
                #expect(
                    wide0.dropFirst(n).allSatisfy { $0 == 7 } && wide1.dropFirst(n).allSatisfy { $0 == 7 },
                    "D \(D) n \(n)")
                fq_attn_pv_on(0, p, n, v, D + 3, D, &o0)
                fq_attn_pv_on(1, p, n, v, D + 3, D, &o1)
                #expect(o0.map(\.bitPattern) == o1.map(\.bitPattern), "pv D \(D) n \(n)")
                // Two queries at once: each gets its own scores.
                let q2 = (0..<D).map { _ in g.next() }
                var t0 = [Float](repeating: 0, count: n), t1 = t0, r2 = t0
                fq_attn_scores_on(0, q2, kt, ld, D, n, 0.125, &r2)
                for path: Int32 in [-1, 0, 1, 2] {
                    fq_attn_scores2_on(path, q, q2, kt, ld, D, n, 0.125, &t0, &t1)
                    #expect(
                        t0.map(\.bitPattern) == s0.map(\.bitPattern) && t1.map(\.bitPattern) == r2.map(\.bitPattern),
                        "pair D \(D) n \(n) path \(path)")
                }
                // P·V of two queries, the second over one more key (and over the same n)
                if n > 1 {
                    let pa = (0..<n).map { _ in abs(g.next()) }
                    var wa = [Float](repeating: 0, count: D), wb = wa
                    fq_attn_pv_on(0, p, n - 1, v, D + 3, D, &wa)
                    fq_attn_pv_on(0, pa, n, v, D + 3, D, &wb)
                    for path: Int32 in [-1, 0, 1, 2] {
                        var ga = [Float](repeating: .nan, count: D), gb = ga
                        fq_attn_pv2_on(path, p, n - 1, pa, n, v, D + 3, D, &ga, &gb)
                        #expect(
                            ga.map(\.bitPattern) == wa.map(\.bitPattern)
                                && gb.map(\.bitPattern) == wb.map(\.bitPattern),
                            "pv pair D \(D) n \(n) path \(path)")
                        fq_attn_pv2_on(path, p, n, pa, n, v, D + 3, D, &ga, &gb)
                        #expect(
                            ga.map(\.bitPattern) == o0.map(\.bitPattern)
                                && gb.map(\.bitPattern) == wb.map(\.bitPattern),
                            "pv pair, same n, D \(D) n \(n) path \(path)")
                    }
                }
                // The first m scores alone are the same values.
                let m = max(1, n / 3)
                var s2 = [Float](repeating: 0, count: m)
                fq_attn_scores_on(1, q, kt, ld, D, m, 0.125, &s2)
                #expect(s2.map(\.bitPattern) == Array(s1.prefix(m)).map(\.bitPattern))
                // Accuracy against float64.
                let want = (0..<D).reduce(0.0) { $0 + Double(q[$1]) * Double(kt[$1 * ld]) } * 0.125
                #expect(abs(Double(s0[0]) - want) <= 1e-5 * max(1, abs(want)))
            }
        }
    }

    /// The reference is a plain FMA chain: check it against a float64 dot product.
    @Test func packedGEMMIsAccurate() {
        let (m, n, k) = (5, 37, 300)
        var g = LCG(s: 7)
        let x = (0..<(m * k)).map { _ in g.next() }, w = (0..<(n * k)).map { _ in g.next() }
        var packed = [Float](repeating: 0, count: fq_sgemm_packed_count(n, k))
        fq_sgemm_pack(w, n, k, &packed)
        var y = [Float](repeating: 0, count: m * n)
        fq_sgemm_packed_ref(x, k, m, packed, n, k, 0, (n + 31) / 32, &y, n, 0)
        for i in 0..<m {
            for j in 0..<n {
                let exact = (0..<k).reduce(0.0) { $0 + Double(x[i * k + $1]) * Double(w[j * k + $1]) }
                #expect(abs(Double(y[i * n + j]) - exact) <= 1e-5 * Double(k).squareRoot() * 2)
            }
        }
    }

    @Test func expPathsAgreeAndAreAccurate() {
        var g = LCG(s: 3)
        var xs = (0..<100_003).map { _ in g.next() * 100 }
        xs += [0, -0.0, 1, -1, 88, 88.5, 100, -87, -90, -1000, .infinity, -.infinity, 0x1p-30]
        var fast = [Float](repeating: 0, count: xs.count), ref = fast, wide = fast
        fq_exp_shift_on(1, xs, 0, &fast, xs.count)
        fq_exp_shift_on(0, xs, 0, &ref, xs.count)
        #expect(zip(fast, ref).filter { $0.bitPattern != $1.bitPattern }.count == 0)
        // AVX-512: every length 1 … 40 (the masked tail) and the whole sweep, shifted.
        for n in [xs.count] + Array(1...40) {
            var w = [Float](repeating: 0, count: n), r = w
            fq_exp_shift_on(2, xs, 1.5, &w, n)
            fq_exp_shift_on(0, xs, 1.5, &r, n)
            #expect(zip(w, r).filter { $0.bitPattern != $1.bitPattern }.count == 0, "n = \(n)")
        }
        fq_exp_shift_on(2, xs, 0, &wide, xs.count)
        #expect(zip(wide, ref).filter { $0.bitPattern != $1.bitPattern }.count == 0)
        var worstULP: Float = 0
        for (x, y) in zip(xs, ref) where x > -87 && x < 88 {
            let e = Float(Foundation.exp(Double(x)))
            worstULP = max(worstULP, abs(y - e) / e.ulp)
        }
        #expect(worstULP <= 2, "worst error \(worstULP) ulp")
        let nan = Float.nan
        var out: Float = 0
        fq_exp_shift([nan], 0, &out, 1)
        #expect(out.isNaN)
    }

    /// The AVX-512 maximum (lanes, then folded) on rows whose maximum is a signed zero, repeated, last,
    /// first, or beside NaN, and on causal-attention lengths: every path gives the same bits.
    @Test func softmaxMaximumEdgeCases() {
        var rows: [[Float]] = []
        for n in [31, 32, 33, 47, 64, 100] {
            var g = LCG(s: UInt64(n) + 11)
            let base = (0..<n).map { _ in -abs(g.next()) * 30 - 1 }
            var z = base; z[n / 2] = -0.0; z[n - 1] = 0.0; rows.append(z)
            var last = base; last[n - 1] = 5; rows.append(last)
            var first = base; first[0] = 5; first[n - 2] = 5; rows.append(first)
            var nan = base; nan[n / 3] = .nan; rows.append(nan)
            var nan0 = base; nan0[0] = .nan; rows.append(nan0)
        }
        for x in rows {
            var a = x, b = x
            fq_softmax_inplace_on(0, &a, x.count)
            fq_softmax_inplace_on(2, &b, x.count)
            #expect(a.map(\.bitPattern) == b.map(\.bitPattern), "\(x.prefix(4))… n = \(x.count)")
        }
    }

    @Test func softmaxAndLogSumExp() {
        for n in Self.sizes + [1023, 49152] {
            var g = LCG(s: UInt64(n))
            let x = (0..<n).map { _ in g.next() * 20 }
            let m = Double(x.max()!)
            let exact = m + log(x.reduce(0.0) { $0 + exp(Double($1) - m) })
            #expect(abs(fq_logsumexp(x, n) - exact) <= 1e-5)
            var a = x, b = x, c = x
            fq_softmax_inplace_on(1, &a, n)
            fq_softmax_inplace_on(0, &b, n)
            fq_softmax_inplace_on(2, &c, n)
            #expect(a.map(\.bitPattern) == b.map(\.bitPattern))
            #expect(c.map(\.bitPattern) == b.map(\.bitPattern))
            #expect(abs(a.reduce(0.0) { $0 + Double($1) } - 1) <= 1e-5)
        }
    }
}

/// FP8 activation quantization (FIREQ-METHOD.md §2.4): C paths against the Swift codec.
@Suite struct FP8ActivationTests {
    @Test func roundE4M3MatchesCodecEverywhere() {
        // Every E4M3 value, every midpoint (ties), their neighbours, and a log-uniform sweep.
        var xs: [Float] = []
        let values = (0..<127).map { FP8E4M3.decode(UInt8($0)) }
        for (a, b) in zip(values, values.dropFirst()) {
            let mid = (a + b) / 2
            xs += [a, mid, mid.nextUp, mid.nextDown, b]
        }
        var g = KernelTests.LCG(s: 11)
        for _ in 0..<200_000 {
            xs.append(Float(sign: .plus, exponent: Int(g.next() * 12) - 4, significand: 1 + abs(g.next())))
        }
        xs += [448, 448.5, 463.9, 464, 465, 1e6, 0, 0x1p-10, 0x1.8p-10, 0x1p-11]
        xs += xs.map { -$0 }
        var bad = 0
        for x in xs where fq_round_e4m3_ref(x).bitPattern != FP8E4M3.round(x).bitPattern { bad += 1 }
        #expect(bad == 0)
    }

    @Test func rowQuantizationPathsAgree() {
        for n in KernelTests.sizes + [576, 1536] {
            var g = KernelTests.LCG(s: UInt64(n) * 7)
            let x = (0..<n).map { _ in g.next() * Float(n % 5 + 1) * (n % 3 == 0 ? 1e-3 : 10) }
            var a = [Float](repeating: 0, count: n), b = a, c = a
            let sa = fq_quantize_fp8_row_on(1, x, n, &a), sb = fq_quantize_fp8_row_on(0, x, n, &b),
                sc = fq_quantize_fp8_row_on(2, x, n, &c)
            #expect(sa == sb && a.map(\.bitPattern) == b.map(\.bitPattern), "AVX2 n \(n)")
            #expect(sc == sb && c.map(\.bitPattern) == b.map(\.bitPattern), "AVX-512 n \(n)")
            let m = x.map(abs).max()!
            #expect(sa == m / 448)
            #expect(a.allSatisfy { FP8E4M3.round($0) == $0 && abs($0) <= 448 })
            #expect(a.map(abs).max()! == 448)  // the largest element maps to ±448 exactly
        }
        var z = [Float](repeating: 0, count: 5)
        #expect(fq_quantize_fp8_row([0, 0, 0, 0, 0], 5, &z) == 1 && z == [0, 0, 0, 0, 0])
    }
}

/// The attention inputs' INT4 K/V groups (kvquant.c) on every path against the Swift reference
/// `QuantizedBlocks.quantizeInt4`, bit for bit, with and without the (signed) scale search, over group sizes
/// of the recipes (16, 32, 64, 128) and odd ones, magnitudes from below the 2^-9 scale floor to
/// beyond 448·7, all-zero groups and exact ties (x/s = k + 0.5).
@Suite struct KVQuantizationTests {
    @Test func candidatesMatchTheCodec() {
        var g = KernelTests.LCG(s: 99)
        var values: [Float] = [0, 1e-7, 1e-5, 0x1p-9 * 7, 0x1p-9 * 7.5, 0x1p-6 * 7, 448 * 7, 448 * 8, 1e6, 3, 3.5, 7]
        for _ in 0..<2000 { values.append(abs(g.next()) * pow(10, Float(Int(abs(g.next()) * 12) - 6))) }
        var out = [Float](repeating: 0, count: 16)
        for a in values where a > 0 {
            let n = fq_int4_scale_candidates(a, &out)
            #expect(Array(out.prefix(n)) == FP8E4M3.int4ScaleCandidates(absmax: a), "a = \(a)")
        }
    }

    /// mode 0: guard scale; 1: scale search; 2: signed scale search (`attention.kv_signed_scales`).
    @Test(arguments: [0, 1, 2]) func groupPathsEqualTheSwiftReference(mode: Int) {
        let search = mode > 0
        var g = KernelTests.LCG(s: mode == 1 ? 7 : mode == 2 ? 9 : 8)
        for group in [1, 3, 8, 16, 17, 32, 64, 128] {
            for trial in 0..<40 {
                let scale = pow(10, Float(trial % 12 - 7))
                var v = (0..<(group * 6)).map { _ in g.next() * scale }
                if trial % 5 == 0 { for j in 0..<group { v[j] = 0 } }  // an all-zero group
                if trial % 7 == 1 { for j in 0..<group { v[group + j] = (Float(j % 16) - 8 + 0.5) * 0.25 } }  // ties at s = 0.25
                var want = v
                for k in 0..<6 {
                    want.withUnsafeMutableBufferPointer {
                        QuantizedBlocks.quantizeInt4(
                            $0.baseAddress! + k * group, count: group, search: search, signed: mode == 2)
                    }
                }
                for path: Int32 in [0, 1, 2] {
                    var got = v
                    fq_int4_groups_on(path, &got, got.count, group, Int32(mode))
                    #expect(
                        got.map(\.bitPattern) == want.map(\.bitPattern), "path \(path) group \(group) trial \(trial)")
                }
            }
        }
    }

    /// The values {8, 7, …, −7}·0.25 (largest magnitude positive) are INT4 exactly with s = −0.25
    /// (2 ↦ −8): the signed search returns them unchanged on every path; the unsigned search cannot
    /// (a positive scale's codes stop at 7 on the positive side).
    @Test func signedSearchRepresentsAPositiveExtremeExactly() {
        let v = (0..<16).map { Float(8 - $0) * 0.25 }
        for path: Int32 in [0, 1, 2] {
            var signed = v, unsigned = v
            fq_int4_groups_on(path, &signed, 16, 16, 2)
            fq_int4_groups_on(path, &unsigned, 16, 16, 1)
            #expect(signed == v, "path \(path): \(signed)")
            #expect(unsigned != v)
        }
        var ref = v
        ref.withUnsafeMutableBufferPointer {
            QuantizedBlocks.quantizeInt4($0.baseAddress!, count: 16, search: true, signed: true)
        }
        #expect(ref == v)
    }

    @Test func fp8RoundTripEqualsQuantizeTimesSigma() {
        var g = KernelTests.LCG(s: 5)
        for n in [1, 7, 32, 64, 128] {
            let x = (0..<n).map { _ in g.next() * 3 }
            var tmp = [Float](repeating: 0, count: n)
            let sigma = fq_quantize_fp8_row_ref(x, n, &tmp)
            let want = tmp.map { $0 * sigma }
            for path: Int32 in [0, 1, 2] {
                var v = x
                #expect(fq_fp8_roundtrip_on(path, &v, n) == sigma)
                #expect(v.map(\.bitPattern) == want.map(\.bitPattern), "path \(path) n \(n)")
            }
        }
    }
}
