import CFireQKernels
import Foundation
import Kernels
import LowPrecision
import Quantization
import Runtime
import Testing

/// The INT8 lm_head (recipe `lm_head.format: "int8"`; Formats/runtime-numerics.md "INT8 lm_head").
@Suite struct Int8HeadTests {
    /// The row quantization by hand: s = max|w| / 127 (1 for a zero row), q = round half to even;
    /// a group of 32 inputs whose values are small gets a shift j: q = round(w / s · 2^j).
    @Test func rowQuantizationByHand() {
        let w: [Float] = [
            127, -3.5, 2.5, -0.4,
            0, 0, 0, 0,
            254, 1, -1, 3
        ]
        var codes = [Int8](repeating: 99, count: fq_int8_codes_bytes(3, 4)), scales = [Float](repeating: -1, count: 3)
        var shifts = [UInt8](repeating: 99, count: fq_int8_shifts_bytes(3, 4))
        fq_int8_quantize(w, 3, 4, &codes, &shifts, &scales)
        #expect(shifts.allSatisfy { $0 == 0 }, "every group holds its row's largest value (or nothing)")
        #expect(scales == [1, 1, 2])
        // panel layout: codes[k][32]
        func q(_ r: Int, _ k: Int) -> Int8 { codes[k * 32 + r] }
        #expect((0..<4).map { q(0, $0) } == [127, -4, 2, 0])
        #expect((0..<4).map { q(1, $0) } == [0, 0, 0, 0])
        #expect((0..<4).map { q(2, $0) } == [127, 0, 0, 2])
        #expect(
            codes.count == 32 * 4 && (3..<32).allSatisfy { r in (0..<4).allSatisfy { q(r, $0) == 0 } },
            "rows beyond n are zero")
        var row = [Float](repeating: 0, count: 4)
        fq_int8_row(codes, shifts, scales, 4, 2, &row)
        #expect(row == [254, 0, 0, 4])
        // two groups: the second's largest |w/s| is 0.7, so j = 7 (0.7·128 = 89.6 ≤ 127 < 0.7·256)
        var w2 = [Float](repeating: 0, count: 64)
        w2[0] = 127; w2[32] = 0.7; w2[33] = -0.3
        var c2 = [Int8](repeating: 0, count: fq_int8_codes_bytes(1, 64)),
            h2 = [UInt8](repeating: 0, count: fq_int8_shifts_bytes(1, 64))
        var s2: [Float] = [0]
        fq_int8_quantize(w2, 1, 64, &c2, &h2, &s2)
        #expect(s2 == [1] && h2[0] == 0 && h2[32] == 7)
        #expect(c2[0] == 127 && c2[32 * 32] == 90 && c2[33 * 32] == -38)
        var row2 = [Float](repeating: .nan, count: 64)
        fq_int8_row(c2, h2, s2, 64, 0, &row2)
        #expect(row2[0] == 127 && row2[32] == 0.703125 && row2[33] == -0.296875 && row2.filter { $0 != 0 }.count == 3)
        // the same from binary16 and bfloat16 storage
        for bf16 in [false, true] {
            let h = w.map { bf16 ? BF16.encode($0) : FP16.encode($0) }
            var c3 = [Int8](repeating: 0, count: codes.count), s3 = [Float](repeating: 0, count: 3)
            var h3 = [UInt8](repeating: 9, count: shifts.count)
            fq_int8_quantize16(h, bf16 ? 1 : 0, 3, 4, &c3, &h3, &s3)
            #expect(c3 == codes && s3 == scales && h3 == shifts)
        }
        // the input: BF16 round to nearest even, +0 below 2^-100
        let h: [Float] = [1 + 0x1p-8, 1 + 0x1p-8 + 0x1p-9, 0x1p-101, -0x1p-100, 3]
        var x = [Float](repeating: .nan, count: h.count)
        fq_int8_round_input(h, h.count, &x)
        #expect(x.map(\.bitPattern) == [Float(1), 1 + 0x1p-7, 0, -0x1p-100, 3].map(\.bitPattern))
    }

    /// The pair order by hand: x = (1, 2^24, −2^24, 1), a row of ones (q = 127, s = FP32(1/127)).
    /// Pair order: 127·2^24 + 127 → 127·2^24 + 128; + 127 → 127·2^24 + 256; − 127·2^24 → 256.
    /// The plain k order would give 127 + 127·2^24 → 127·2^24 + 128; − 127·2^24 → 128; + 127 → 255.
    @Test func pairOrderByHand() {
        let k = 4, n = 1
        let w: [Float] = [1, 1, 1, 1], x: [Float] = [1, 0x1p24, -0x1p24, 1]
        var codes = [Int8](repeating: 0, count: fq_int8_codes_bytes(n, k)), scales: [Float] = [0]
        var shifts = [UInt8](repeating: 0, count: fq_int8_shifts_bytes(n, k))
        fq_int8_quantize(w, n, k, &codes, &shifts, &scales)
        #expect(scales[0] == Float(1) / 127 && (0..<4).allSatisfy { codes[$0 * 32] == 127 })
        for path: Int32 in [-1, 0, 1, 2, 3] {
            for m in [1, 2] {  // the one-row (decode) kernels and the panel kernels
                var y = [Float](repeating: .nan, count: m)
                let xs = Array([[Float]](repeating: x, count: m).joined())
                fq_int8_gemm_on(path, xs, k, m, codes, shifts, scales, n, k, 0, 1, &y, 1)
                #expect(y.allSatisfy { $0 == 256 * (Float(1) / 127) }, "path \(path) rows \(m): \(y)")
            }
        }
        #expect(256 * (Float(1) / 127) != 255 * (Float(1) / 127))
    }

    static func reference(x: [Float], m: Int, w: [Float], n: Int, k: Int) -> [Float] {
        // quantization and the chain written from the spec, independently of the C code
        var out = [Float](repeating: 0, count: m * n)
        for r in 0..<n {
            let row = w[(r * k)..<((r + 1) * k)]
            let a = row.map(abs).max()!
            let s: Float = a > 0 ? a / 127 : 1
            var q = [Float]()
            for g0 in stride(from: 0, to: k, by: 32) {
                let grp = row[(row.startIndex + g0)..<(row.startIndex + min(k, g0 + 32))]
                let v = grp.map { abs($0 / s) }.max()!
                var j = 0
                if v > 0 { while j < 15 && v * Float(sign: .plus, exponent: j + 1, significand: 1) <= 127 { j += 1 } }
                let up = Float(sign: .plus, exponent: j, significand: 1),
                    down = Float(sign: .plus, exponent: -j, significand: 1)
                q += grp.map { max(-127, min(127, ($0 / s * up).rounded(.toNearestOrEven))) * down }
            }
            for i in 0..<m {
                let xi = x[(i * k)..<((i + 1) * k)].map { abs($0) < 0x1p-100 ? Float(0) : BF16.round($0) }
                var acc: Float = 0
                for kp in 0..<(k / 2) {
                    acc = acc.addingProduct(xi[2 * kp + 1], q[2 * kp + 1])
                    acc = acc.addingProduct(xi[2 * kp], q[2 * kp])
                }
                out[i * n + r] = acc * s
            }
        }
        return out
    }

    /// Every kernel path (AVX-512 BF16, AVX-512F, AVX2, portable — a path the CPU lacks falls back)
    /// equals the chain written from the spec bit for bit, split over panels, for one row (decode)
    /// and many; and the pair order is what is pinned (the plain k order differs somewhere).
    @Test(arguments: [(1, 70, 64), (1, 100, 576), (3, 33, 80), (13, 96, 576), (29, 70, 128), (2, 64, 64)])
    func pathsEqualReference(m: Int, n: Int, k: Int) {
        var g = KernelTests.LCG(s: UInt64(m * 7919 + n * 31 + k))
        let w = (0..<(n * k)).map { _ in g.next() * (g.next() > 0.995 ? 8 : 0.05) }  // some groups without an outlier: shifts > 0
        let x = (0..<(m * k)).map { i -> Float in
            let v = g.next() * (g.next() > 0.9 ? 40 : 2)
            return i % 17 == 0 ? v * 0x1p-110 : v  // some inputs below the flush threshold
        }
        let want = Self.reference(x: x, m: m, w: w, n: n, k: k)
        var codes = [Int8](repeating: 0, count: fq_int8_codes_bytes(n, k)), scales = [Float](repeating: 0, count: n)
        var shifts = [UInt8](repeating: 0, count: fq_int8_shifts_bytes(n, k))
        fq_int8_quantize(w, n, k, &codes, &shifts, &scales)
        var xr = [Float](repeating: 0, count: m * k)
        fq_int8_round_input(x, m * k, &xr)
        #expect(shifts.contains { $0 > 0 } && shifts.contains(0), "both shifted and unshifted groups")
        let panels = (n + 31) / 32
        for path: Int32 in [-1, 0, 1, 2, 3] {
            var y = [Float](repeating: .nan, count: m * n)
            fq_int8_gemm_on(path, xr, k, m, codes, shifts, scales, n, k, 0, panels / 2, &y, n)
            fq_int8_gemm_on(path, xr, k, m, codes, shifts, scales, n, k, panels / 2, panels, &y, n)
            let bad = zip(want, y).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(bad == 0, "m \(m) n \(n) k \(k) path \(path) (resolved \(fq_int8_level(path))): \(bad) differ")
        }
        // the class, threaded, from FP32 and from binary16 storage of the same values
        let head = w.withUnsafeBufferPointer { Int8Head(rowMajor: $0.baseAddress!, rows: n, cols: k) }
        var y = [Float](repeating: .nan, count: m * n)
        head.logits(hidden: x, count: m, out: &y, ldo: n, threads: 2)
        #expect(zip(want, y).allSatisfy { $0.bitPattern == $1.bitPattern })
    }

    /// Recipe key: canonical JSON only when set, refusals name the key.
    @Test func recipeKey() throws {
        let base = try Recipe.load(TestPaths.root + "/Calibration/recipes/fireq.json")
        let int8 = try Recipe.load(TestPaths.root + "/Calibration/recipes/fireq-int8-head.json")
        #expect(!base.lmHeadInt8 && int8.lmHeadInt8)
        #expect(!base.canonicalJSON.contains("lm_head"))
        #expect(int8.canonicalJSON.contains("\"lm_head\":{\"format\":\"int8\"}"))
        var same = int8; same.name = base.name; same.description = base.description; same.lmHeadInt8 = false
        #expect(same.canonicalJSON == base.canonicalJSON, "the shipped recipe is fireq.json plus the lm_head key")
        let reparsed = try Recipe.parse(Data(int8.canonicalJSON.utf8), path: "canonical")
        #expect(reparsed.canonicalJSON == int8.canonicalJSON)
        for (text, key) in [
            ("{\"lm_head\": {\"format\": \"int4\"}}", "lm_head.format"),
            ("{\"lm_head\": {\"bits\": 8}}", "lm_head.bits"),
            ("{\"lm_head\": \"int8\"}", "lm_head")
        ] {
            #expect(throws: QuantizationError.self) { try Recipe.parse(Data(text.utf8), path: "r.json") }
            do { _ = try Recipe.parse(Data(text.utf8), path: "r.json") } catch {
                #expect("\(error)".contains(key), "\(error)")
            }
        }
    }
}
