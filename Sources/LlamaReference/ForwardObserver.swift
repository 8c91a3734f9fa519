/// Named points of the forward pass where observers see activations (calibration taps).
public enum Tap: String, Sendable, CaseIterable {
    /// Input of q/k/v (input_layernorm output), (rows, hidden).
    case attentionInput = "attn"
    /// q_proj / k_proj / v_proj outputs before RoPE, (rows, qDim) / (rows, kvDim).
    case qPreRope = "q_pre_rope", kPreRope = "k_pre_rope", v = "v"
    /// Q and K after RoPE, (rows, qDim) / (rows, kvDim).
    case qPostRope = "q_post_rope", kPostRope = "k_post_rope"
    /// k − b (the k_proj bias) before and after RoPE, (rows, kvDim): only for a model with a
    /// k_proj bias, and only when an observer is attached (calibration).
    case kPreRopeUnbiased = "k_pre_rope_unbiased", kPostRopeUnbiased = "k_post_rope_unbiased"
    /// Input of o_proj (attention output), (rows, qDim).
    case oProjInput = "o_proj"
    /// Input of gate/up (post_attention_layernorm output), (rows, hidden).
    case mlpInput = "mlp"
    /// Input of down_proj, SiLU(gate)⊙up, (rows, inter).
    case downProjInput = "down_proj"
    /// The residual stream after the whole decoder layer, (rows, hidden) (comparisons).
    case layerOutput = "layer_out"
}

/// A view of a (rows, cols) activation matrix whose rows are `rowStride` floats apart.
public struct ActivationView {
    public let base: UnsafePointer<Float>
    public let rows: Int
    public let cols: Int
    public let rowStride: Int
    public init(base: UnsafePointer<Float>, rows: Int, cols: Int, rowStride: Int) {
        self.base = base; self.rows = rows; self.cols = cols; self.rowStride = rowStride
    }
    @inline(__always) public func row(_ r: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: base + r * rowStride, count: cols)
    }
}

/// Receives activations at taps. Called on the forward pass's thread, never concurrently;
/// rows are all tokens of the batch, in (sequence, position) order.
public protocol ForwardObserver: AnyObject {
    func observe(_ tap: Tap, layer: Int, _ view: ActivationView)
}
