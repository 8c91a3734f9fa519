import CFireQKernels
import Foundation
import Kernels
import ModelDescription

/// The exact FP32 forward pass of a decoder of every family (ModelFamily), one layer at a time
/// (so calibration can stream layers). Matches transformers (eager attention, FP32): RMSNorm,
/// rotate_half RoPE (per-layer bases), GQA causal attention (sliding windows where the family
/// has them), SwiGLU or GeGLU MLP, sandwich norms (Gemma 3).
///
/// Activations are (rows, features) with rows = batch × seqLen in (sequence, position) order;
/// every sequence of a batch starts at position 0.
public struct LlamaForward: Sendable {
    public let config: ModelConfig
    /// The RoPE tables of the global layers and of the sliding-window layers.
    public let globalRope: Rope, localRope: Rope
    public let threads: Int

    public init(config: ModelConfig, threads: Int) {
        self.config = config
        self.globalRope = Rope(config: config)
        self.localRope = Rope(config: config, sliding: true)
        self.threads = max(1, threads)
        LinearAlgebra.configureBLAS()
    }

    /// The RoPE tables layer `i` uses.
    public func rope(layer i: Int) -> Rope { config.slidingLayers[i] ? localRope : globalRope }

    /// act[r] = activation(gate[r]) · up[r] for `rows` rows of gate ∥ up (2·inter each).
    public func activate(_ gateUp: UnsafePointer<Float>, rows: Int, out: UnsafeMutablePointer<Float>) {
        let I = config.intermediateSize
        let gu = SendablePointer(UnsafeMutablePointer(mutating: gateUp)), act = SendablePointer(out)
        let gelu = config.activation == .geluTanh
        Parallel.forEachChunk(rows, chunk: 16, threads: rows >= 16 ? threads : 1) { r in
            for row in r {
                if gelu {
                    fq_geglu_tanh(gu.p + row * 2 * I, gu.p + row * 2 * I + I, act.p + row * I, I)
                } else {
                    fq_swiglu(gu.p + row * 2 * I, gu.p + row * 2 * I + I, act.p + row * I, I)
                }
            }
        }
    }

    /// hidden += branch, after normalising the branch with `norm` in place when the family has
    /// sandwich norms (the residual add of transformers' Gemma 3 layer).
    public func addBranch(
        _ branch: UnsafeMutablePointer<Float>, norm: FloatBuffer?, into hidden: UnsafeMutablePointer<Float>, rows: Int
    ) {
        let H = config.hiddenSize
        if let norm { rmsNorm(branch, rows: rows, weight: norm.pointer, out: branch) }
        for i in 0..<(rows * H) { hidden[i] += branch[i] }
    }

    /// out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) · γ  (transformers LlamaRMSNorm, FP32).
    public func rmsNorm(
        _ x: UnsafePointer<Float>, rows: Int, weight: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>
    ) {
        Self.rmsNorm(
            x, rows: rows, width: config.hiddenSize, eps: config.rmsNormEps, weight: weight, out: out, threads: threads)
    }

    /// RMSNorm of `rows` vectors of `width` (sum of squares in Double, as HF's FP32 mean within
    /// FP32 rounding), in place allowed; the same function for hidden rows and Qwen3's q/k heads.
    public static func rmsNorm(
        _ x: UnsafePointer<Float>, rows: Int, width h: Int, eps: Float, weight: UnsafePointer<Float>,
        out: UnsafeMutablePointer<Float>, threads: Int
    ) {
        let xs = SendablePointer(UnsafeMutablePointer(mutating: x)),
            ws = SendablePointer(UnsafeMutablePointer(mutating: weight)), os = SendablePointer(out)
        Parallel.forEachChunk(rows, chunk: 16, threads: threads) { r in
            for row in r { rmsNormRow(xs.p + row * h, width: h, eps: eps, weight: ws.p, out: os.p + row * h) }
        }
    }

    @inline(__always)
    static func rmsNormRow(
        _ xr: UnsafePointer<Float>, width h: Int, eps: Float, weight: UnsafePointer<Float>,
        out orow: UnsafeMutablePointer<Float>
    ) {
        var ss: Double = 0
        for j in 0..<h { ss += Double(xr[j]) * Double(xr[j]) }
        let inv = Float(1 / (Double(Float(ss / Double(h)) + eps)).squareRoot())
        for j in 0..<h { orow[j] = weight[j] * (xr[j] * inv) }
    }

    /// Scratch space for one layer over `rows` rows.
    public final class Workspace: @unchecked Sendable {
        public let rows: Int
        public let xn: FloatBuffer  // (rows, hidden)
        public let qkv: FloatBuffer  // (rows, qDim + 2 kvDim)
        public let att: FloatBuffer  // (rows, qDim)
        public let gateUp: FloatBuffer  // (rows, 2 inter)
        public let act: FloatBuffer  // (rows, inter)
        /// A branch's output before its norm and residual add (rows, hidden); sandwich norms only.
        public let branch: FloatBuffer?
        let seqLen: Int
        /// Scratch for batches of up to `rows` rows whose sequences are at most `seqLen` long.
        public init(config c: ModelConfig, rows: Int, seqLen: Int, threads: Int) {
            self.seqLen = seqLen
            self.rows = rows
            xn = FloatBuffer(count: rows * c.hiddenSize)
            qkv = FloatBuffer(count: rows * (c.qDim + 2 * c.kvDim))
            att = FloatBuffer(count: rows * c.qDim)
            gateUp = FloatBuffer(count: rows * 2 * c.intermediateSize)
            act = FloatBuffer(count: rows * c.intermediateSize)
            branch = c.sandwichNorms ? FloatBuffer(count: rows * c.hiddenSize) : nil
        }
    }

    /// Runs decoder layer `L` in place on `hidden` (rows = batch × seqLen, hidden).
    public func layer(
        _ L: LlamaLayerWeights, hidden: UnsafeMutablePointer<Float>, batch: Int, seqLen: Int,
        workspace ws: Workspace, observer: ForwardObserver? = nil
    ) {
        let c = config
        let rows = batch * seqLen
        precondition(ws.rows >= rows && ws.seqLen >= seqLen, "workspace too small")
        let H = c.hiddenSize, qkvDim = c.qDim + 2 * c.kvDim, I = c.intermediateSize
        let li = L.index
        // Attention block.
        rmsNorm(hidden, rows: rows, weight: L.inputNorm.pointer, out: ws.xn.pointer)
        observer?.observe(
            .attentionInput, layer: li, ActivationView(base: ws.xn.pointer, rows: rows, cols: H, rowStride: H))
        LinearAlgebra.linear(
            x: ws.xn.pointer, ldx: H, m: rows, w: L.qkv, y: ws.qkv.pointer, ldy: qkvDim, threads: threads)
        if let b = L.qkvBias {
            for r in 0..<rows { let p = ws.qkv.pointer + r * qkvDim; for j in 0..<qkvDim { p[j] += b.pointer[j] } }
        }
        let q = ws.qkv.pointer, k = ws.qkv.pointer + c.qDim, v = ws.qkv.pointer + c.qDim + c.kvDim
        if let qn = L.qNorm, let kn = L.kNorm {
            headNorms(ws.qkv.pointer, rows: rows, qNorm: qn.pointer, kNorm: kn.pointer)
        }
        if let observer {
            observer.observe(.qPreRope, layer: li, ActivationView(base: q, rows: rows, cols: c.qDim, rowStride: qkvDim))
            observer.observe(
                .kPreRope, layer: li, ActivationView(base: k, rows: rows, cols: c.kvDim, rowStride: qkvDim))
            observer.observe(.v, layer: li, ActivationView(base: v, rows: rows, cols: c.kvDim, rowStride: qkvDim))
            if let b = L.qkvBias {
                observeUnbiasedKeys(
                    k, rows: rows, seqLen: seqLen, bias: b.pointer + c.qDim, layer: li, observer: observer)
            }
        }
        applyRope(ws.qkv.pointer, rows: rows, seqLen: seqLen, layer: li)
        if let observer {
            observer.observe(
                .qPostRope, layer: li, ActivationView(base: q, rows: rows, cols: c.qDim, rowStride: qkvDim))
            observer.observe(
                .kPostRope, layer: li, ActivationView(base: k, rows: rows, cols: c.kvDim, rowStride: qkvDim))
        }
        attention(qkv: ws.qkv.pointer, out: ws.att.pointer, batch: batch, seqLen: seqLen, layer: li)
        observer?.observe(
            .oProjInput, layer: li, ActivationView(base: ws.att.pointer, rows: rows, cols: c.qDim, rowStride: c.qDim))
        /// hidden += w·x: straight into hidden, or through the branch buffer and its norm (sandwich norms).
        func residual(_ w: PackedMatrix, _ x: UnsafePointer<Float>, ldx: Int, norm: FloatBuffer?) {
            guard let branch = ws.branch else {
                return LinearAlgebra.linear(
                    x: x, ldx: ldx, m: rows, w: w, y: hidden, ldy: H, accumulate: true, threads: threads)
            }
            LinearAlgebra.linear(x: x, ldx: ldx, m: rows, w: w, y: branch.pointer, ldy: H, threads: threads)
            addBranch(branch.pointer, norm: norm, into: hidden, rows: rows)
        }
        residual(L.o, ws.att.pointer, ldx: c.qDim, norm: L.attentionOutputNorm)
        // MLP block.
        rmsNorm(hidden, rows: rows, weight: L.mlpInputNorm.pointer, out: ws.xn.pointer)
        observer?.observe(.mlpInput, layer: li, ActivationView(base: ws.xn.pointer, rows: rows, cols: H, rowStride: H))
        LinearAlgebra.linear(
            x: ws.xn.pointer, ldx: H, m: rows, w: L.gateUp, y: ws.gateUp.pointer, ldy: 2 * I, threads: threads)
        activate(ws.gateUp.pointer, rows: rows, out: ws.act.pointer)
        observer?.observe(
            .downProjInput, layer: li, ActivationView(base: ws.act.pointer, rows: rows, cols: I, rowStride: I))
        residual(L.down, ws.act.pointer, ldx: I, norm: L.mlpOutputNorm)
        observer?.observe(.layerOutput, layer: li, ActivationView(base: hidden, rows: rows, cols: H, rowStride: H))
    }

    /// Shows the observer k − b before and after RoPE (`Tap.kPreRopeUnbiased` / `.kPostRopeUnbiased`;
    /// `k` rows are `qkvDim` apart, `bias` the kvDim k_proj bias). Calibration only.
    func observeUnbiasedKeys(
        _ k: UnsafePointer<Float>, rows: Int, seqLen: Int, bias: UnsafePointer<Float>, layer li: Int,
        observer: ForwardObserver
    ) {
        let c = config, kv = c.kvDim, D = c.headDim, qkvDim = c.qDim + 2 * c.kvDim
        let u = FloatBuffer(count: rows * kv)
        for r in 0..<rows { for j in 0..<kv { u.pointer[r * kv + j] = k[r * qkvDim + j] - bias[j] } }
        observer.observe(
            .kPreRopeUnbiased, layer: li, ActivationView(base: u.pointer, rows: rows, cols: kv, rowStride: kv))
        var cosT = [Float](repeating: 0, count: D / 2), sinT = cosT
        let rope = rope(layer: li)
        for r in 0..<rows {
            rope.table(position: r % seqLen, cos: &cosT, sin: &sinT)
            for h in 0..<c.kvHeadCount { Rope.rotate(u.pointer + r * kv + h * D, half: D / 2, cos: cosT, sin: sinT) }
        }
        observer.observe(
            .kPostRopeUnbiased, layer: li, ActivationView(base: u.pointer, rows: rows, cols: kv, rowStride: kv))
    }

    /// Qwen3's per-head RMSNorm of q and k (before RoPE), in place on every qkv row.
    public func headNorms(
        _ qkv: UnsafeMutablePointer<Float>, rows: Int, qNorm: UnsafePointer<Float>, kNorm: UnsafePointer<Float>
    ) {
        let c = config, qkvDim = c.qDim + 2 * c.kvDim, D = c.headDim, eps = c.rmsNormEps
        let p = SendablePointer(qkv), qn = SendablePointer(UnsafeMutablePointer(mutating: qNorm)),
            kn = SendablePointer(UnsafeMutablePointer(mutating: kNorm))
        Parallel.forEachChunk(rows, chunk: 16, threads: threads) { r in
            for row in r {
                let q = p.p + row * qkvDim
                for h in 0..<c.headCount {
                    Self.rmsNormRow(q + h * D, width: D, eps: eps, weight: qn.p, out: q + h * D)
                }
                for h in 0..<c.kvHeadCount {
                    Self.rmsNormRow(q + c.qDim + h * D, width: D, eps: eps, weight: kn.p, out: q + c.qDim + h * D)
                }
            }
        }
    }

    /// RoPE of layer `layer` on the q and k parts of every qkv row; the position of row r is r mod seqLen.
    public func applyRope(_ qkv: UnsafeMutablePointer<Float>, rows: Int, seqLen: Int, layer: Int) {
        let c = config
        let half = c.headDim / 2, qkvDim = c.qDim + 2 * c.kvDim
        let p = SendablePointer(qkv)
        let rope = rope(layer: layer)
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

    /// Causal GQA attention of layer `layer`, FP32: out[:, h] = softmax(q_h k_gᵀ · scale) v_g with
    /// g = h / (H/Hkv), scale = `config.attentionScale` (1/√D unless the family says), query i
    /// seeing keys max(0, i − window + 1) … i (the layer's window; all keys without one),
    /// in the fixed summation order of `fq_attn_scores` / `fq_attn_pv` (every score one FMA chain
    /// over d, every output one chain over t): per (sequence, head, block of 64 queries), the
    /// block's keys are transposed once, then each query gets its scores, a max-shifted softmax
    /// over its i + 1 keys and its P·V. The same on every CPU and thread count (no BLAS, whose
    /// kernels differ per CPU); both engines use it, and `QuantizedDecoder` reproduces it bit for bit.
    public func attention(
        qkv: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, batch: Int, seqLen T: Int, layer: Int
    ) {
        let c = config, D = c.headDim, qkvDim = c.qDim + 2 * c.kvDim, group = c.headCount / c.kvHeadCount
        let scale = c.attentionScale
        let window = c.attentionWindow(layer: layer) ?? Int.max
        let blk = 64, blocks = (T + blk - 1) / blk
        let ktBuf = FloatBuffer(count: threads * D * T), sBuf = FloatBuffer(count: threads * 2 * T)
        let src = SendablePointer(UnsafeMutablePointer(mutating: qkv)), dst = SendablePointer(out)
        let kts = SendablePointer(ktBuf.pointer), ss = SendablePointer(sBuf.pointer)
        Parallel.forEachChunkWithWorker(batch * c.headCount * blocks, chunk: 1, threads: threads) { r, worker in
            let item = r.lowerBound
            let blockIndex = blocks - 1 - item % blocks  // largest blocks first
            let h = (item / blocks) % c.headCount, b = item / (blocks * c.headCount), g = h / group
            let i0 = blockIndex * blk, i1 = min(T, i0 + blk)
            let kt = kts.p + worker * D * T, s = ss.p + worker * 2 * T
            let rows = src.p + b * T * qkvDim
            fq_transpose(rows + c.qDim + g * D, qkvDim, i1, D, kt, i1)
            let v = rows + c.qDim + c.kvDim + g * D
            var i = i0
            while i < i1 {
                // Queries i and i + 1 share one pass over the keys (each score is its own fixed chain)
                // while both see every key from 0 on.
                let s2 = s + T
                let pair = i + 1 < i1 && i + 2 <= window
                let j0 = i + 1 > window ? i + 1 - window : 0  // first key query i sees
                if j0 > 0 {
                    fq_attn_scores(rows + i * qkvDim + h * D, kt + j0, i1, D, i + 1 - j0, scale, s)
                    fq_softmax_inplace(s, i + 1 - j0)
                    fq_attn_pv(s, i + 1 - j0, v + j0 * qkvDim, qkvDim, D, dst.p + (b * T + i) * c.qDim + h * D)
                    i += 1
                    continue
                }
                if pair {
                    fq_attn_scores2(
                        rows + i * qkvDim + h * D, rows + (i + 1) * qkvDim + h * D, kt, i1, D, i + 1, scale, s, s2)
                    fq_attn_scores(rows + (i + 1) * qkvDim + h * D, kt + (i + 1), i1, D, 1, scale, s2 + i + 1)
                } else {
                    fq_attn_scores(rows + i * qkvDim + h * D, kt, i1, D, i + 1, scale, s)
                }
                fq_softmax_inplace(s, i + 1)
                if pair {
                    // one pass over the value rows for both queries (each output its own chain)
                    fq_softmax_inplace(s2, i + 2)
                    fq_attn_pv2(
                        s, i + 1, s2, i + 2, v, qkvDim, D, dst.p + (b * T + i) * c.qDim + h * D,
                        dst.p + (b * T + i + 1) * c.qDim + h * D)
                } else {
                    fq_attn_pv(s, i + 1, v, qkvDim, D, dst.p + (b * T + i) * c.qDim + h * D)
                }
                i += pair ? 2 : 1
            }
        }
    }

}
