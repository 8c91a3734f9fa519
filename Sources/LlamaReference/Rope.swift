import Foundation
import ModelDescription

/// Rotary position embedding tables for HF `rotate_half` RoPE (matches transformers
/// `LlamaRotaryEmbedding`, including `linear` and `llama3` frequency scaling).
public struct Rope: Sendable {
    public let headDim: Int
    /// (headDim/2) inverse frequencies, FP32 as transformers computes them.
    public let invFreq: [Float]

    /// The tables of the global layers, or with `sliding` of the sliding-window layers (their own
    /// base, no frequency scaling: Gemma 3).
    public init(config c: ModelConfig, sliding: Bool = false) {
        headDim = c.headDim
        let half = c.headDim / 2
        let base = Float(sliding ? c.localRopeTheta : c.ropeTheta)
        var inv = (0..<half).map { j -> Float in 1 / powf(base, Float(2 * j) / Float(c.headDim)) }
        switch sliding ? .none : c.ropeScaling {
        case .none: break
        case .linear(let factor):
            inv = inv.map { $0 / Float(factor) }
        case .llama3(let factor, let low, let high, let orig):
            let lowWavelen = Double(orig) / low
            let highWavelen = Double(orig) / high
            inv = inv.map { f in
                let wavelen = 2 * Double.pi / Double(f)
                if wavelen < highWavelen { return f }
                if wavelen > lowWavelen { return Float(Double(f) / factor) }
                let smooth = (Double(orig) / wavelen - low) / (high - low)
                return Float((1 - smooth) * Double(f) / factor + smooth * Double(f))
            }
        }
        invFreq = inv
    }

    /// cos and sin of position `pos` for each of the headDim/2 frequencies (angle in FP32, as HF).
    public func table(position pos: Int, cos c: UnsafeMutablePointer<Float>, sin s: UnsafeMutablePointer<Float>) {
        for j in 0..<invFreq.count {
            let angle = Float(pos) * invFreq[j]
            c[j] = Float(Foundation.cos(Double(angle)))
            s[j] = Float(Foundation.sin(Double(angle)))
        }
    }

    /// Rotates one head vector in place: x[j], x[j+D/2] → (x1 cos − x2 sin, x2 cos + x1 sin).
    @inline(__always)
    public static func rotate(
        _ x: UnsafeMutablePointer<Float>, half: Int, cos c: UnsafePointer<Float>, sin s: UnsafePointer<Float>
    ) {
        for j in 0..<half {
            let x1 = x[j], x2 = x[j + half]
            x[j] = x1 * c[j] - x2 * s[j]
            x[j + half] = x2 * c[j] + x1 * s[j]
        }
    }
}
