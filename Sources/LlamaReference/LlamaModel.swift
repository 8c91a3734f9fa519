import CFireQKernels
import Foundation
import Kernels
import ModelDescription
import TensorStore

/// What perplexity evaluation needs from a model: final-normed hidden states and token NLLs.
public protocol CausalLanguageModel: AnyObject {
    var config: ModelConfig { get }
    func hiddenStates(_ sequences: [[Int32]], observer: ForwardObserver?) -> FloatBuffer
    func nll(hidden: UnsafePointer<Float>, targets: [Int32], rowBlock: Int) -> [Double]
    /// logits[r, :] of `rows` final-normed hidden rows into `out` (rows, vocab).
    func logits(hidden: UnsafePointer<Float>, rows: Int, out: UnsafeMutablePointer<Float>)
    /// The embeddings of `tokens` into `out` (tokens.count, hidden).
    func embed(_ tokens: [Int32], into out: UnsafeMutablePointer<Float>)
    /// Runs decoder layer `index` alone, in place, on `hidden` (one sequence of `seqLen` rows):
    /// comparisons feed every layer the baseline's input to measure the error it adds by itself.
    func runLayer(_ index: Int, hidden: UnsafeMutablePointer<Float>, seqLen: Int)
}

/// A whole Llama-family model in FP32 (the reference), loaded from a Hugging Face folder.
public final class LlamaModel: CausalLanguageModel, @unchecked Sendable {
    public let config: ModelConfig
    public let forward: LlamaForward
    /// (vocab, hidden), packed; rows are gathered for the embedding lookup.
    public let embed: PackedMatrix
    public let layers: [LlamaLayerWeights]
    public let finalNorm: FloatBuffer  // (hidden)
    /// (vocab, hidden); the embedding matrix itself when tied.
    public let lmHead: PackedMatrix

    public init(
        config: ModelConfig, embed: PackedMatrix, layers: [LlamaLayerWeights], finalNorm: FloatBuffer,
        lmHead: PackedMatrix, threads: Int
    ) {
        self.config = config
        self.forward = LlamaForward(config: config, threads: threads)
        self.embed = embed; self.layers = layers; self.finalNorm = finalNorm; self.lmHead = lmHead
    }

    /// Loads config.json and the safetensors weights (strictly checked: nothing missing, nothing extra).
    public convenience init(directory: String, threads: Int) throws {
        let config = try ModelConfig(directory: directory)
        let ckpt = try Checkpoint(directory: directory)
        try TensorNames.validate(ckpt, config: config)
        func packed(_ name: String) throws -> PackedMatrix { try Self.vocabMatrix(ckpt, name: name, config: config) }
        let embed = try packed(TensorNames.embed)
        var layers: [LlamaLayerWeights] = []
        for i in 0..<config.layerCount { layers.append(try LlamaLayerWeights.load(ckpt, layer: i, config: config)) }
        let norm = FloatBuffer(
            config.normScales(stored: try ckpt.float32(TensorNames.finalNorm, shape: [config.hiddenSize])))
        let head = config.tieWordEmbeddings ? embed : try packed(TensorNames.lmHead)
        self.init(config: config, embed: embed, layers: layers, finalNorm: norm, lmHead: head, threads: threads)
    }

    /// A (vocab, hidden) matrix (embeddings or lm_head) packed for row gathers and linears: F16 /
    /// BF16 kept in 16 bits as stored, other dtypes widened to FP32.
    public static func vocabMatrix(_ ckpt: Checkpoint, name: String, config: ModelConfig) throws -> PackedMatrix {
        let (rows, cols) = (config.vocabSize, config.hiddenSize)
        let (f, t) = try ckpt.file(for: name)
        if (t.dtype == .f16 || t.dtype == .bf16) && t.shape == [rows, cols] {
            defer { f.releasePages(t) }  // kept in 16 bits, as stored
            return PackedMatrix(rowMajor16: f.rawBytes(t).baseAddress!, bf16: t.dtype == .bf16, rows: rows, cols: cols)
            {
                f.releasePages(t, bytes: $0)
            }
        }
        let w = try ckpt.float32(name, shape: [rows, cols])
        return w.withUnsafeBufferPointer { PackedMatrix(rowMajor: $0.baseAddress!, rows: rows, cols: cols) }
    }

    /// Bytes of weights held in memory (packed panels, 16-bit where exact, and norms).
    public var residentWeightBytes: Int {
        let linears = layers.reduce(0) {
            $0 + $1.qkv.byteCount + $1.o.byteCount + $1.gateUp.byteCount + $1.down.byteCount
        }
        let norms = 4 * config.hiddenSize * (TensorNames.norms(config).all.count * config.layerCount + 1)
        return linears + embed.byteCount + (config.tieWordEmbeddings ? 0 : lmHead.byteCount) + norms
    }

    /// Copies the embeddings of `tokens` into `out` (tokens.count, hidden), × the family's
    /// embedding scale (√hidden for Gemma). Ids must be < vocab.
    public func embed(_ tokens: [Int32], into out: UnsafeMutablePointer<Float>) {
        Self.embed(tokens, from: embed, config: config, into: out)
    }

    /// The embedding lookup every engine shares: rows of `table`, × `config.embeddingScale`.
    public static func embed(
        _ tokens: [Int32], from table: PackedMatrix, config: ModelConfig, into out: UnsafeMutablePointer<Float>
    ) {
        let h = config.hiddenSize, scale = config.embeddingScale
        for (r, t) in tokens.enumerated() {
            precondition(t >= 0 && Int(t) < config.vocabSize, "token id \(t) outside the vocabulary")
            table.copyRow(Int(t), into: out + r * h)
            if scale != 1 { for j in 0..<h { out[r * h + j] *= scale } }
        }
    }

    private var cachedWorkspace: LlamaForward.Workspace?
    private var cachedLogits: FloatBuffer?
    /// Serialises passes that use the cached buffers (callers on several threads share a model).
    private let passLock = NSLock()

    /// A workspace for `rows` rows of sequences up to `seqLen` long, reused across calls
    /// (fresh multi-megabyte buffers per window cost more in page clearing than attention).
    func workspace(rows: Int, seqLen: Int) -> LlamaForward.Workspace {
        if let w = cachedWorkspace, w.rows >= rows, w.seqLen >= seqLen { return w }
        let w = LlamaForward.Workspace(config: config, rows: rows, seqLen: seqLen, threads: forward.threads)
        cachedWorkspace = w
        return w
    }

    /// Final-normed hidden states (batch × seqLen, hidden) of equal-length sequences.
    /// Concurrent calls on one model run one after another (they share the cached workspace).
    public func hiddenStates(_ sequences: [[Int32]], observer: ForwardObserver? = nil) -> FloatBuffer {
        passLock.lock()
        defer { passLock.unlock() }
        let T = sequences.first?.count ?? 0
        precondition(sequences.allSatisfy { $0.count == T }, "sequences of a batch must have equal length")
        let rows = sequences.count * T
        let h = FloatBuffer(count: rows * config.hiddenSize, zeroed: false)
        embed(sequences.flatMap { $0 }, into: h.pointer)
        let ws = workspace(rows: rows, seqLen: T)
        for L in layers {
            forward.layer(L, hidden: h.pointer, batch: sequences.count, seqLen: T, workspace: ws, observer: observer)
        }
        forward.rmsNorm(h.pointer, rows: rows, weight: finalNorm.pointer, out: h.pointer)
        return h
    }

    public func runLayer(_ index: Int, hidden: UnsafeMutablePointer<Float>, seqLen: Int) {
        passLock.lock()
        defer { passLock.unlock() }
        forward.layer(
            layers[index], hidden: hidden, batch: 1, seqLen: seqLen, workspace: workspace(rows: seqLen, seqLen: seqLen))
    }

    /// logits[r, :] = hidden[r, :] · lm_headᵀ for `rows` rows into `out` (rows, vocab).
    public func logits(hidden: UnsafePointer<Float>, rows: Int, out: UnsafeMutablePointer<Float>) {
        LinearAlgebra.linear(
            x: hidden, ldx: config.hiddenSize, m: rows, w: lmHead, y: out, ldy: config.vocabSize,
            threads: forward.threads)
    }

    /// Full logits of one sequence (seqLen, vocab).
    public func logits(_ tokens: [Int32]) -> [Float] {
        let h = hiddenStates([tokens])
        var out = [Float](repeating: 0, count: tokens.count * config.vocabSize)
        out.withUnsafeMutableBufferPointer { logits(hidden: h.pointer, rows: tokens.count, out: $0.baseAddress!) }
        return out
    }

    /// Negative log-likelihood of `targets[r]` under the logits of hidden row r, for every row,
    /// computed in blocks of rows so the (rows, vocab) logits never exist at once.
    public func nll(hidden: UnsafePointer<Float>, targets: [Int32], rowBlock: Int = 256) -> [Double] {
        passLock.lock()
        defer { passLock.unlock() }
        let V = config.vocabSize
        let block: FloatBuffer
        if let b = cachedLogits, b.count >= rowBlock * V {
            block = b
        } else {
            block = FloatBuffer(count: rowBlock * V, zeroed: false)
            cachedLogits = block
        }
        return Self.blockedNLL(
            vocab: V, hiddenSize: config.hiddenSize, hidden: hidden, targets: targets, rowBlock: rowBlock,
            threads: forward.threads, block: block
        ) { logits(hidden: $0, rows: $1, out: $2) }
    }

    /// −log softmax(logits)[target] of every row, the logits made `rowBlock` rows at a time into
    /// `block` (≥ rowBlock · vocab floats) by `logits(hidden rows, count, out)`; the log-sum-exp in
    /// the fixed lanes of `fq_logsumexp`. Shared by every engine's output head.
    public static func blockedNLL(
        vocab V: Int, hiddenSize: Int, hidden: UnsafePointer<Float>, targets: [Int32], rowBlock: Int,
        threads: Int, block: FloatBuffer,
        logits: (UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>) -> Void
    ) -> [Double] {
        var result = [Double](repeating: 0, count: targets.count)
        var r0 = 0
        while r0 < targets.count {
            let m = min(rowBlock, targets.count - r0)
            logits(hidden + r0 * hiddenSize, m, block.pointer)
            let bp = SendablePointer(block.pointer)
            let res = result.withUnsafeMutableBufferPointer { SendablePointer($0.baseAddress!) }
            let tg = targets
            let base = r0
            Parallel.forEachChunk(m, chunk: 4, threads: threads) { rr in
                for i in rr {
                    let row = bp.p + i * V
                    let lse = fq_logsumexp(row, V)
                    res.p[base + i] = lse - Double(row[Int(tg[base + i])])
                }
            }
            r0 += m
        }
        return result
    }
}
