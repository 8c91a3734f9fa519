import Kernels
import ModelDescription
import TensorStore

/// FP32 weights of one decoder layer, with the projections that read the same input fused:
/// qkv = [q; k; v] rows ([qDim + 2·kvDim, hidden]) and gateUp = [gate; up] ([2·inter, hidden]).
/// Norms hold their scales γ (ModelConfig.normScales: 1 + w for Gemma), not the stored w.
public final class LlamaLayerWeights: @unchecked Sendable {
    public let index: Int
    public let inputNorm: FloatBuffer  // (hidden)
    public let mlpInputNorm: FloatBuffer  // (hidden)
    /// Sandwich norms (Gemma 3): on the attention and MLP outputs before the residual adds.
    public let attentionOutputNorm: FloatBuffer?, mlpOutputNorm: FloatBuffer?
    public let qkv: PackedMatrix  // (qDim + 2 kvDim, hidden)
    public let qkvBias: FloatBuffer?  // (qDim + 2 kvDim)
    public let o: PackedMatrix  // (hidden, qDim)
    public let gateUp: PackedMatrix  // (2 inter, hidden)
    public let down: PackedMatrix  // (hidden, inter)
    /// Per-head q / k RMSNorm weights (headDim each), Qwen3.
    public let qNorm: FloatBuffer?, kNorm: FloatBuffer?

    public init(
        index: Int, inputNorm: FloatBuffer, mlpInputNorm: FloatBuffer, qkv: PackedMatrix, qkvBias: FloatBuffer?,
        o: PackedMatrix, gateUp: PackedMatrix, down: PackedMatrix, qNorm: FloatBuffer? = nil, kNorm: FloatBuffer? = nil,
        attentionOutputNorm: FloatBuffer? = nil, mlpOutputNorm: FloatBuffer? = nil
    ) {
        self.index = index; self.inputNorm = inputNorm; self.mlpInputNorm = mlpInputNorm
        self.attentionOutputNorm = attentionOutputNorm; self.mlpOutputNorm = mlpOutputNorm
        self.qkv = qkv; self.qkvBias = qkvBias; self.o = o; self.gateUp = gateUp; self.down = down
        self.qNorm = qNorm; self.kNorm = kNorm
    }

    /// Loads layer `i` from the checkpoint (16-bit weights kept in 16 bits, others FP32; mapped pages
    /// released afterwards).
    public static func load(
        _ ckpt: Checkpoint, layer i: Int, config c: ModelConfig
    ) throws(TensorStoreError) -> LlamaLayerWeights {
        typealias N = TensorNames
        func norm(_ part: String, _ n: Int) throws(TensorStoreError) -> FloatBuffer {
            FloatBuffer(c.normScales(stored: try ckpt.float32(N.layer(i, part), shape: [n])))
        }
        let norms = N.norms(c)
        func stack(_ parts: [(String, Int)], cols: Int) throws(TensorStoreError) -> FloatBuffer {
            let rows = parts.reduce(0) { $0 + $1.1 }
            let buf = FloatBuffer(count: rows * cols, zeroed: false)
            var r = 0
            for (name, n) in parts {
                let (f, t) = try ckpt.file(for: N.layer(i, name))
                guard t.shape == (cols == 1 ? [n] : [n, cols]) else {
                    throw .wrongShape(
                        path: f.path, tensor: t.name, expected: cols == 1 ? [n] : [n, cols], found: t.shape)
                }
                try f.readFloat32(t, into: buf.pointer + r * cols)
                f.releasePages(t)
                r += n
            }
            return buf
        }
        func packed(_ parts: [(String, Int)], cols: Int) throws(TensorStoreError) -> PackedMatrix {
            // All parts F16 (or all BF16): stacked and packed in 16 bits, never widened (a fused
            // 8B-shape gate/up would otherwise pass through ~1 GB of FP32 copies).
            var located: [(SafetensorsFile, TensorInfo)] = []
            for (name, _) in parts { located.append(try ckpt.file(for: N.layer(i, name))) }
            let dtypes = Set(located.map(\.1.dtype))
            if dtypes.count == 1, let d = dtypes.first, d == .f16 || d == .bf16,
                zip(located, parts).allSatisfy({ $0.0.1.shape == [$0.1.1, cols] })
            {
                let rows = parts.reduce(0) { $0 + $1.1 }
                let buf = UnsafeMutableRawPointer.allocate(byteCount: max(1, rows * cols * 2), alignment: 64)
                defer { buf.deallocate() }
                var off = 0
                for (f, t) in located {
                    (buf + off).copyMemory(from: f.rawBytes(t).baseAddress!, byteCount: t.byteCount)
                    f.releasePages(t)
                    off += t.byteCount
                }
                return PackedMatrix(rowMajor16: buf, bf16: d == .bf16, rows: rows, cols: cols)
            }
            let b = try stack(parts, cols: cols)
            return PackedMatrix(rowMajor: b.pointer, rows: b.count / cols, cols: cols)
        }
        let qkv = try packed(
            [(N.q + ".weight", c.qDim), (N.k + ".weight", c.kvDim), (N.v + ".weight", c.kvDim)], cols: c.hiddenSize)
        let bias =
            c.attentionBias
            ? try stack([(N.q + ".bias", c.qDim), (N.k + ".bias", c.kvDim), (N.v + ".bias", c.kvDim)], cols: 1) : nil
        return LlamaLayerWeights(
            index: i,
            inputNorm: try norm(norms.attentionInput, c.hiddenSize),
            mlpInputNorm: try norm(norms.mlpInput, c.hiddenSize),
            qkv: qkv, qkvBias: bias,
            o: try packed([(N.o + ".weight", c.hiddenSize)], cols: c.qDim),
            gateUp: try packed(
                [(N.gate + ".weight", c.intermediateSize), (N.up + ".weight", c.intermediateSize)], cols: c.hiddenSize),
            down: try packed([(N.down + ".weight", c.hiddenSize)], cols: c.intermediateSize),
            qNorm: c.qkNorm ? try norm(N.qNorm, c.headDim) : nil, kNorm: c.qkNorm ? try norm(N.kNorm, c.headDim) : nil,
            attentionOutputNorm: try norms.attentionOutput.map { n throws(TensorStoreError) in try norm(n, c.hiddenSize)
            },
            mlpOutputNorm: try norms.mlpOutput.map { n throws(TensorStoreError) in try norm(n, c.hiddenSize) })
    }
}
