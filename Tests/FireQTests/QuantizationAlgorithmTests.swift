import Foundation
import JSONSupport
import LlamaReference
import LowPrecision
import ModelDescription
import Quantization
import Testing

/// FIREQ-METHOD.md §2–3 algorithms on crafted inputs with hand-computed answers.
@Suite struct QuantizationAlgorithmTests {
    /// 7·2^-9: group absmax below which a/7 underflows E4M3.
    static let t: Float = 7 * 0x1p-9

    @Test func powerOfTwoStopsBeforeOverflowAndMinimisesSlack() {
        // Groups of 4: a big group (absmax 100) and a tiny one (0.001). Slack shrinks with m,
        // m = 8 would make the big group 800 > 448, so the search stops and keeps m = 4.
        let w: [Float] = [100, 1, -2, 3, 0.001, 0, 0, -0.0005]
        #expect(Int4Groups.powerOfTwoScale(w, rows: 1, k: 8, groupSize: 4) == 4)
    }

    @Test func powerOfTwoTakesSmallestMultiplierWithLeastSlack() {
        // Tiny group 0.004: slack at m = 1, 2 is (t − 0.004)/t, (t − 0.008)/t; at m = 4 it is 0
        // (0.016 ≥ t = 0.01367) and stays 0 up to m = 256 (the 1.0 group reaches 256 ≤ 448).
        // The least slack (0) is first reached at m = 4.
        let w: [Float] = [1, 0.5, 0, 0, 0.004, 0, 0, 0]
        #expect(Int4Groups.powerOfTwoScale(w, rows: 1, k: 8, groupSize: 4) == 4)
        // No underflow at all: every m has slack 0, so the smallest, 1.
        #expect(Int4Groups.powerOfTwoScale([1, 2, 3, 4], rows: 1, k: 4, groupSize: 4) == 1)
        // Even m = 1 overflows: P = 1.
        #expect(Int4Groups.powerOfTwoScale([1000, 0, 0, 0.001], rows: 1, k: 4, groupSize: 2) == 1)
        // Dead groups: the 1e-5 guard applies to the absmax of m·W, so their slack is the same for
        // every m and they do not push P up: the smallest m, 1.
        #expect(Int4Groups.powerOfTwoScale([0, 0, 0, 0], rows: 1, k: 4, groupSize: 2) == 1)
        // A group at 0.001 and nothing large: slack falls until 0.001·m ≥ t, first at m = 16.
        #expect(Int4Groups.powerOfTwoScale([0.001, 0, 0, 0], rows: 1, k: 4, groupSize: 4) == 16)
    }

    @Test func int4GroupQuantization() {
        // a = 0.7 → a/7 = 0.1 → E4M3 0.1015625 (1.101b·2^-4); q = rne(W/s) = 7, −3, 1, 0.
        let qw = Int4Groups.quantize([0.7, -0.35, 0.1, 0, 1e-6, 0, 0, 0], rows: 1, k: 8, groupSize: 4)
        #expect(qw.scales == [0.1015625, 0x1p-9])  // tiny group: 1e-5/7 underflows, raised to 2^-9
        #expect(qw.q == [7, -3, 1, 0, 0, 0, 0, 0])
        // Dequantized exactly (q·s) and with the FP8 re-rounding of §2.5:
        // 7·0.1015625 = 0.7109375 → 0.6875; −3·0.1015625 = −0.3046875 → −0.3125.
        #expect(Int4Groups.dequantize(qw, fp8Rerounding: false)[0...2] == [0.7109375, -0.3046875, 0.1015625])
        #expect(Int4Groups.dequantize(qw, fp8Rerounding: true)[0...2] == [0.6875, -0.3125, 0.1015625])
        // Clamping to [−8, 7]: a = 8 → s = E4M3(8/7 = 1.142857) = 1.125; −8/1.125 = −7.11 → −7, 8/1.125 = 7.11 → 7.
        let c = Int4Groups.quantize([8, -8, 4, 0], rows: 1, k: 4, groupSize: 4)
        #expect(c.scales == [1.125] && c.q == [7, -7, 4, 0])
        // §2.5's example: q = 7, s = 1.125·2^e → 7.875·2^e → 8·2^e after FP8 re-rounding.
        #expect(Int4Groups.dequantize(c, fp8Rerounding: true)[0] == 8)
        // σ_BF16 variant: BF16 scales, no FP8 floor.
        let b = Int4Groups.quantize([0.7, 0, 0, 0], rows: 1, k: 4, groupSize: 4, scaleFormat: .bf16)
        #expect(b.scales == [BF16.round(0.1)])
    }

    @Test func channelScales() {
        // Column means of |W|: 2, 2, 0 → s = c / mean = 0.25, 0.25, and 1 for the dead channel.
        #expect(Smoothing.channelScales([1, -2, 0, 3, 2, 0], rows: 2, k: 3, c: 0.5) == [0.25, 0.25, 1])
    }

    @Test func postRopeChannelsIncludePartnersWithoutDuplicates() {
        // D = 8: partners are d ± 4. Top-2 by absmax: 1 (5.0) and 6 (4.0) → partners 5 and 2.
        let head0: [Float] = [0.1, 5, 0.2, 0.3, 0.4, 0.5, 4, 0.6]
        let head1: [Float] = [9, 0, 0, 0, 8, 0, 0, 0]
        let m = head0 + head1
        let sel = Smoothing.postRopeChannels(absmax: m, kvHeads: 2, headDim: 8, topK: 2)
        #expect(sel[0] == [1, 2, 5, 6])
        // Head 1: the top-2 (0 and 4) are each other's partners → 2 channels, flat indices 8 + d.
        #expect(sel[1] == [8, 12])
        let expected: [Float] = [Float(8) / 5, Float(8) / 0.2, Float(8) / 0.5, Float(8) / 4]
        #expect(Smoothing.postRopeKeyScales(absmax: m, channels: sel[0], beta: 8) == expected)
    }

    /// Pre-RoPE factors leave every q·k unchanged after RoPE at random positions (≤ 1e-5 rel).
    @Test func preRopeFactorsKeepScoresAfterRope() throws {
        let json =
            #"{"architectures":["LlamaForCausalLM"],"hidden_size":256,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":64,"rope_theta":100000.0,"vocab_size":10}"#
        let c = try ModelConfig(json: try JSONValueParse(json), path: "t")
        var g = SystemRandomNumberGenerator()
        let D = 64, half = 32
        let r = (0..<(2 * half)).map { _ in Float.random(in: 0.1...30, using: &g) }
        let nk = Smoothing.preRopeKeyFactors(
            pairNormMax: r, kvHeads: 2, headDim: D, alpha: 8, excluded: [3, 3 + 32, 64 + 7, 64 + 39])
        #expect(nk[3] == 1 && nk[35] == 1 && nk[71] == 1 && nk[103] == 1 && nk[0] == 8 / r[0] && nk[32] == 8 / r[0])
        let nq = Smoothing.queryFactors(keyFactors: nk, heads: 4, kvHeads: 2, headDim: D)
        let rope = Rope(config: c)
        var worst = 0.0
        for _ in 0..<50 {
            let hq = Int.random(in: 0..<4, using: &g), hk = hq / 2
            var q = (0..<D).map { _ in Float.random(in: -4...4, using: &g) },
                k = (0..<D).map { _ in Float.random(in: -4...4, using: &g) }
            var qs = (0..<D).map { q[$0] * nq[hq * D + $0] }, ks = (0..<D).map { k[$0] * nk[hk * D + $0] }
            let pq = Int.random(in: 0..<4096, using: &g), pk = Int.random(in: 0...pq, using: &g)
            var cq = [Float](repeating: 0, count: half), sq = cq, ck = cq, sk = cq
            rope.table(position: pq, cos: &cq, sin: &sq); rope.table(position: pk, cos: &ck, sin: &sk)
            for v in [0, 1] {
                if v == 0 {
                    q.withUnsafeMutableBufferPointer { Rope.rotate($0.baseAddress!, half: half, cos: cq, sin: sq) }
                    k.withUnsafeMutableBufferPointer { Rope.rotate($0.baseAddress!, half: half, cos: ck, sin: sk) }
                } else {
                    qs.withUnsafeMutableBufferPointer { Rope.rotate($0.baseAddress!, half: half, cos: cq, sin: sq) }
                    ks.withUnsafeMutableBufferPointer { Rope.rotate($0.baseAddress!, half: half, cos: ck, sin: sk) }
                }
            }
            let a = zip(q, k).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let b = zip(qs, ks).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let scale = zip(q, k).reduce(0.0) { $0 + abs(Double($1.0) * Double($1.1)) }
            worst = max(worst, abs(a - b) / scale)
        }
        #expect(worst <= 1e-5, "worst relative change \(worst)")
    }
}

func JSONValueParse(_ s: String) throws -> JSONValue { try JSONParser.parse(s) }
