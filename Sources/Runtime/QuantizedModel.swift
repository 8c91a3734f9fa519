import CFireQKernels
import Foundation
import Kernels
import LlamaReference
import LowPrecision
import PackedFormat
import TensorStore

/// A `fireq-packed` folder run with FireQ's numerics (FIREQ-METHOD.md §2.4–2.5, §3.3): INT4×FP8
/// linears, post-RoPE S, Q in FP8 per (token, head), K/V in INT4 per (token, KV head) with FP8
/// scales, FP32 softmax attention; embeddings, norms and lm_head in their stored precision.
/// Every numeric option of the stored recipe is honoured.
public final class QuantizedModel: CausalLanguageModel, @unchecked Sendable {
    public let config: LlamaConfig
    let forward: LlamaForward
    let layers: [QuantizedLayer]
    /// Embedding, final norm and lm_head (FP32 values of the stored 16-bit tensors).
    let head: LlamaModel
    let activationsFP8: Bool, outputBF16: Bool, queryFP8: Bool, kvInt4: Bool
    private let lock = NSLock()
    /// Buffers reused across windows (fresh multi-MB buffers per window cost page clearing).
    private var cached: (rows: Int, seqLen: Int, ws: LlamaForward.Workspace, scratch: FloatBuffer, acc: FloatBuffer)?

    struct QuantizedLayer {
        let inputNorm: FloatBuffer, postAttentionNorm: FloatBuffer
        let q: Int4FP8Linear, k: Int4FP8Linear, v: Int4FP8Linear, o: Int4FP8Linear
        let gate: Int4FP8Linear, up: Int4FP8Linear, down: Int4FP8Linear
        let keyChannels: [Int], keyScales: [Float], queryChannels: [Int], queryScales: [Float]
    }

    public init(directory: String, threads: Int) throws {
        let packed = try PackedModel(directory: directory)
        try packed.verify()
        let c = try LlamaConfig(directory: directory)
        config = c
        forward = LlamaForward(config: c, threads: threads)
        let r = packed.recipe
        let reround = packed.fp8Rerounding
        activationsFP8 = r["activations"]?["format"]?.stringValue != "fp32"
        outputBF16 = r["activations"]?["output_bf16"]?.boolValue ?? false
        queryFP8 = r["attention"]?["q_format"]?.stringValue != "fp32"
        kvInt4 = !(r["attention"]?["kv_bits"]?.isNull ?? false)
        let f = packed.file
        func vec(_ name: String) throws -> FloatBuffer { FloatBuffer(try f.float32(name)) }
        func ints(_ name: String) throws -> [Int] {
            guard let t = f.info(name), t.dtype == .i32 else { return [] }
            let raw = f.rawBytes(t)
            return (0..<t.elementCount).map { Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
        }
        var layers: [QuantizedLayer] = []
        for i in 0..<c.layerCount {
            let p = "model.layers.\(i)."
            func lin(_ n: String) throws -> Int4FP8Linear {
                let bias = f.info(p + n + ".bias") != nil ? try f.float32(p + n + ".bias") : nil
                if f.info(p + n + ".weight_scale") == nil {
                    throw PackedError(path: packed.weightsPath, reason: "layer \(i) is stored unquantized (skipped by the recipe); the runtime needs every layer quantized")
                }
                return Int4FP8Linear(try packed.linear(p + n), fp8Rerounding: reround, bias: bias)
            }
            let s = p + "self_attn.qkv_supply."
            layers.append(QuantizedLayer(
                inputNorm: try vec(p + "input_layernorm.weight"), postAttentionNorm: try vec(p + "post_attention_layernorm.weight"),
                q: try lin("self_attn.q_proj"), k: try lin("self_attn.k_proj"), v: try lin("self_attn.v_proj"), o: try lin("self_attn.o_proj"),
                gate: try lin("mlp.gate_proj"), up: try lin("mlp.up_proj"), down: try lin("mlp.down_proj"),
                keyChannels: try ints(s + "post_k_smooth.top_k_indices"),
                keyScales: f.info(s + "post_k_smooth.smooth") != nil ? try f.float32(s + "post_k_smooth.smooth") : [],
                queryChannels: try ints(s + "post_q_smooth.top_k_indices"),
                queryScales: f.info(s + "post_q_smooth.smooth") != nil ? try f.float32(s + "post_q_smooth.smooth") : []))
        }
        self.layers = layers
        let embedValues = try f.float32("model.embed_tokens.weight")
        let embed = embedValues.withUnsafeBufferPointer { PackedMatrix(rowMajor: $0.baseAddress!, rows: c.vocabSize, cols: c.hiddenSize) }
        let lmHead: PackedMatrix
        if c.tieWordEmbeddings { lmHead = embed } else {
            let w = try f.float32("lm_head.weight")
            lmHead = w.withUnsafeBufferPointer { PackedMatrix(rowMajor: $0.baseAddress!, rows: c.vocabSize, cols: c.hiddenSize) }
        }
        head = LlamaModel(config: c, embed: embed, layers: [], finalNorm: try vec("model.norm.weight"), lmHead: lmHead, threads: threads)
    }

    public func logits(hidden: UnsafePointer<Float>, rows: Int, out: UnsafeMutablePointer<Float>) {
        head.logits(hidden: hidden, rows: rows, out: out)
    }

    public func nll(hidden: UnsafePointer<Float>, targets: [Int32], rowBlock: Int) -> [Double] {
        head.nll(hidden: hidden, targets: targets, rowBlock: rowBlock)
    }

    public func hiddenStates(_ sequences: [[Int32]], observer: ForwardObserver? = nil) -> FloatBuffer {
        lock.lock(); defer { lock.unlock() }
        let c = config
        let T = sequences.first?.count ?? 0, rows = sequences.count * T
        let H = c.hiddenSize, I = c.intermediateSize, qkvDim = c.qDim + 2 * c.kvDim
        let h = FloatBuffer(count: rows * H, zeroed: false)
        head.embed(sequences.flatMap { $0 }, into: h.pointer)
        if cached == nil || cached!.rows < rows || cached!.seqLen < T {
            cached = (rows, T, LlamaForward.Workspace(config: c, rows: rows, seqLen: T, threads: forward.threads),
                      FloatBuffer(count: rows * max(H, I, c.qDim)), FloatBuffer(count: rows * max(2 * I, qkvDim, H)))
        }
        let (ws, scratch, acc) = (cached!.ws, cached!.scratch, cached!.acc)
        let th = forward.threads
        for (li, L) in layers.enumerated() {
            func run(_ lin: Int4FP8Linear, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool = false) {
                lin.forward(x: x, rows: rows, y: y, ldy: ldy, accumulate: accumulate, scratch: scratch.pointer, acc: acc.pointer,
                            activationsFP8: activationsFP8, outputBF16: outputBF16, threads: th)
            }
            forward.rmsNorm(h.pointer, rows: rows, weight: L.inputNorm.pointer, out: ws.xn.pointer)
            observer?.observe(.attentionInput, layer: li, ActivationView(base: ws.xn.pointer, rows: rows, cols: H, rowStride: H))
            run(L.q, ws.xn.pointer, ws.qkv.pointer, ldy: qkvDim)
            run(L.k, ws.xn.pointer, ws.qkv.pointer + c.qDim, ldy: qkvDim)
            run(L.v, ws.xn.pointer, ws.qkv.pointer + c.qDim + c.kvDim, ldy: qkvDim)
            forward.applyRope(ws.qkv.pointer, rows: rows, seqLen: T)
            quantizeAttentionInputs(L, qkv: ws.qkv.pointer, rows: rows)
            forward.attention(qkv: ws.qkv.pointer, out: ws.att.pointer, batch: sequences.count, seqLen: T, scratch: ws.scores)
            run(L.o, ws.att.pointer, h.pointer, ldy: H, accumulate: true)
            forward.rmsNorm(h.pointer, rows: rows, weight: L.postAttentionNorm.pointer, out: ws.xn.pointer)
            run(L.gate, ws.xn.pointer, ws.gateUp.pointer, ldy: 2 * I)
            run(L.up, ws.xn.pointer, ws.gateUp.pointer + I, ldy: 2 * I)
            for r in 0..<rows { fq_swiglu(ws.gateUp.pointer + r * 2 * I, ws.gateUp.pointer + r * 2 * I + I, ws.act.pointer + r * I, I) }
            run(L.down, ws.act.pointer, h.pointer, ldy: H, accumulate: true)
            observer?.observe(.layerOutput, layer: li, ActivationView(base: h.pointer, rows: rows, cols: H, rowStride: H))
        }
        forward.rmsNorm(h.pointer, rows: rows, weight: head.finalNorm.pointer, out: h.pointer)
        return h
    }

    /// Post-RoPE S, then Q → FP8 per (token, head) and K, V → INT4 per (token, KV head) (§3.3),
    /// stored back as their dequantized FP32 values.
    func quantizeAttentionInputs(_ L: QuantizedLayer, qkv: UnsafeMutablePointer<Float>, rows: Int) {
        let c = config, D = c.headDim, qkvDim = c.qDim + 2 * c.kvDim
        var tmp = [Float](repeating: 0, count: D)
        for r in 0..<rows {
            let row = qkv + r * qkvDim
            for (ch, s) in zip(L.keyChannels, L.keyScales) { row[c.qDim + ch] *= s }
            for (ch, s) in zip(L.queryChannels, L.queryScales) { row[ch] *= s }
            if queryFP8 {
                for hq in 0..<c.headCount {
                    let v = row + hq * D
                    let sigma = fq_quantize_fp8_row(v, D, &tmp)
                    for d in 0..<D { v[d] = tmp[d] * sigma }
                }
            }
            if kvInt4 {
                for g in 0..<(2 * c.kvHeadCount) {
                    let v = row + c.qDim + g * D
                    var m: Float = 0
                    for d in 0..<D { m = max(m, abs(v[d])) }
                    let s = max(FP8E4M3.round(max(m, 1e-5) / 7), 0x1p-9)
                    for d in 0..<D { v[d] = min(7, max(-8, (v[d] / s).rounded(.toNearestOrEven))) * s }
                }
            }
        }
    }
}
