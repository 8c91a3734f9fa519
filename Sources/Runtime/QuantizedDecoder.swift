import CFireQKernels
import Foundation
import Kernels
import LlamaReference

/// KV-cached single-token decoding on the INT4-FP8 runtime: the same numerics as
/// `QuantizedModel.hiddenStates` (FP8 activations, INT4×FP8 linears, post-RoPE S, FP8 Q, INT4 K/V
/// cached as their dequantized values), one token per step. Its linears and lm_head take the
/// single-row paths (the INT4 kernels decode the codes in registers; lm_head is a GEMV on its 16-bit
/// panels or its INT8 rows; all bit-identical to the GEMM); attention runs over the cached keys with a
/// max-shifted FP32 softmax, its heads split over the threads. A test pins its logits to the full
/// forward pass.
public final class QuantizedDecoder {
    public let model: QuantizedModel
    public let capacity: Int
    public private(set) var position = 0
    /// Per layer: keys transposed per KV head (kvHeads, headDim, capacity) and values (capacity, kvDim).
    private let keys: [FloatBuffer], values: [FloatBuffer]
    private let h: FloatBuffer, xn: FloatBuffer, qkv: FloatBuffer, att: FloatBuffer, gu: FloatBuffer, act: FloatBuffer,
        branch: FloatBuffer
    private let scratch: FloatBuffer, acc: FloatBuffer, scores: FloatBuffer

    public init(model: QuantizedModel, capacity: Int) {
        let c = model.config
        self.model = model
        self.capacity = capacity
        keys = (0..<c.layerCount).map { _ in FloatBuffer(count: capacity * c.kvDim) }
        values = (0..<c.layerCount).map { _ in FloatBuffer(count: capacity * c.kvDim) }
        let qkvDim = c.qDim + 2 * c.kvDim, I = c.intermediateSize, H = c.hiddenSize
        h = FloatBuffer(count: H); xn = FloatBuffer(count: H); qkv = FloatBuffer(count: qkvDim);
        att = FloatBuffer(count: c.qDim)
        gu = FloatBuffer(count: 2 * I); act = FloatBuffer(count: I); branch = FloatBuffer(count: H)
        scratch = FloatBuffer(count: max(H, I, c.qDim)); acc = FloatBuffer(count: max(2 * I, qkvDim, H))
        scores = FloatBuffer(count: c.headCount * capacity)
    }

    /// Feeds one token at the current position; returns its logits (vocab).
    public func step(_ token: Int32) -> [Float] {
        precondition(position < capacity, "decoder is full")
        let m = model, c = m.config, f = m.forward
        let D = c.headDim, half = D / 2
        m.embed([token], into: h.pointer)
        var cosT = [Float](repeating: 0, count: half), sinT = cosT, cosL = cosT, sinL = cosT
        f.globalRope.table(position: position, cos: &cosT, sin: &sinT)
        f.localRope.table(position: position, cos: &cosL, sin: &sinL)
        for (li, L) in m.layers.enumerated() {
            let sliding = c.slidingLayers[li]
            func run(
                _ lin: Int4FP8Linear, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                accumulate: Bool = false
            ) {
                lin.forward(
                    x: x, rows: 1, y: y, accumulate: accumulate, scratch: scratch.pointer, acc: acc.pointer,
                    activationsFP8: m.activationsFP8, outputBF16: m.outputBF16, threads: f.threads)
            }
            f.rmsNorm(h.pointer, rows: 1, weight: L.inputNorm.pointer, out: xn.pointer)
            run(L.qkv, xn.pointer, qkv.pointer)
            if let qn = L.qNorm, let kn = L.kNorm {
                f.headNorms(qkv.pointer, rows: 1, qNorm: qn.pointer, kNorm: kn.pointer)
            }
            for hh in 0..<(c.headCount + c.kvHeadCount) {
                Rope.rotate(qkv.pointer + hh * D, half: half, cos: sliding ? cosL : cosT, sin: sliding ? sinL : sinT)
            }
            m.quantizeAttentionInputs(L, layer: li, qkv: qkv.pointer, rows: 1, seqLen: 1, firstPosition: position)
            for j in 0..<c.kvDim { keys[li].pointer[j * capacity + position] = qkv.pointer[c.qDim + j] }
            (values[li].pointer + position * c.kvDim).update(from: qkv.pointer + c.qDim + c.kvDim, count: c.kvDim)
            attend(layer: li)
            /// h += lin(x): straight into h, or through `branch` and its norm (sandwich norms).
            func residual(_ lin: Int4FP8Linear, _ x: UnsafePointer<Float>, norm: FloatBuffer?) {
                guard c.sandwichNorms else { return run(lin, x, h.pointer, accumulate: true) }
                run(lin, x, branch.pointer)
                f.addBranch(branch.pointer, norm: norm, into: h.pointer, rows: 1)
            }
            residual(L.o, att.pointer, norm: L.attentionOutputNorm)
            f.rmsNorm(h.pointer, rows: 1, weight: L.mlpInputNorm.pointer, out: xn.pointer)
            run(L.gateUp, xn.pointer, gu.pointer)
            f.activate(gu.pointer, rows: 1, out: act.pointer)
            residual(L.down, act.pointer, norm: L.mlpOutputNorm)
        }
        f.rmsNorm(h.pointer, rows: 1, weight: m.finalNorm.pointer, out: xn.pointer)
        var logits = [Float](repeating: 0, count: c.vocabSize)
        logits.withUnsafeMutableBufferPointer { m.logits(hidden: xn.pointer, rows: 1, out: $0.baseAddress!) }
        position += 1
        return logits
    }

    /// Attention of the new query over the cached keys, in the summation order of the full pass.
    private func attend(layer li: Int) {
        let c = model.config, D = c.headDim, group = c.headCount / c.kvHeadCount
        let n = position + 1, scale = c.attentionScale
        let t0 = c.attentionWindow(layer: li).map { max(0, n - $0) } ?? 0  // first key the window keeps
        let q = SendablePointer(qkv.pointer), k = SendablePointer(keys[li].pointer),
            v = SendablePointer(values[li].pointer)
        let out = SendablePointer(att.pointer), sc = SendablePointer(scores.pointer)
        let cap = capacity, kvDim = c.kvDim
        Parallel.forEachChunk(c.headCount, chunk: 1, threads: n >= 32 ? model.forward.threads : 1) { items in
            for hq in items {
                let g = hq / group, s = sc.p + hq * cap
                fq_attn_scores(q.p + hq * D, k.p + g * D * cap + t0, cap, D, n - t0, scale, s)
                fq_softmax_inplace(s, n - t0)
                fq_attn_pv(s, n - t0, v.p + t0 * kvDim + g * D, kvDim, D, out.p + hq * D)
            }
        }
    }
}
