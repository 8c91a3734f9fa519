import CFireQKernels
import Foundation

/// The exact FP32 forward pass of a Llama-family decoder, one layer at a time (so calibration
/// can stream layers). Matches transformers `LlamaForCausalLM` (eager attention, FP32):
/// RMSNorm, rotate_half RoPE, GQA causal attention, SwiGLU MLP.
///
/// Activations are (rows, features) with rows = batch × seqLen in (sequence, position) order;
/// every sequence of a batch starts at position 0.
public struct LlamaForward: Sendable {
    public let config: LlamaConfig
    public let rope: Rope
    public let threads: Int
    /// Query rows per attention block (causal: a block reads keys 0..<its end only).
    static let attentionBlock = 128

    public init(config: LlamaConfig, threads: Int) {
        self.config = config
        self.rope = Rope(config: config)
        self.threads = max(1, threads)
        LinearAlgebra.configureBLAS()
    }

    /// out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) · γ  (transformers LlamaRMSNorm, FP32).
    public func rmsNorm(_ x: UnsafePointer<Float>, rows: Int, weight: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
        let h = config.hiddenSize
        let eps = config.rmsNormEps
        let xs = SendablePointer(UnsafeMutablePointer(mutating: x)), ws = SendablePointer(UnsafeMutablePointer(mutating: weight)), os = SendablePointer(out)
        Parallel.forEachChunk(rows, chunk: 16, threads: threads) { r in
            for row in r {
                let xr = xs.p + row * h, orow = os.p + row * h
                var ss: Double = 0
                for j in 0..<h { ss += Double(xr[j]) * Double(xr[j]) }
                let inv = Float(1 / (Double(Float(ss / Double(h)) + eps)).squareRoot())
                for j in 0..<h { orow[j] = ws.p[j] * (xr[j] * inv) }
            }
        }
    }

    /// Scratch space for one layer over `rows` rows.
    public final class Workspace: @unchecked Sendable {
        public let rows: Int
        public let xn: FloatBuffer     // (rows, hidden)
        public let qkv: FloatBuffer    // (rows, qDim + 2 kvDim)
        public let att: FloatBuffer    // (rows, qDim)
        public let gateUp: FloatBuffer // (rows, 2 inter)
        public let act: FloatBuffer    // (rows, inter)
        public let scores: FloatBuffer // (threads, attentionBlock, seqLen) attention scratch
        let seqLen: Int
        /// Scratch for batches of up to `rows` rows whose sequences are at most `seqLen` long.
        public init(config c: LlamaConfig, rows: Int, seqLen: Int, threads: Int) {
            self.seqLen = seqLen
            scores = FloatBuffer(count: max(1, threads) * LlamaForward.attentionBlock * seqLen)
            self.rows = rows
            xn = FloatBuffer(count: rows * c.hiddenSize)
            qkv = FloatBuffer(count: rows * (c.qDim + 2 * c.kvDim))
            att = FloatBuffer(count: rows * c.qDim)
            gateUp = FloatBuffer(count: rows * 2 * c.intermediateSize)
            act = FloatBuffer(count: rows * c.intermediateSize)
        }
    }

    /// Runs decoder layer `L` in place on `hidden` (rows = batch × seqLen, hidden).
    public func layer(_ L: LlamaLayerWeights, hidden: UnsafeMutablePointer<Float>, batch: Int, seqLen: Int,
                      workspace ws: Workspace, observer: ForwardObserver? = nil) {
        let c = config
        let rows = batch * seqLen
        precondition(ws.rows >= rows && ws.seqLen >= seqLen, "workspace too small")
        let H = c.hiddenSize, qkvDim = c.qDim + 2 * c.kvDim, I = c.intermediateSize
        let li = L.index
        // Attention block.
        rmsNorm(hidden, rows: rows, weight: L.inputNorm.pointer, out: ws.xn.pointer)
        observer?.observe(.attentionInput, layer: li, ActivationView(base: ws.xn.pointer, rows: rows, cols: H, rowStride: H))
        LinearAlgebra.linear(x: ws.xn.pointer, ldx: H, m: rows, w: L.qkv, y: ws.qkv.pointer, ldy: qkvDim, threads: threads)
        if let b = L.qkvBias {
            for r in 0..<rows { let p = ws.qkv.pointer + r * qkvDim; for j in 0..<qkvDim { p[j] += b.pointer[j] } }
        }
        let q = ws.qkv.pointer, k = ws.qkv.pointer + c.qDim, v = ws.qkv.pointer + c.qDim + c.kvDim
        if let observer {
            observer.observe(.qPreRope, layer: li, ActivationView(base: q, rows: rows, cols: c.qDim, rowStride: qkvDim))
            observer.observe(.kPreRope, layer: li, ActivationView(base: k, rows: rows, cols: c.kvDim, rowStride: qkvDim))
            observer.observe(.v, layer: li, ActivationView(base: v, rows: rows, cols: c.kvDim, rowStride: qkvDim))
        }
        applyRope(ws.qkv.pointer, rows: rows, seqLen: seqLen)
        if let observer {
            observer.observe(.qPostRope, layer: li, ActivationView(base: q, rows: rows, cols: c.qDim, rowStride: qkvDim))
            observer.observe(.kPostRope, layer: li, ActivationView(base: k, rows: rows, cols: c.kvDim, rowStride: qkvDim))
        }
        attention(qkv: ws.qkv.pointer, out: ws.att.pointer, batch: batch, seqLen: seqLen, scratch: ws.scores)
        observer?.observe(.oProjInput, layer: li, ActivationView(base: ws.att.pointer, rows: rows, cols: c.qDim, rowStride: c.qDim))
        LinearAlgebra.linear(x: ws.att.pointer, ldx: c.qDim, m: rows, w: L.o, y: hidden, ldy: H, accumulate: true, threads: threads)
        // MLP block.
        rmsNorm(hidden, rows: rows, weight: L.postAttentionNorm.pointer, out: ws.xn.pointer)
        observer?.observe(.mlpInput, layer: li, ActivationView(base: ws.xn.pointer, rows: rows, cols: H, rowStride: H))
        LinearAlgebra.linear(x: ws.xn.pointer, ldx: H, m: rows, w: L.gateUp, y: ws.gateUp.pointer, ldy: 2 * I, threads: threads)
        let gu = SendablePointer(ws.gateUp.pointer), act = SendablePointer(ws.act.pointer)
        Parallel.forEachChunk(rows, chunk: 16, threads: threads) { r in
            for row in r { fq_swiglu(gu.p + row * 2 * I, gu.p + row * 2 * I + I, act.p + row * I, I) }
        }
        observer?.observe(.downProjInput, layer: li, ActivationView(base: ws.act.pointer, rows: rows, cols: I, rowStride: I))
        LinearAlgebra.linear(x: ws.act.pointer, ldx: I, m: rows, w: L.down, y: hidden, ldy: H, accumulate: true, threads: threads)
        observer?.observe(.layerOutput, layer: li, ActivationView(base: hidden, rows: rows, cols: H, rowStride: H))
    }

    /// RoPE on the q and k parts of every qkv row; the position of row r is r mod seqLen.
    public func applyRope(_ qkv: UnsafeMutablePointer<Float>, rows: Int, seqLen: Int) {
        let c = config
        let half = c.headDim / 2, qkvDim = c.qDim + 2 * c.kvDim
        let p = SendablePointer(qkv)
        let rope = self.rope
        Parallel.forEachChunk(rows, chunk: 32, threads: threads) { r in
            var cosT = [Float](repeating: 0, count: half), sinT = [Float](repeating: 0, count: half)
            for row in r {
                rope.table(position: row % seqLen, cos: &cosT, sin: &sinT)
                let base = p.p + row * qkvDim
                for h in 0..<(c.headCount + c.kvHeadCount) {
                    Rope.rotate(base + h * c.headDim, half: half, cos: cosT, sin: sinT)
                }
            }
        }
    }

    /// Causal GQA attention: out[:, h] = softmax(q_h k_gᵀ / sqrt(D)) v_g with g = h / (H/Hkv).
    public func attention(qkv: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, batch: Int, seqLen T: Int, scratch: FloatBuffer) {
        let c = config
        let D = c.headDim, qkvDim = c.qDim + 2 * c.kvDim, group = c.headCount / c.kvHeadCount
        let scale = 1 / Float(D).squareRoot()
        let blk = Self.attentionBlock
        let blocks = (T + blk - 1) / blk
        let src = SendablePointer(UnsafeMutablePointer(mutating: qkv)), dst = SendablePointer(out)
        // Work items: (sequence, head, query block), largest blocks first for balance.
        let items = batch * c.headCount * blocks
        precondition(scratch.count >= threads * blk * T)
        let scratchBase = SendablePointer(scratch.pointer)
        Parallel.forEachChunkWithWorker(items, chunk: 1, threads: threads) { r, worker in
            let item = r.lowerBound
            let blockIndex = blocks - 1 - item % blocks
            let h = (item / blocks) % c.headCount
            let b = item / (blocks * c.headCount)
            let g = h / group
            let i0 = blockIndex * blk, i1 = min(T, i0 + blk)
            let m = i1 - i0
            let scores = scratchBase.p + worker * blk * T
            let rowBase = b * T
            let qp = src.p + (rowBase + i0) * qkvDim + h * D
            let kp = src.p + rowBase * qkvDim + c.qDim + g * D
            let vp = src.p + rowBase * qkvDim + c.qDim + c.kvDim + g * D
            LinearAlgebra.gemmNT(m: m, n: i1, k: D, alpha: scale, a: qp, lda: qkvDim, b: kp, ldb: qkvDim, c: scores, ldc: i1)
            for i in 0..<m {
                let row = scores + i * i1
                let valid = i0 + i + 1
                fq_softmax_inplace(row, valid)
                if valid < i1 { (row + valid).update(repeating: 0, count: i1 - valid) }
            }
            LinearAlgebra.gemmNN(m: m, n: D, k: i1, a: scores, lda: i1, b: vp, ldb: qkvDim,
                                 c: dst.p + (rowBase + i0) * c.qDim + h * D, ldc: c.qDim)
        }
    }
}
