import CalibrationStats
import Kernels
import LlamaReference
import ModelDescription
import TensorStore

/// One decoder layer's weights, row-major FP32 ([out, in]), as the smoothing folds see them;
/// norms as their scales γ (`ModelConfig.normScales`: 1 + w for Gemma), which the folds divide.
public struct RowMajorLayer: Sendable, Equatable {
    public var inputNorm: [Float], mlpInputNorm: [Float]
    /// Sandwich norms on the attention / MLP outputs (Gemma 3); no fold touches them.
    public var attentionOutputNorm: [Float]? = nil, mlpOutputNorm: [Float]? = nil
    public var q: [Float], k: [Float], v: [Float], o: [Float]
    public var gate: [Float], up: [Float], down: [Float]
    public var qBias: [Float]?, kBias: [Float]?, vBias: [Float]?
    /// Qwen3's per-head q / k RMSNorm weights (headDim each, shared by all heads).
    public var qNorm: [Float]? = nil, kNorm: [Float]? = nil

    public static func load(
        _ ckpt: Checkpoint, layer i: Int, config c: ModelConfig
    ) throws(TensorStoreError) -> RowMajorLayer {
        typealias N = TensorNames
        func t(_ part: String, _ shape: [Int]) throws(TensorStoreError) -> [Float] {
            try ckpt.float32(N.layer(i, part), shape: shape)
        }
        func norm(_ part: String, _ n: Int) throws(TensorStoreError) -> [Float] {
            c.normScales(stored: try t(part, [n]))
        }
        let norms = N.norms(c)
        var L = RowMajorLayer(
            inputNorm: try norm(norms.attentionInput, c.hiddenSize),
            mlpInputNorm: try norm(norms.mlpInput, c.hiddenSize),
            q: try t(N.q + ".weight", [c.qDim, c.hiddenSize]), k: try t(N.k + ".weight", [c.kvDim, c.hiddenSize]),
            v: try t(N.v + ".weight", [c.kvDim, c.hiddenSize]), o: try t(N.o + ".weight", [c.hiddenSize, c.qDim]),
            gate: try t(N.gate + ".weight", [c.intermediateSize, c.hiddenSize]),
            up: try t(N.up + ".weight", [c.intermediateSize, c.hiddenSize]),
            down: try t(N.down + ".weight", [c.hiddenSize, c.intermediateSize]),
            qBias: c.attentionBias ? try t(N.q + ".bias", [c.qDim]) : nil,
            kBias: c.attentionBias ? try t(N.k + ".bias", [c.kvDim]) : nil,
            vBias: c.attentionBias ? try t(N.v + ".bias", [c.kvDim]) : nil)
        if c.qkNorm {
            L.qNorm = try norm(N.qNorm, c.headDim)
            L.kNorm = try norm(N.kNorm, c.headDim)
        }
        if let a = norms.attentionOutput, let m = norms.mlpOutput {
            L.attentionOutputNorm = try norm(a, c.hiddenSize)
            L.mlpOutputNorm = try norm(m, c.hiddenSize)
        }
        return L
    }

    /// Packs this layer for the FP32 reference forward pass.
    public func referenceWeights(index: Int, config c: ModelConfig) -> LlamaLayerWeights {
        func pack(_ w: [Float], rows: Int, cols: Int) -> PackedMatrix {
            w.withUnsafeBufferPointer { PackedMatrix(rowMajor: $0.baseAddress!, rows: rows, cols: cols) }
        }
        let bias: FloatBuffer? = qBias.map { FloatBuffer($0 + kBias! + vBias!) }
        return LlamaLayerWeights(
            index: index, inputNorm: FloatBuffer(inputNorm), mlpInputNorm: FloatBuffer(mlpInputNorm),
            qkv: pack(q + k + v, rows: c.qDim + 2 * c.kvDim, cols: c.hiddenSize), qkvBias: bias,
            o: pack(o, rows: c.hiddenSize, cols: c.qDim),
            gateUp: pack(gate + up, rows: 2 * c.intermediateSize, cols: c.hiddenSize),
            down: pack(down, rows: c.hiddenSize, cols: c.intermediateSize),
            qNorm: qNorm.map { FloatBuffer($0) }, kNorm: kNorm.map { FloatBuffer($0) },
            attentionOutputNorm: attentionOutputNorm.map { FloatBuffer($0) },
            mlpOutputNorm: mlpOutputNorm.map { FloatBuffer($0) })
    }
}

/// Smoothing parameters of one layer (recipe values; FIREQ-METHOD.md §2.1, §3.1–3.2).
public struct SmoothingPlan: Sendable, Equatable {
    /// c for post_attention_layernorm → gate ∥ up (0 = off).
    public var gateUpC: Float = 0.0096
    /// c for up_proj → down_proj (0 = off).
    public var downC: Float = 0.015
    /// Strength t of the gate ∥ up and down channel scales (1 = the paper's c / m_j).
    public var gateUpStrength: Float = 1, downStrength: Float = 1
    /// c for input_layernorm → q ∥ k ∥ v (0 = off).
    public var qkvC: Float = 0
    /// v_proj × s, o_proj ÷ s (1 = off).
    public var voScalar: Float = 0.9
    /// Pre-RoPE α (nil = off).
    public var preRopeAlpha: Float? = 8
    /// Post-RoPE β and top-k (nil = off).
    public var postRopeBeta: Float? = 8
    public var postRopeTopK: Int = 8
    /// One pre-RoPE factor per RoPE pair for all heads (the largest pair norm over KV heads)
    /// instead of one per KV head: what Qwen3's shared q/k norm weights can carry (forced there);
    /// a recipe option elsewhere, to measure what the sharing costs.
    public var preRopeSharedHeads = false
    /// Rotate each KV head's V by the normalised Sylvester Hadamard matrix (v_proj rows), undone
    /// in o_proj's columns: the attention output is unchanged, INT4 V and FP8 o_proj inputs see
    /// the rotated (outlier-spread) values. Needs a power-of-two head_dim.
    public var vHadamard = false
    public init() {}
    public static let off: SmoothingPlan = {
        var p = SmoothingPlan(); p.gateUpC = 0; p.downC = 0; p.qkvC = 0; p.voScalar = 1; p.preRopeAlpha = nil;
        p.postRopeBeta = nil
        return p
    }()
}

/// What smoothing decided for a layer besides the folded weights: the run-time post-RoPE scales.
public struct AttentionSmoothing: Sendable, Equatable {
    /// Flat KV channel indices h·D + d (ascending) and their key scales s_k.
    public var keyChannels: [Int] = [], keyScales: [Float] = []
    /// Flat query channel indices and their scales s_q = 1/s_k of the KV head they read.
    public var queryChannels: [Int] = [], queryScales: [Float] = []
    /// Per linear input, what the folds multiplied each input channel by (absent = 1): the
    /// smoothed model's E[x²] is the source's times its square (scale search without GPTQ).
    public var inputFactors: [InputTap: [Float]] = [:]
}

public enum Folding {
    /// The normalised Sylvester Hadamard matrix of order n (a power of two), row-major:
    /// entries ±1/√n, symmetric, H·H = I.
    public static func hadamard(_ n: Int) -> [Double] {
        precondition(n > 0 && n & (n - 1) == 0, "Hadamard order must be a power of two")
        let norm = 1 / Double(n).squareRoot()
        return (0..<(n * n)).map { idx in ((idx / n) & (idx % n)).nonzeroBitCount % 2 == 0 ? norm : -norm }
    }

    /// V ← R·V per KV head (v_proj rows and bias), o_proj ← o_proj·R per query head's columns
    /// (R symmetric orthogonal, so o_proj·(R·a) = o_proj·a for every attention output a).
    static func rotateV(_ L: inout RowMajorLayer, config c: ModelConfig) {
        let D = c.headDim, H = c.hiddenSize
        let R = hadamard(D)
        var v = L.v
        for h in 0..<c.kvHeadCount {
            for i in 0..<D {
                for col in 0..<H {
                    var acc = 0.0
                    for j in 0..<D { acc += R[i * D + j] * Double(L.v[(h * D + j) * H + col]) }
                    v[(h * D + i) * H + col] = Float(acc)
                }
            }
        }
        L.v = v
        if let b = L.vBias {
            L.vBias = (0..<c.kvDim).map { idx in
                let (h, i) = (idx / D, idx % D)
                var acc = 0.0
                for j in 0..<D { acc += R[i * D + j] * Double(b[h * D + j]) }
                return Float(acc)
            }
        }
        var o = L.o
        let Q = c.qDim
        for r in 0..<H {
            for hq in 0..<c.headCount {
                for j in 0..<D {
                    var acc = 0.0
                    for i in 0..<D { acc += Double(L.o[r * Q + hq * D + i]) * R[i * D + j] }
                    o[r * Q + hq * D + j] = Float(acc)
                }
            }
        }
        L.o = o
    }

    /// Multiplies column j of a [rows, k] matrix by s[j].
    static func scaleColumns(_ w: inout [Float], rows: Int, k: Int, by s: [Float]) {
        for r in 0..<rows { for j in 0..<k { w[r * k + j] *= s[j] } }
    }
    /// Multiplies row r of a [rows, k] matrix by s[r].
    static func scaleRows(_ w: inout [Float], rows: Int, k: Int, by s: [Float]) {
        for r in 0..<rows { for j in 0..<k { w[r * k + j] *= s[r] } }
    }

    /// Folds the plan's smoothing into a layer (function-preserving in exact arithmetic) and
    /// returns the run-time post-RoPE scales. `stats` supplies r (pre-RoPE) and m (post-RoPE).
    public static func apply(
        _ plan: SmoothingPlan, to L: inout RowMajorLayer, stats: LayerStatistics, config c: ModelConfig
    ) -> AttentionSmoothing {
        let H = c.hiddenSize, I = c.intermediateSize, D = c.headDim
        var att = AttentionSmoothing()
        if plan.gateUpC > 0 {
            let s = Smoothing.channelScales(
                L.gate + L.up, rows: 2 * I, k: H, c: plan.gateUpC, strength: plan.gateUpStrength)
            scaleColumns(&L.gate, rows: I, k: H, by: s)
            scaleColumns(&L.up, rows: I, k: H, by: s)
            for j in 0..<H { L.mlpInputNorm[j] /= s[j] }
            att.inputFactors[.mlp] = s.map { 1 / $0 }
        }
        if plan.downC > 0 {
            let s = Smoothing.channelScales(L.down, rows: H, k: I, c: plan.downC, strength: plan.downStrength)
            scaleColumns(&L.down, rows: H, k: I, by: s)
            scaleRows(&L.up, rows: I, k: H, by: s.map { 1 / $0 })
            att.inputFactors[.downProj] = s.map { 1 / $0 }
        }
        if plan.qkvC > 0 {
            let s = Smoothing.channelScales(L.q + L.k + L.v, rows: c.qDim + 2 * c.kvDim, k: H, c: plan.qkvC)
            scaleColumns(&L.q, rows: c.qDim, k: H, by: s)
            scaleColumns(&L.k, rows: c.kvDim, k: H, by: s)
            scaleColumns(&L.v, rows: c.kvDim, k: H, by: s)
            for j in 0..<H { L.inputNorm[j] /= s[j] }
            att.inputFactors[.attn] = s.map { 1 / $0 }
        }
        if plan.voScalar != 1 {
            L.v = L.v.map { $0 * plan.voScalar }
            L.vBias = L.vBias?.map { $0 * plan.voScalar }
            L.o = L.o.map { $0 / plan.voScalar }
            att.inputFactors[.oProj] = [Float](repeating: plan.voScalar, count: c.qDim)
        }
        if plan.vHadamard { rotateV(&L, config: c) }
        var excluded = Set<Int>()
        if let beta = plan.postRopeBeta {
            let channels = Smoothing.postRopeChannels(
                absmax: stats.kPostRopeAbsmax, kvHeads: c.kvHeadCount, headDim: D, topK: plan.postRopeTopK
            ).flatMap { $0 }
            let scales = Smoothing.postRopeKeyScales(absmax: stats.kPostRopeAbsmax, channels: channels, beta: beta)
            att.keyChannels = channels
            att.keyScales = scales
            excluded = Set(channels)
            let group = c.headCount / c.kvHeadCount
            for hq in 0..<c.headCount {
                for (ch, s) in zip(channels, scales) where ch / D == hq / group {
                    att.queryChannels.append(hq * D + ch % D)
                    att.queryScales.append(1 / s)
                }
            }
        }
        /// Head-shared pre-RoPE factors [D].
        func sharedFactors(_ alpha: Float) -> [Float] {
            let half = D / 2
            let shared = (0..<half).map { j in
                (0..<c.kvHeadCount).map { stats.kPreRopePairNormMax[$0 * half + j] }.max() ?? 0
            }
            return Smoothing.preRopeKeyFactors(
                pairNormMax: shared, kvHeads: 1, headDim: D, alpha: alpha, excluded: Set(excluded.map { $0 % D }))
        }
        if let alpha = plan.preRopeAlpha, var kn = L.kNorm, var qn = L.qNorm {
            // Qwen3: q_norm / k_norm sit between the projections and RoPE and would undo factors
            // folded into q_proj / k_proj rows, and their weights are one vector for all heads.
            // So the factors are head-shared (per RoPE pair: the largest key pair norm over the KV
            // heads, no factor on a channel any head keeps for the post-RoPE S) and folded into
            // the norm weights: k_norm × n, q_norm ÷ n. Pair-uniform, so RoPE commutes and q·k is
            // unchanged (docs/accuracy.md "Qwen3").
            let n = sharedFactors(alpha)
            for j in 0..<D { kn[j] *= n[j]; qn[j] /= n[j] }
            L.kNorm = kn
            L.qNorm = qn
        } else if let alpha = plan.preRopeAlpha {
            let nk =
                plan.preRopeSharedHeads
                ? Array((0..<c.kvHeadCount).map { _ in sharedFactors(alpha) }.joined())
                : Smoothing.preRopeKeyFactors(
                    pairNormMax: stats.kPreRopePairNormMax, kvHeads: c.kvHeadCount, headDim: D, alpha: alpha,
                    excluded: excluded)
            let nq = Smoothing.queryFactors(keyFactors: nk, heads: c.headCount, kvHeads: c.kvHeadCount, headDim: D)
            scaleRows(&L.k, rows: c.kvDim, k: H, by: nk)
            scaleRows(&L.q, rows: c.qDim, k: H, by: nq)
            if let b = L.kBias { L.kBias = zip(b, nk).map { $0 * $1 } }
            if let b = L.qBias { L.qBias = zip(b, nq).map { $0 * $1 } }
        }
        return att
    }
}
