import CFireQKernels
import Foundation
import Kernels

/// KV-cached incremental decoding for a batch of B sequences that advance together, one token
/// per step (the path `fireq calibrate --generate` samples with). Numerically it is the same
/// FP32 model as `LlamaModel.hiddenStates` (same GEMM kernel; attention over the cached keys in
/// FP32 with a max-shifted softmax); a test pins its logits to the full forward pass.
public final class LlamaDecoder {
    public let model: LlamaModel
    public let batch: Int
    public let capacity: Int
    /// Per layer: keys and values, (batch, capacity, kvDim) each.
    private let keys: [FloatBuffer]
    private let values: [FloatBuffer]
    public private(set) var position = 0
    private let h: FloatBuffer, xn: FloatBuffer, qkv: FloatBuffer, att: FloatBuffer, gu: FloatBuffer, act: FloatBuffer,
        branch: FloatBuffer
    private let scores: FloatBuffer  // (batch·heads, capacity)

    public init(model: LlamaModel, batch: Int, capacity: Int) {
        let c = model.config
        self.model = model
        self.batch = batch
        self.capacity = capacity
        keys = (0..<c.layerCount).map { _ in FloatBuffer(count: batch * capacity * c.kvDim) }
        values = (0..<c.layerCount).map { _ in FloatBuffer(count: batch * capacity * c.kvDim) }
        h = FloatBuffer(count: batch * c.hiddenSize)
        xn = FloatBuffer(count: batch * c.hiddenSize)
        qkv = FloatBuffer(count: batch * (c.qDim + 2 * c.kvDim))
        att = FloatBuffer(count: batch * c.qDim)
        gu = FloatBuffer(count: batch * 2 * c.intermediateSize)
        act = FloatBuffer(count: batch * c.intermediateSize)
        branch = FloatBuffer(count: batch * c.hiddenSize)
        scores = FloatBuffer(count: batch * c.headCount * capacity)
    }

    /// Feeds one token per sequence at the current position; returns logits (batch, vocab).
    public func step(_ tokens: [Int32]) -> [Float] {
        precondition(tokens.count == batch && position < capacity, "decoder is full or batch mismatch")
        let c = model.config, f = model.forward
        let H = c.hiddenSize, qkvDim = c.qDim + 2 * c.kvDim, I = c.intermediateSize, D = c.headDim
        model.embed(tokens, into: h.pointer)
        let half = D / 2
        var cosT = [Float](repeating: 0, count: half), sinT = cosT, cosL = cosT, sinL = cosT
        f.globalRope.table(position: position, cos: &cosT, sin: &sinT)
        f.localRope.table(position: position, cos: &cosL, sin: &sinL)
        for (li, L) in model.layers.enumerated() {
            let sliding = c.slidingLayers[li]
            f.rmsNorm(h.pointer, rows: batch, weight: L.inputNorm.pointer, out: xn.pointer)
            LinearAlgebra.linear(
                x: xn.pointer, ldx: H, m: batch, w: L.qkv, y: qkv.pointer, ldy: qkvDim, threads: f.threads)
            if let b = L.qkvBias {
                for r in 0..<batch { for j in 0..<qkvDim { qkv.pointer[r * qkvDim + j] += b.pointer[j] } }
            }
            if let qn = L.qNorm, let kn = L.kNorm {
                f.headNorms(qkv.pointer, rows: batch, qNorm: qn.pointer, kNorm: kn.pointer)
            }
            for r in 0..<batch {
                let row = qkv.pointer + r * qkvDim
                for hh in 0..<(c.headCount + c.kvHeadCount) {
                    Rope.rotate(row + hh * D, half: half, cos: sliding ? cosL : cosT, sin: sliding ? sinL : sinT)
                }
                (keys[li].pointer + (r * capacity + position) * c.kvDim).update(from: row + c.qDim, count: c.kvDim)
                (values[li].pointer + (r * capacity + position) * c.kvDim).update(
                    from: row + c.qDim + c.kvDim, count: c.kvDim)
            }
            attend(layer: li)
            /// h += w·x: straight into h, or through `branch` and its norm (sandwich norms).
            func residual(_ w: PackedMatrix, _ x: UnsafePointer<Float>, ldx: Int, norm: FloatBuffer?) {
                guard c.sandwichNorms else {
                    return LinearAlgebra.linear(
                        x: x, ldx: ldx, m: batch, w: w, y: h.pointer, ldy: H, accumulate: true, threads: f.threads)
                }
                LinearAlgebra.linear(x: x, ldx: ldx, m: batch, w: w, y: branch.pointer, ldy: H, threads: f.threads)
                f.addBranch(branch.pointer, norm: norm, into: h.pointer, rows: batch)
            }
            residual(L.o, att.pointer, ldx: c.qDim, norm: L.attentionOutputNorm)
            f.rmsNorm(h.pointer, rows: batch, weight: L.mlpInputNorm.pointer, out: xn.pointer)
            LinearAlgebra.linear(
                x: xn.pointer, ldx: H, m: batch, w: L.gateUp, y: gu.pointer, ldy: 2 * I, threads: f.threads)
            f.activate(gu.pointer, rows: batch, out: act.pointer)
            residual(L.down, act.pointer, ldx: I, norm: L.mlpOutputNorm)
        }
        f.rmsNorm(h.pointer, rows: batch, weight: model.finalNorm.pointer, out: xn.pointer)
        var logits = [Float](repeating: 0, count: batch * c.vocabSize)
        logits.withUnsafeMutableBufferPointer { model.logits(hidden: xn.pointer, rows: batch, out: $0.baseAddress!) }
        position += 1
        return logits
    }

    private func attend(layer li: Int) {
        let c = model.config, D = c.headDim, qkvDim = c.qDim + 2 * c.kvDim, group = c.headCount / c.kvHeadCount
        let n = position + 1, scale = c.attentionScale
        let t0 = c.attentionWindow(layer: li).map { max(0, n - $0) } ?? 0  // first key the window keeps
        let q = SendablePointer(qkv.pointer), k = SendablePointer(keys[li].pointer),
            v = SendablePointer(values[li].pointer)
        let out = SendablePointer(att.pointer), sc = SendablePointer(scores.pointer)
        let cap = capacity, kvDim = c.kvDim, qDim = c.qDim, heads = c.headCount
        Parallel.forEachChunk(batch * heads, chunk: 1, threads: model.forward.threads) { items in
            for item in items {
                let r = item / heads, hq = item % heads, g = hq / group
                let qv = q.p + r * qkvDim + hq * D
                let s = sc.p + item * cap
                for t in t0..<n {
                    let kv = k.p + (r * cap + t) * kvDim + g * D
                    var dot: Float = 0
                    for d in 0..<D { dot += qv[d] * kv[d] }
                    s[t - t0] = dot * scale
                }
                fq_softmax_inplace(s, n - t0)
                let o = out.p + r * qDim + hq * D
                for d in 0..<D { o[d] = 0 }
                for t in t0..<n {
                    let vv = v.p + (r * cap + t) * kvDim + g * D, p = s[t - t0]
                    for d in 0..<D { o[d] += p * vv[d] }
                }
            }
        }
    }
}

/// Temperature / top-p (nucleus) sampling from a logit row with a caller-owned generator.
public enum Sampler {
    public static func sample<G: RandomNumberGenerator>(
        _ logits: UnsafeBufferPointer<Float>, temperature: Float, topP: Float, using g: inout G
    ) -> Int32 {
        if temperature <= 0 { return Int32(logits.indices.max { logits[$0] < logits[$1] }!) }
        let m = logits.max()!
        var probs = logits.map { Double(expf(($0 - m) / temperature)) }
        let total = probs.reduce(0, +)
        for i in probs.indices { probs[i] /= total }
        // Sort only the plausible candidates (p ≥ 1e-7 of the total); fall back to all tokens when
        // they do not reach the nucleus mass (the result is the same as sorting everything).
        func nucleus(_ candidates: [Int]) -> ([Int], Double)? {
            let order = candidates.sorted { probs[$0] > probs[$1] || (probs[$0] == probs[$1] && $0 < $1) }
            var kept: [Int] = [], mass = 0.0
            for i in order { kept.append(i); mass += probs[i]; if mass >= Double(topP) { return (kept, mass) } }
            return nil
        }
        let (kept, mass) =
            nucleus(probs.indices.filter { probs[$0] >= 1e-7 })
            ?? nucleus(Array(probs.indices)) ?? (Array(probs.indices), probs.reduce(0, +))
        let u = Double(g.next() >> 11) / Double(1 << 53) * mass
        var acc = 0.0
        for i in kept { acc += probs[i]; if u < acc { return Int32(i) } }
        return Int32(kept.last!)
    }
}
