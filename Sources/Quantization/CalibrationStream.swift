import CFireQKernels
import CalibrationStats
import Kernels
import LlamaReference
import ModelDescription
import TensorStore

/// The calibration windows' hidden states, advanced one decoder layer at a time (GPTQ's
/// layer-streamed pass, Formats/calibration-stats.md "GPTQ Hessians"): memory is the windows'
/// residual stream (N·L·hidden floats), one layer's scratch and one layer's Hessians.
final class CalibrationStream {
    let config: ModelConfig
    let forward: LlamaForward
    let windows: Int, seqLen: Int
    let hidden: FloatBuffer
    let scratch: FloatBuffer
    let workspace: LlamaForward.Workspace

    init(checkpoint: Checkpoint, config c: ModelConfig, tokens: [[Int32]], threads: Int) throws {
        config = c
        forward = LlamaForward(config: c, threads: threads)
        windows = tokens.count
        seqLen = tokens.first?.count ?? 0
        hidden = FloatBuffer(count: windows * seqLen * c.hiddenSize, zeroed: false)
        scratch = FloatBuffer(count: seqLen * c.hiddenSize, zeroed: false)
        workspace = LlamaForward.Workspace(config: c, rows: seqLen, seqLen: seqLen, threads: threads)
        let embed = try LlamaModel.vocabMatrix(checkpoint, name: TensorNames.embed, config: c)
        for (w, seq) in tokens.enumerated() {
            LlamaModel.embed(seq, from: embed, config: c, into: hidden.pointer + w * seqLen * c.hiddenSize)
        }
    }

    /// Runs layer `L` on every window: in place when `advance`, else on a copy (the stream stays).
    func run(_ L: LlamaLayerWeights, observer: ForwardObserver?, advance: Bool) {
        let H = config.hiddenSize
        for w in 0..<windows {
            let x = hidden.pointer + w * seqLen * H
            if advance {
                forward.layer(L, hidden: x, batch: 1, seqLen: seqLen, workspace: workspace, observer: observer)
            } else {
                scratch.pointer.update(from: x, count: seqLen * H)
                forward.layer(
                    L, hidden: scratch.pointer, batch: 1, seqLen: seqLen, workspace: workspace, observer: observer)
            }
        }
    }
}

/// H = Σ_t x_t x_tᵀ (FP32, fixed order: each window's tokens in order by the FP32 linear kernel's
/// chain, windows added in order) at the four linear inputs of one layer.
final class HessianObserver: ForwardObserver {
    let threads: Int
    private(set) var hessians: [InputTap: FloatBuffer] = [:]
    private var transposed: [Float] = []

    init(config c: ModelConfig, threads: Int) {
        self.threads = threads
        for (tap, k) in [
            (InputTap.attn, c.hiddenSize), (.oProj, c.qDim), (.mlp, c.hiddenSize), (.downProj, c.intermediateSize)
        ] {
            hessians[tap] = FloatBuffer(count: k * k)
        }
    }

    static func inputTap(_ tap: Tap) -> InputTap? {
        switch tap {
        case .attentionInput: return .attn
        case .oProjInput: return .oProj
        case .mlpInput: return .mlp
        case .downProjInput: return .downProj
        default: return nil
        }
    }

    func observe(_ tap: Tap, layer: Int, _ v: ActivationView) {
        guard let t = Self.inputTap(tap), let h = hessians[t] else { return }
        let k = v.cols, n = v.rows
        if transposed.count < k * n { transposed = [Float](repeating: 0, count: k * n) }
        transposed.withUnsafeMutableBufferPointer { a in
            for r in 0..<n {
                let row = v.base + r * v.rowStride
                for j in 0..<k { a[j * n + r] = row[j] }
            }
            let w = PackedMatrix(rowMajor: a.baseAddress!, rows: k, cols: n, narrow: false)
            LinearAlgebra.linear(
                x: a.baseAddress!, ldx: n, m: k, w: w, y: h.pointer, ldy: k, accumulate: true, threads: threads)
        }
    }

    /// The Hessian of `tap` in Double, and its diagonal.
    func hessian(_ tap: InputTap) -> (h: [Double], diag: [Float]) {
        let b = hessians[tap]!
        let k = Int(Double(b.count).squareRoot())
        let h = (0..<b.count).map { Double(b.pointer[$0]) }
        return (h, (0..<k).map { b.pointer[$0 * k + $0] })
    }
}

/// The g×g diagonal blocks of C = Σ_t x_t x_tᵀ at the linear inputs of one layer
/// (`weights.scale_search_covariance`, Formats/recipe-schema.md): for each (input, g) asked for,
/// the k/g blocks in input order, each row-major, accumulated in Double over each window's tokens in
/// order, windows in order (each block owned by one thread, so the result does not depend on the
/// thread count). k·g values per input where GPTQ's H has k².
public final class CovarianceBlockObserver: ForwardObserver {
    public struct Key: Hashable, Sendable {
        public let tap: InputTap
        public let g: Int
        public init(tap: InputTap, g: Int) { self.tap = tap; self.g = g }
    }
    let threads: Int
    public private(set) var blocks: [Key: [Double]] = [:]

    public init(config c: ModelConfig, keys: Set<Key>, threads: Int) {
        self.threads = threads
        let width: [InputTap: Int] = [
            .attn: c.hiddenSize, .oProj: c.qDim, .mlp: c.hiddenSize, .downProj: c.intermediateSize
        ]
        for key in keys { blocks[key] = [Double](repeating: 0, count: width[key.tap]! * key.g) }
    }

    /// The blocks of inputs multiplied by f (input a by f[a]): B_ac · f_a · f_c, in Double.
    public static func scaled(_ blocks: [Double], g: Int, by f: [Float]) -> [Double] {
        precondition(blocks.count == f.count * g)
        var b = blocks
        for blk in 0..<(f.count / g) {
            for a in 0..<g {
                for c in 0..<g { b[(blk * g + a) * g + c] *= Double(f[blk * g + a]) * Double(f[blk * g + c]) }
            }
        }
        return b
    }

    public func observe(_ tap: Tap, layer: Int, _ v: ActivationView) {
        guard let t = HessianObserver.inputTap(tap) else { return }
        for key in blocks.keys where key.tap == t { accumulate(key, v) }
    }

    private func accumulate(_ key: Key, _ v: ActivationView) {
        let g = key.g, k = v.cols, rows = v.rows, stride = v.rowStride
        precondition(k % g == 0 && blocks[key]!.count == k * g)
        let x = SendableBuf(UnsafeBufferPointer(start: v.base, count: rows == 0 ? 0 : (rows - 1) * stride + k))
        blocks[key]!.withUnsafeMutableBufferPointer { bp in
            let out = SendableMutBuf(bp)
            Parallel.forEachChunk(k / g, chunk: 4, threads: threads) { range in
                // blk[a, c] += x_a · x_c over the tokens in order (CovarianceTests pins the C paths)
                for b in range where rows > 0 {
                    fq_cov_block_accumulate(x.b.baseAddress! + b * g, stride, rows, g, out.b.baseAddress! + b * g * g)
                }
            }
        }
    }
}

/// The covariance search's blocks for every layer, collected by the calibration pass itself
/// (Formats/calibration-stats.md "Covariance blocks"): `fireq convert` attaches it to its
/// calibration run so the quantizer needs no second pass over the windows, and `fireq quantize`
/// runs the same calibration pass over the statistics file's windows to fill it — the same
/// forward, the same order, so both write the same bytes.
public final class CovarianceBlockCollector: ForwardObserver {
    let config: ModelConfig
    let threads: Int
    /// Per layer, the (input, group size) pairs its search needs.
    public typealias Keys = [Int: Set<CovarianceBlockObserver.Key>]
    let keys: Keys
    private var current: (layer: Int, observer: CovarianceBlockObserver)?
    /// The finished layers' blocks (a layer is finished when the next one is first observed,
    /// or by `finish()`).
    public private(set) var layers: [Int: [CovarianceBlockObserver.Key: [Double]]] = [:]

    /// `keys[i]`: the (input, group size) pairs layer i's search needs (no entry: none).
    public init(config: ModelConfig, keys: Keys, threads: Int) {
        (self.config, self.keys, self.threads) = (config, keys, threads)
    }

    public func observe(_ tap: Tap, layer: Int, _ v: ActivationView) {
        guard let k = keys[layer], !k.isEmpty else { return }
        if current?.layer != layer {
            finish()
            current = (layer, CovarianceBlockObserver(config: config, keys: k, threads: threads))
        }
        current!.observer.observe(tap, layer: layer, v)
    }

    /// Files the layer being observed.
    public func finish() {
        if let (i, o) = current { layers[i] = o.blocks }
        current = nil
    }

    /// Whether every layer with keys has its blocks.
    public var isComplete: Bool {
        finish()
        return keys.allSatisfy { $0.value.isEmpty || layers[$0.key] != nil }
    }
}
