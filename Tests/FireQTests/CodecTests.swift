import CFireQKernels
import Foundation
import LowPrecision
import Testing

/// Codecs against PyPI ml_dtypes (Scripts/make_codec_golden.py, ≥ 1 M inputs incl. ties,
/// subnormals, overflow, ±Inf and NaN) and hand-checked bit patterns.
@Suite struct CodecTests {
    struct Golden {
        let inputs: [Float]
        let f16: [UInt16], bf16: [UInt16], e4m3: [UInt8], e4m3Sat: [UInt8], e5m2: [UInt8], e5m2Sat: [UInt8]
        let decodeE4M3: [Float], decodeE5M2: [Float], decodeF16: [Float]
    }

    static func load() throws -> Golden {
        try TestPaths.require(
            TestPaths.codecGolden,
            hint: "run .cache/venv/bin/python Scripts/make_codec_golden.py \(TestPaths.codecGolden) (CI does)")
        let d = TestPaths.read(TestPaths.codecGolden)
        #expect(d.prefix(8) == Data("FQCODEC1".utf8))
        let n = Int(d.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self) })
        var off = 12
        func take<T>(_ count: Int, _: T.Type) -> [T] {
            let size = MemoryLayout<T>.size * count
            let arr = d.withUnsafeBytes { raw in
                (0..<count).map { raw.loadUnaligned(fromByteOffset: off + $0 * MemoryLayout<T>.size, as: T.self) }
            }
            off += size
            return arr
        }
        return Golden(
            inputs: take(n, Float.self), f16: take(n, UInt16.self), bf16: take(n, UInt16.self),
            e4m3: take(n, UInt8.self), e4m3Sat: take(n, UInt8.self), e5m2: take(n, UInt8.self),
            e5m2Sat: take(n, UInt8.self),
            decodeE4M3: take(256, Float.self), decodeE5M2: take(256, Float.self), decodeF16: take(65536, Float.self))
    }

    static func same(_ a: Float, _ b: Float) -> Bool { (a.isNaN && b.isNaN) || a.bitPattern == b.bitPattern }

    @Test func decodeEveryCode() throws {
        let g = try Self.load()
        for c in 0..<256 {
            #expect(Self.same(FP8E4M3.decode(UInt8(c)), g.decodeE4M3[c]), "e4m3 code \(c)")
            #expect(Self.same(FP8E5M2.decode(UInt8(c)), g.decodeE5M2[c]), "e5m2 code \(c)")
        }
        var bad = 0
        for c in 0..<65536 where !Self.same(FP16.decode(UInt16(c)), g.decodeF16[c]) { bad += 1 }
        #expect(bad == 0)
        // The C widening (F16C / AVX2 where available) equals the reference for every code.
        let codes = (0..<65536).map { UInt16($0) }
        var fast = [Float](repeating: 0, count: 65536), ref = [Float](repeating: 0, count: 65536)
        fq_f16_to_f32(codes, &fast, 65536); fq_f16_to_f32_ref(codes, &ref, 65536)
        #expect(zip(fast, ref).allSatisfy { Self.same($0, $1) })
        fq_bf16_to_f32(codes, &fast, 65536); fq_bf16_to_f32_ref(codes, &ref, 65536)
        #expect(zip(fast, ref).allSatisfy { Self.same($0, $1) })
        #expect(zip(fast, codes).allSatisfy { Self.same($0, BF16.decode($1)) })
    }

    @Test func encodeMatchesMLDtypes() throws {
        let g = try Self.load()
        #expect(g.inputs.count >= 1_000_000)
        var mismatches: [String: Int] = [:]
        var firstBad: [String: Float] = [:]
        func check(_ name: String, _ ok: Bool, _ x: Float) {
            if !ok { mismatches[name, default: 0] += 1; if firstBad[name] == nil { firstBad[name] = x } }
        }
        for (i, x) in g.inputs.enumerated() {
            let f16 = FP16.encode(x)
            check("f16", f16 == g.f16[i] || (FP16.decode(f16).isNaN && FP16.decode(g.f16[i]).isNaN), x)
            let bf = BF16.encode(x)
            check("bf16", bf == g.bf16[i] || (BF16.decode(bf).isNaN && BF16.decode(g.bf16[i]).isNaN), x)
            for (name, mine, want, dec) in [
                ("e4m3", FP8E4M3.encode(x, saturating: false), g.e4m3[i], FP8E4M3.decode),
                ("e4m3-sat", FP8E4M3.encode(x, saturating: true), g.e4m3Sat[i], FP8E4M3.decode),
                ("e5m2", FP8E5M2.encode(x, saturating: false), g.e5m2[i], FP8E5M2.decode),
                ("e5m2-sat", FP8E5M2.encode(x, saturating: true), g.e5m2Sat[i], FP8E5M2.decode)
            ] as [(String, UInt8, UInt8, (UInt8) -> Float)] {
                check(name, mine == want || (dec(mine).isNaN && dec(want).isNaN), x)
            }
        }
        #expect(mismatches.isEmpty, "mismatches \(mismatches), first inputs \(firstBad)")
    }

    /// Bit patterns checked by hand (FIREQ-METHOD.md §1, §2.5).
    @Test func handCheckedValues() {
        #expect(FP8E4M3.encode(448) == 0x7E)
        #expect(FP8E4M3.encode(1000) == 0x7E)  // saturates
        #expect(FP8E4M3.encode(1000, saturating: false) == 0x7F)  // NaN: no Inf in e4m3fn
        #expect(FP8E4M3.encode(464) == 0x7E)  // tie between 448 and 480 → even (448)
        #expect(FP8E4M3.encode(0x1p-9) == 0x01)  // smallest subnormal
        #expect(FP8E4M3.encode(0x1p-10) == 0x00)  // tie to even → 0
        #expect(FP8E4M3.encode(0x1.8p-10) == 0x01)  // 0.75 quantum → 1
        #expect(FP8E4M3.encode(-.infinity) == 0xFE)
        #expect(FP8E4M3.round(7 * 1.125) == 8)  // §2.5: q=7, s=1.125 → 7.875 → 8
        #expect(FP8E4M3.decode(0x7F).isNaN && FP8E4M3.decode(0xFF).isNaN)
        #expect(FP16.encode(65520) == 0x7C00)  // overflow → Inf
        #expect(FP16.encode(1) == 0x3C00)
        #expect(BF16.encode(1.00390625) == 0x3F80)  // tie → even
        #expect(BF16.encode(1.01171875) == 0x3F82)  // tie → even (up)
        #expect(FP8E5M2.encode(57344) == 0x7B && FP8E5M2.encode(.infinity) == 0x7C)
    }
}
