import CFireQKernels
import Foundation
import Kernels
import LlamaReference
import LowPrecision
import ModelDescription
import PackedFormat
import TensorStore

/// Which numerics a packed model runs with.
public enum RuntimeNumerics: String, Sendable, CaseIterable {
    /// Everything the recipe states (the default).
    case fireq
    /// What the exports carry (Formats/exports.md): weights exactly q·s_g·(1/P), FP32
    /// activations, FP32 Q/K/V, no post-RoPE S (it cancels in q·k), no BF16 output rounding.
    case weightsOnly = "weights-only"
    /// `weightsOnly` plus the recipe's FP8 per-token input activations (the compressed-tensors
    /// export's W4A8-FP8 declaration).
    case weightsFP8Activations = "weights-fp8act"
}

/// The run-time numerics a recipe selects for the decoder layers (FIREQ-METHOD.md §2.4–2.5, §3.3;
/// Formats/runtime-numerics.md). `QuantizedModel` derives them from the packed recipe; convert's
/// constant search (`Quantization.ConstantSearch`) from the recipe it is quantizing with.
public struct BlockNumerics: Sendable, Equatable {
    public var activationsFP8 = true, outputBF16 = false, queryFP8 = true, kvInt4 = true
    /// Q/K rotation after RoPE and S (recipe `attention.qk_hadamard`).
    public var qkHadamard = false
    /// INT4 K/V channels per scale (nil = the whole head) and its run-time scale search.
    public var kvGroupSize: Int? = nil, kvScaleSearch = false
    /// The K/V scale search also tries negative scales (recipe `attention.kv_signed_scales`).
    public var kvSignedScales = false
    /// INT4 K/V quantize x − c and add c back, c the k_proj / v_proj bias (K's rotated to the
    /// token's position and × S) (recipe `attention.kv_center: "bias"`).
    public var kvCenter = false
    /// ŵ = E4M3(q·s) in the linears (recipe `weights.fp8_rerounding`).
    public var fp8Rerounding = true
    public init() {}
}

/// Decoder layers with INT4 weights, run with `BlockNumerics` (the layer stack of a
/// `QuantizedModel`, or one layer under test in convert's constant search).
public final class QuantizedBlocks: @unchecked Sendable {
    public let config: ModelConfig
    let forward: LlamaForward
    let layers: [QuantizedLayer]
    let activationsFP8: Bool, outputBF16: Bool, queryFP8: Bool, kvInt4: Bool
    let qkHadamard: Bool, kvGroup: Int, kvCenter: Bool
    /// `fq_int4_groups`' search argument: 0 the guard scale, 1 the scale search, 2 signed as well.
    let kvSearchMode: Int32
    let lock = NSLock()
    /// Buffers reused across windows (fresh multi-MB buffers per window cost page clearing).
    private var cached: (rows: Int, seqLen: Int, ws: LlamaForward.Workspace, scratch: FloatBuffer, acc: FloatBuffer)?

    /// One decoder layer: q, k and v fused (one FP8 quantization of the input, one GEMM); gate and up likewise.
    public struct QuantizedLayer {
        let inputNorm: FloatBuffer, mlpInputNorm: FloatBuffer
        /// Sandwich norms on the attention and MLP outputs (Gemma 3).
        let attentionOutputNorm: FloatBuffer?, mlpOutputNorm: FloatBuffer?
        let qkv: Int4FP8Linear, o: Int4FP8Linear, gateUp: Int4FP8Linear, down: Int4FP8Linear
        let keyChannels: [Int], keyScales: [Float], queryChannels: [Int], queryScales: [Float]
        /// Qwen3's per-head q / k RMSNorm weights (with FireQ's pre-RoPE factors folded in).
        let qNorm: FloatBuffer?, kNorm: FloatBuffer?
        /// k_proj bias ∥ v_proj bias as stored (zeros for a missing one; nil when the layer has
        /// neither): the centres of `kv_center: "bias"`, made once at load.
        let kvCenters: [Float]?

        /// A layer from its packed linears (q, k, v, o, gate, up, down, each with its bias or nil)
        /// and post-RoPE scales exactly as a packed folder stores them, and its norms as scales γ
        /// (`ModelConfig.normScales` of the stored weights).
        public init(
            inputNorm: [Float], mlpInputNorm: [Float], outputNorms: (attention: [Float], mlp: [Float])? = nil,
            linears: [(linear: PackedLinear, bias: [Float]?)],
            keyChannels: [Int], keyScales: [Float], queryChannels: [Int], queryScales: [Float],
            qNorm: [Float]?, kNorm: [Float]?, fp8Rerounding: Bool
        ) throws {
            precondition(linears.count == 7, "q, k, v, o, gate, up, down")
            self.inputNorm = FloatBuffer(inputNorm)
            self.mlpInputNorm = FloatBuffer(mlpInputNorm)
            self.attentionOutputNorm = outputNorms.map { FloatBuffer($0.attention) }
            self.mlpOutputNorm = outputNorms.map { FloatBuffer($0.mlp) }
            qkv = try Int4FP8Linear(fusing: Array(linears[0..<3]), fp8Rerounding: fp8Rerounding)
            o = try Int4FP8Linear(fusing: [linears[3]], fp8Rerounding: fp8Rerounding)
            gateUp = try Int4FP8Linear(fusing: Array(linears[4..<6]), fp8Rerounding: fp8Rerounding)
            down = try Int4FP8Linear(fusing: [linears[6]], fp8Rerounding: fp8Rerounding)
            self.keyChannels = keyChannels; self.keyScales = keyScales
            self.queryChannels = queryChannels; self.queryScales = queryScales
            self.qNorm = qNorm.map { FloatBuffer($0) }; self.kNorm = kNorm.map { FloatBuffer($0) }
            let (kb, vb) = (linears[1].bias, linears[2].bias)
            kvCenters =
                kb == nil && vb == nil
                ? nil
                : (kb ?? [Float](repeating: 0, count: linears[1].linear.n))
                    + (vb ?? [Float](repeating: 0, count: linears[2].linear.n))
        }
    }

    public init(config c: ModelConfig, layers: [QuantizedLayer], numerics n: BlockNumerics, threads: Int) {
        config = c
        forward = LlamaForward(config: c, threads: threads)
        self.layers = layers
        activationsFP8 = n.activationsFP8; outputBF16 = n.outputBF16; queryFP8 = n.queryFP8; kvInt4 = n.kvInt4
        qkHadamard = n.qkHadamard; kvGroup = n.kvGroupSize ?? c.headDim
        kvSearchMode = n.kvScaleSearch ? (n.kvSignedScales ? 2 : 1) : 0
        kvCenter = n.kvCenter
    }

    /// Runs decoder layer `index` alone, in place, on `hidden` (`batch` sequences of `seqLen` rows).
    public func runLayer(_ index: Int, hidden: UnsafeMutablePointer<Float>, batch: Int = 1, seqLen: Int) {
        lock.lock(); defer { lock.unlock() }
        layer(index, hidden: hidden, batch: batch, seqLen: seqLen, observer: nil)
    }

    /// One decoder layer in place on `h` (batch × seqLen rows); the caller holds `lock`.
    func layer(_ li: Int, hidden h: UnsafeMutablePointer<Float>, batch: Int, seqLen T: Int, observer: ForwardObserver?)
    {
        apply(layers[li], index: li, hidden: h, batch: batch, seqLen: T, observer: observer)
    }

    /// Runs `layer` as decoder layer `index` (its RoPE and window; not necessarily one of `layers`:
    /// convert's constant search tries candidates) in place on `hidden` (`batch` sequences of `seqLen` rows).
    public func run(_ layer: QuantizedLayer, index: Int, hidden: UnsafeMutablePointer<Float>, batch: Int, seqLen: Int) {
        lock.lock(); defer { lock.unlock() }
        apply(layer, index: index, hidden: hidden, batch: batch, seqLen: seqLen, observer: nil)
    }

    private func apply(
        _ L: QuantizedLayer, index li: Int, hidden h: UnsafeMutablePointer<Float>, batch: Int, seqLen T: Int,
        observer: ForwardObserver?
    ) {
        let c = config
        let rows = batch * T
        let H = c.hiddenSize, I = c.intermediateSize, qkvDim = c.qDim + 2 * c.kvDim
        if cached == nil || cached!.rows < rows || cached!.seqLen < T {
            cached = nil  // the old buffers go before the new ones are made
            cached = (
                rows, T, LlamaForward.Workspace(config: c, rows: rows, seqLen: T, threads: forward.threads),
                FloatBuffer(count: rows * max(H, I, c.qDim)), FloatBuffer(count: rows * max(2 * I, qkvDim, H))
            )
        }
        let (ws, scratch, acc) = (cached!.ws, cached!.scratch, cached!.acc)
        let th = forward.threads
        func run(
            _ lin: Int4FP8Linear, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, ldy: Int,
            accumulate: Bool = false
        ) {
            lin.forward(
                x: x, rows: rows, y: y, ldy: ldy, accumulate: accumulate, scratch: scratch.pointer, acc: acc.pointer,
                activationsFP8: activationsFP8, outputBF16: outputBF16, threads: th)
        }
        forward.rmsNorm(h, rows: rows, weight: L.inputNorm.pointer, out: ws.xn.pointer)
        observer?.observe(
            .attentionInput, layer: li, ActivationView(base: ws.xn.pointer, rows: rows, cols: H, rowStride: H))
        run(L.qkv, ws.xn.pointer, ws.qkv.pointer, ldy: qkvDim)
        if let qn = L.qNorm, let kn = L.kNorm {
            forward.headNorms(ws.qkv.pointer, rows: rows, qNorm: qn.pointer, kNorm: kn.pointer)
        }
        forward.applyRope(ws.qkv.pointer, rows: rows, seqLen: T, layer: li)
        quantizeAttentionInputs(L, layer: li, qkv: ws.qkv.pointer, rows: rows, seqLen: T)
        forward.attention(qkv: ws.qkv.pointer, out: ws.att.pointer, batch: batch, seqLen: T, layer: li)
        /// h += lin(x): straight into h, or through the workspace's branch and its norm (sandwich norms).
        func residual(_ lin: Int4FP8Linear, _ x: UnsafePointer<Float>, norm: FloatBuffer?) {
            guard let branch = ws.branch else { return run(lin, x, h, ldy: H, accumulate: true) }
            run(lin, x, branch.pointer, ldy: H)
            forward.addBranch(branch.pointer, norm: norm, into: h, rows: rows)
        }
        residual(L.o, ws.att.pointer, norm: L.attentionOutputNorm)
        forward.rmsNorm(h, rows: rows, weight: L.mlpInputNorm.pointer, out: ws.xn.pointer)
        run(L.gateUp, ws.xn.pointer, ws.gateUp.pointer, ldy: 2 * I)
        forward.activate(ws.gateUp.pointer, rows: rows, out: ws.act.pointer)
        residual(L.down, ws.act.pointer, norm: L.mlpOutputNorm)
        observer?.observe(.layerOutput, layer: li, ActivationView(base: h, rows: rows, cols: H, rowStride: H))
    }

    /// Post-RoPE S, then Q → FP8 per (token, head) and K, V → INT4 per (token, KV head) (§3.3),
    /// stored back as their dequantized FP32 values. Row r holds the token at position
    /// `firstPosition + r % seqLen` (used by `kv_center`'s rotated key centre).
    func quantizeAttentionInputs(
        _ L: QuantizedLayer, layer: Int, qkv: UnsafeMutablePointer<Float>, rows: Int, seqLen: Int,
        firstPosition: Int = 0
    ) {
        let c = config, D = c.headDim, qkvDim = c.qDim + 2 * c.kvDim
        let base = SendablePointer(qkv)
        let (queryFP8, kvInt4, qkHadamard, kvGroup) = (self.queryFP8, self.kvInt4, self.qkHadamard, self.kvGroup)
        let searchMode = kvSearchMode
        let center = kvCenter && kvInt4 ? L.kvCenters : nil
        let rope = forward.rope(layer: layer)
        Parallel.forEachChunk(rows, chunk: 16, threads: forward.threads) { rr in
            // The row's K/V centres: [K centre rotated to the row's position, × S (, × R)] ∥ [V centre].
            // (Allocated only with centres: the decoder calls this once per token and layer.)
            var cen = [Float](repeating: 0, count: center == nil ? 0 : 2 * c.kvDim)
            var cosT = [Float](repeating: 0, count: center == nil ? 0 : D / 2), sinT = cosT
            for r in rr {
                let row = base.p + r * qkvDim
                for (ch, s) in zip(L.keyChannels, L.keyScales) { row[c.qDim + ch] *= s }
                for (ch, s) in zip(L.queryChannels, L.queryScales) { row[ch] *= s }
                if qkHadamard {
                    for hq in 0..<c.headCount { Self.hadamard(row + hq * D, count: D) }
                    for hk in 0..<c.kvHeadCount { Self.hadamard(row + c.qDim + hk * D, count: D) }
                }
                // Vectorised C (kvquant.c), pinned to `quantizeInt4` and the FP8 codec by KernelTests.
                if queryFP8 {
                    for hq in 0..<c.headCount { _ = fq_fp8_roundtrip_on(-1, row + hq * D, D) }
                }
                if let center {
                    for j in 0..<(2 * c.kvDim) { cen[j] = center[j] }
                    rope.table(position: firstPosition + r % seqLen, cos: &cosT, sin: &sinT)
                    cen.withUnsafeMutableBufferPointer { cp in
                        for hk in 0..<c.kvHeadCount {
                            Rope.rotate(cp.baseAddress! + hk * D, half: D / 2, cos: cosT, sin: sinT)
                        }
                        for (ch, s) in zip(L.keyChannels, L.keyScales) { cp[ch] *= s }
                        if qkHadamard {
                            for hk in 0..<c.kvHeadCount { Self.hadamard(cp.baseAddress! + hk * D, count: D) }
                        }
                    }
                    for j in 0..<(2 * c.kvDim) { row[c.qDim + j] -= cen[j] }
                }
                if kvInt4 { fq_int4_groups(row + c.qDim, 2 * c.kvDim, kvGroup, searchMode) }
                if center != nil {
                    for j in 0..<(2 * c.kvDim) { row[c.qDim + j] += cen[j] }
                }
            }
        }
    }

    /// v ← R·v, R the normalised Sylvester Hadamard matrix of order `count` (a power of two), in
    /// the order Formats/runtime-numerics.md fixes: butterfly stages h = 1, 2, 4, …, (a, b) →
    /// (a + b, a − b), then every element × FP32(1/√count) (0.125 exactly for 64).
    @inline(__always) public static func hadamard(_ v: UnsafeMutablePointer<Float>, count n: Int) {
        var h = 1
        while h < n {
            var i = 0
            while i < n {
                for j in i..<(i + h) { let a = v[j], b = v[j + h]; v[j] = a + b; v[j + h] = a - b }
                i += 2 * h
            }
            h *= 2
        }
        let s = Float(1 / Double(n).squareRoot())
        for j in 0..<n { v[j] *= s }
    }

    /// INT4 per (token, KV head) with an FP8 scale and the weights' guard (§3.3), in place:
    /// s = max(E4M3(max(max|x|, 1e-5)/7), 2^-9), x ← clamp(round_half_even(x/s), −8, 7)·s.
    /// With `search`, s is instead the FP8E4M3.int4ScaleCandidates value with the least
    /// Σ (x − x̂)² (summed in FP32 in channel order; the first, largest, wins ties); with `signed`
    /// the negated candidates of m·7/8 follow them (a negative scale maps the largest positive x
    /// to −8). The plain reference of `fq_int4_groups` (one group).
    @inline(__always) public static func quantizeInt4(
        _ v: UnsafeMutablePointer<Float>, count: Int, search: Bool = false, signed: Bool = false
    ) {
        var m: Float = 0
        for d in 0..<count { m = max(m, abs(v[d])) }
        var s = max(FP8E4M3.round(max(m, 1e-5) / 7), 0x1p-9)
        if search {
            var best = Float.infinity
            let a = max(m, 1e-5)
            let negative = signed ? FP8E4M3.int4ScaleCandidates(absmax: a * 7 / 8).map { -$0 } : []
            for cand in FP8E4M3.int4ScaleCandidates(absmax: a) + negative {
                var err: Float = 0
                for d in 0..<count {
                    let e = v[d] - min(7, max(-8, (v[d] / cand).rounded(.toNearestOrEven))) * cand
                    err += e * e
                }
                if err < best { best = err; s = cand }
            }
        }
        for d in 0..<count { v[d] = min(7, max(-8, (v[d] / s).rounded(.toNearestOrEven))) * s }
    }
}

/// A `fireq-packed` folder run with FireQ's numerics (FIREQ-METHOD.md §2.4–2.5, §3.3): INT4×FP8
/// linears, post-RoPE S, Q in FP8 per (token, head), K/V in INT4 per (token, KV head) with FP8
/// scales, FP32 softmax attention; embeddings, norms and lm_head in their stored precision, or the
/// lm_head as INT8 rows (`Int8Head`) when the recipe says `lm_head.format: "int8"`.
/// Every numeric option of the stored recipe is honoured.
public final class QuantizedModel: CausalLanguageModel, @unchecked Sendable {
    public let config: ModelConfig
    let blocks: QuantizedBlocks
    let finalNorm: FloatBuffer
    /// The input embedding in its stored 16 bits (nil when the tied table is the INT8 head).
    let embedTable: PackedMatrix?
    /// The lm_head in its stored 16 bits, widened panel by panel (nil with the INT8 head).
    let lmHead: PackedMatrix?
    /// The lm_head as INT8 rows (recipe `lm_head.format: "int8"`, `--numerics fireq` only).
    let int8Head: Int8Head?
    private let headLock = NSLock()
    private var logitsBlock: FloatBuffer?
    // What the decoder reads of the layer stack.
    var forward: LlamaForward { blocks.forward }
    var layers: [QuantizedBlocks.QuantizedLayer] { blocks.layers }
    var activationsFP8: Bool { blocks.activationsFP8 }
    var outputBF16: Bool { blocks.outputBF16 }
    func quantizeAttentionInputs(
        _ L: QuantizedBlocks.QuantizedLayer, layer: Int, qkv: UnsafeMutablePointer<Float>, rows: Int, seqLen: Int,
        firstPosition: Int = 0
    ) {
        blocks.quantizeAttentionInputs(
            L, layer: layer, qkv: qkv, rows: rows, seqLen: seqLen, firstPosition: firstPosition)
    }

    public let numerics: RuntimeNumerics

    /// Loads a packed folder (every tensor's CRC-32 checked first): the numerics its recipe and
    /// `numerics` ask for, then each layer, then the 16-bit (or INT8) embedding and lm_head. The
    /// file's pages are handed back as each tensor is expanded (resident memory is then the
    /// expanded weights, not the weights plus the file).
    public init(directory: String, threads: Int, numerics: RuntimeNumerics = .fireq) throws {
        let packed = try PackedModel(directory: directory)
        try packed.verify(threads: threads)
        packed.file.releasePages(prefix: "")
        let c = try ModelConfig(directory: directory)
        config = c
        self.numerics = numerics
        let (n, headInt8) = try Self.blockNumerics(packed, config: c, numerics: numerics)
        // Layers are independent: loaded on `threads` threads (unpacking and repacking the INT4
        // codes is most of a load), each into its slot; the first failing layer's error is thrown.
        let slots = LoadSlots<QuantizedBlocks.QuantizedLayer>(count: c.layerCount)
        Parallel.forEachChunk(c.layerCount, chunk: 1, threads: threads) { r in
            for i in r {
                defer { packed.file.releasePages(prefix: TensorNames.layerPrefix(i)) }
                slots.set(
                    i,
                    Result {
                        try Self.layer(
                            i, of: packed, config: c, full: numerics == .fireq, fp8Rerounding: n.fp8Rerounding)
                    })
            }
        }
        let layers = try slots.values()
        blocks = QuantizedBlocks(config: c, layers: layers, numerics: n, threads: threads)
        let headName = c.tieWordEmbeddings ? TensorNames.embed : TensorNames.lmHead
        int8Head = headInt8 ? try Self.int8Table(headName, of: packed, config: c) : nil
        embedTable =
            int8Head != nil && c.tieWordEmbeddings ? nil : try Self.table(TensorNames.embed, of: packed, config: c)
        lmHead =
            int8Head != nil
            ? nil : (c.tieWordEmbeddings ? embedTable : try Self.table(TensorNames.lmHead, of: packed, config: c))
        finalNorm = FloatBuffer(c.normScales(stored: try packed.file.float32(TensorNames.finalNorm)))
        packed.file.releasePages(prefix: "")
    }

    /// What the blocks compute: the packed recipe's numerics under `numerics` (`.fireq` all of
    /// them; `.weightsOnly` and `.int4Activations` drop the run-time roundings), checked against
    /// the model; and whether the lm_head is the INT8 one.
    static func blockNumerics(
        _ packed: PackedModel, config c: ModelConfig, numerics: RuntimeNumerics
    ) throws -> (BlockNumerics, headInt8: Bool) {
        let r = packed.recipe, full = numerics == .fireq
        var n = BlockNumerics()
        n.fp8Rerounding = full && packed.fp8Rerounding
        n.activationsFP8 = numerics != .weightsOnly && r["activations"]?["format"]?.stringValue != "fp32"
        n.outputBF16 = full && (r["activations"]?["output_bf16"]?.boolValue ?? false)
        n.queryFP8 = full && r["attention"]?["q_format"]?.stringValue != "fp32"
        n.kvInt4 = full && !(r["attention"]?["kv_bits"]?.isNull ?? false)
        n.qkHadamard = full && (r["attention"]?["qk_hadamard"]?.boolValue ?? false)
        n.kvGroupSize = r["attention"]?["kv_group_size"]?.intValue
        n.kvScaleSearch = full && (r["attention"]?["kv_scale_search"]?.boolValue ?? false)
        n.kvSignedScales = r["attention"]?["kv_signed_scales"]?.boolValue ?? false
        func refuse(_ reason: String) -> PackedError { PackedError(path: packed.directory, reason: reason) }
        if let kc = r["attention"]?["kv_center"], !kc.isNull {
            guard kc.stringValue == "bias" else {
                throw refuse("its recipe's attention.kv_center is not null or \"bias\"")
            }
            n.kvCenter = full
        }
        let kvGroup = n.kvGroupSize ?? c.headDim
        let headFormat = r["lm_head"]?["format"]?.stringValue ?? "source"
        guard headFormat == "source" || headFormat == "int8" else {
            throw refuse("its recipe's lm_head.format '\(headFormat)' is neither 'source' nor 'int8'")
        }
        if headFormat == "int8" && c.hiddenSize % 2 != 0 {
            throw refuse(
                "its recipe's INT8 lm_head adds inputs in pairs and needs an even hidden size, not \(c.hiddenSize)")
        }
        if n.qkHadamard && (c.headDim & (c.headDim - 1)) != 0 {
            throw refuse(
                "its recipe rotates Q/K (attention.qk_hadamard), which needs a power-of-two head_dim, not \(c.headDim)")
        }
        guard kvGroup >= 1, c.headDim % kvGroup == 0 else {
            throw refuse("its recipe's attention.kv_group_size \(kvGroup) does not divide head_dim \(c.headDim)")
        }
        return (n, full && headFormat == "int8")
    }

    /// Layer `i` as the runtime holds it: norms as scales, the seven packed linears with their
    /// biases, q/k norms and (under `full` numerics) the post-RoPE scales.
    static func layer(
        _ i: Int, of packed: PackedModel, config c: ModelConfig, full: Bool, fp8Rerounding: Bool
    ) throws -> QuantizedBlocks.QuantizedLayer {
        typealias N = TensorNames
        let f = packed.file, p = N.layerPrefix(i), s = p + N.qkvSupply
        func ints(_ name: String) throws -> [Int] {
            guard full, let t = f.info(name), t.dtype == .i32 else { return [] }
            let raw = f.rawBytes(t)
            return (0..<t.elementCount).map {
                Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)))
            }
        }
        func scales(_ name: String) throws -> [Float] { full && f.info(name) != nil ? try f.float32(name) : [] }
        func part(_ n: String) throws -> (linear: PackedLinear, bias: [Float]?) {
            let bias = f.info(p + n + ".bias") != nil ? try f.float32(p + n + ".bias") : nil
            if f.info(p + n + ".weight_scale") == nil {
                throw PackedError(
                    path: packed.weightsPath,
                    reason:
                        "layer \(i) is stored unquantized (skipped by the recipe); the runtime needs every layer quantized"
                )
            }
            return (try packed.linear(p + n), bias)
        }
        let norms = N.norms(c)
        func norm(_ name: String) throws -> [Float] { c.normScales(stored: try f.float32(p + name)) }
        var outputNorms: (attention: [Float], mlp: [Float])? = nil
        if let a = norms.attentionOutput, let m = norms.mlpOutput { outputNorms = (try norm(a), try norm(m)) }
        return try QuantizedBlocks.QuantizedLayer(
            inputNorm: try norm(norms.attentionInput), mlpInputNorm: try norm(norms.mlpInput),
            outputNorms: outputNorms, linears: try N.linears.map(part),
            keyChannels: try ints(s + "post_k_smooth.top_k_indices"), keyScales: try scales(s + "post_k_smooth.smooth"),
            queryChannels: try ints(s + "post_q_smooth.top_k_indices"),
            queryScales: try scales(s + "post_q_smooth.smooth"),
            qNorm: c.qkNorm ? try norm(N.qNorm) : nil, kNorm: c.qkNorm ? try norm(N.kNorm) : nil,
            fp8Rerounding: fp8Rerounding)
    }

    /// The embedding or lm_head in its stored 16 bits (widened panel by panel in the kernels);
    /// the file's pages go as soon as each panel is copied.
    static func table(_ name: String, of packed: PackedModel, config c: ModelConfig) throws -> PackedMatrix {
        let f = packed.file, (rows, cols) = (c.vocabSize, c.hiddenSize)
        if let t = f.info(name), t.dtype == .f16 || t.dtype == .bf16, t.shape == [rows, cols] {
            defer { f.releasePages(t) }
            return PackedMatrix(rowMajor16: f.rawBytes(t).baseAddress!, bf16: t.dtype == .bf16, rows: rows, cols: cols)
            {
                f.releasePages(t, bytes: $0)
            }
        }
        let w = try f.float32(name)
        return w.withUnsafeBufferPointer { PackedMatrix(rowMajor: $0.baseAddress!, rows: rows, cols: cols) }
    }

    /// The INT8 head, made from the stored table (Formats/runtime-numerics.md "INT8 lm_head").
    static func int8Table(_ name: String, of packed: PackedModel, config c: ModelConfig) throws -> Int8Head {
        let f = packed.file, (rows, cols) = (c.vocabSize, c.hiddenSize)
        if let t = f.info(name), t.dtype == .f16 || t.dtype == .bf16, t.shape == [rows, cols] {
            defer { f.releasePages(t) }
            return Int8Head(rowMajor16: f.rawBytes(t).baseAddress!, bf16: t.dtype == .bf16, rows: rows, cols: cols)
        }
        let w = try f.float32(name)
        return w.withUnsafeBufferPointer { Int8Head(rowMajor: $0.baseAddress!, rows: rows, cols: cols) }
    }

    /// Bytes of weights held in memory: INT4 codes and scales, 16-bit embedding / lm_head, norms.
    public var residentWeightBytes: Int {
        let linears = layers.reduce(0) { $0 + [$1.qkv, $1.o, $1.gateUp, $1.down].reduce(0) { $0 + $1.weightBytes } }
        let norms = 4 * config.hiddenSize * (TensorNames.norms(config).all.count * config.layerCount + 1)
        let tables =
            (embedTable?.byteCount ?? 0) + (int8Head?.byteCount ?? 0)
            + (lmHead != nil && !config.tieWordEmbeddings ? lmHead!.byteCount : 0)
        return linears + tables + norms
    }

    /// logits[r, :] of `rows` final-normed hidden rows into `out` (rows, vocab).
    public func logits(hidden: UnsafePointer<Float>, rows: Int, out: UnsafeMutablePointer<Float>) {
        if let int8Head {
            int8Head.logits(hidden: hidden, count: rows, out: out, ldo: config.vocabSize, threads: forward.threads)
        } else {
            LinearAlgebra.linear(
                x: hidden, ldx: config.hiddenSize, m: rows, w: lmHead!, y: out, ldy: config.vocabSize,
                threads: forward.threads)
        }
    }

    public func nll(hidden: UnsafePointer<Float>, targets: [Int32], rowBlock: Int) -> [Double] {
        headLock.lock(); defer { headLock.unlock() }
        let V = config.vocabSize
        let block: FloatBuffer
        if let b = logitsBlock, b.count >= rowBlock * V {
            block = b
        } else {
            block = FloatBuffer(count: rowBlock * V, zeroed: false); logitsBlock = block
        }
        return LlamaModel.blockedNLL(
            vocab: V, hiddenSize: config.hiddenSize, hidden: hidden, targets: targets, rowBlock: rowBlock,
            threads: forward.threads, block: block
        ) { logits(hidden: $0, rows: $1, out: $2) }
    }

    public func hiddenStates(_ sequences: [[Int32]], observer: ForwardObserver? = nil) -> FloatBuffer {
        blocks.lock.lock(); defer { blocks.lock.unlock() }
        let T = sequences.first?.count ?? 0, rows = sequences.count * T
        let h = FloatBuffer(count: rows * config.hiddenSize, zeroed: false)
        embed(sequences.flatMap { $0 }, into: h.pointer)
        for li in layers.indices {
            blocks.layer(li, hidden: h.pointer, batch: sequences.count, seqLen: T, observer: observer)
        }
        forward.rmsNorm(h.pointer, rows: rows, weight: finalNorm.pointer, out: h.pointer)
        return h
    }

    /// Copies the embeddings of `tokens` into `out` (tokens.count, hidden), × the family's
    /// embedding scale. Ids must be < vocab.
    public func embed(_ tokens: [Int32], into out: UnsafeMutablePointer<Float>) {
        if let embedTable { return LlamaModel.embed(tokens, from: embedTable, config: config, into: out) }
        let h = config.hiddenSize, scale = config.embeddingScale
        for (r, t) in tokens.enumerated() {
            precondition(t >= 0 && Int(t) < config.vocabSize, "token id \(t) outside the vocabulary")
            int8Head!.copyRow(Int(t), into: out + r * h)
            if scale != 1 { for j in 0..<h { out[r * h + j] *= scale } }
        }
    }

    /// Runs decoder layer `index` alone, in place, on `hidden` (one sequence of `seqLen` rows).
    public func runLayer(_ index: Int, hidden: UnsafeMutablePointer<Float>, seqLen: Int) {
        blocks.runLayer(index, hidden: hidden, seqLen: seqLen)
    }
}

/// Results of independent loads, written by index from concurrent work items (each slot once).
final class LoadSlots<T>: @unchecked Sendable {
    private var slots: [Result<T, Error>?]
    private let lock = NSLock()
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result<T, Error>) { lock.lock(); slots[i] = r; lock.unlock() }
    /// Every value in order, or the error of the first slot that failed.
    func values() throws -> [T] { try slots.map { try $0!.get() } }
}
