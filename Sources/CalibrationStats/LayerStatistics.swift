import Foundation
import Kernels
import LlamaReference
import ModelDescription

/// Per-channel statistics of one linear-layer input (Formats/calibration-stats.md).
public struct InputStatistics: Sendable, Equatable {
    public var absmax: [Float]
    public var sumAbs: [Double]
    public var sumSq: [Double]
    public var count: Int
    /// One window's partial sums (each accumulated from 0 over the window's tokens in order).
    public struct WindowSums: Sendable, Equatable {
        public var sumAbs: [Double], sumSq: [Double], count: Int
        public init(sumAbs: [Double], sumSq: [Double], count: Int) {
            self.sumAbs = sumAbs; self.sumSq = sumSq; self.count = count
        }
    }
    /// The per-window partials, in window order, when kept (part files: Formats/calibration-stats.md).
    public var windows: [WindowSums]? = nil

    public init(channels: Int) {
        absmax = [Float](repeating: 0, count: channels)
        sumAbs = [Double](repeating: 0, count: channels)
        sumSq = [Double](repeating: 0, count: channels)
        count = 0
    }
    /// Adds one window's partial sums: the file's sums are 0 + S_0 + S_1 + … in window order
    /// (Formats/calibration-stats.md "Parts and their merge"), so a merge of parts repeats them.
    public mutating func add(window w: WindowSums, keep: Bool) {
        for c in sumAbs.indices { sumAbs[c] += w.sumAbs[c]; sumSq[c] += w.sumSq[c] }
        count += w.count
        if keep { windows = (windows ?? []) + [w] }
    }
    public var meanAbs: [Float] { sumAbs.map { Float($0 / Double(max(count, 1))) } }
    public var meanSq: [Float] { sumSq.map { Float($0 / Double(max(count, 1))) } }
}

/// The input taps whose statistics are stored, with their HDF5 names.
public enum InputTap: String, Sendable, CaseIterable {
    case attn, oProj = "o_proj", mlp, downProj = "down_proj"
    var tap: Tap {
        switch self {
        case .attn: return .attentionInput
        case .oProj: return .oProjInput
        case .mlp: return .mlpInput
        case .downProj: return .downProjInput
        }
    }
}

/// Everything FireQ and its baselines need from one decoder layer (FIREQ-METHOD.md §3–4).
public struct LayerStatistics: Sendable, Equatable {
    public let layer: Int
    /// [kvHeads, headDim/2]: max_t sqrt(k[h,j]² + k[h,j+D/2]²) before RoPE.
    public var kPreRopePairNormMax: [Float]
    /// [kvHeads, headDim]: max_t |k| after RoPE.
    public var kPostRopeAbsmax: [Float]
    /// [heads, headDim]: max_t |q| after RoPE.
    public var qPostRopeAbsmax: [Float]
    /// [kvHeads·headDim]: max_t |v|.
    public var vAbsmax: [Float]
    /// The same two key statistics for k − b (b the k_proj bias): only for models with one, nil
    /// otherwise (and in files written before they existed).
    public var kPreRopePairNormMaxUnbiased: [Float]?, kPostRopeAbsmaxUnbiased: [Float]?
    public var inputs: [InputTap: InputStatistics]

    public init(layer: Int, config c: ModelConfig) {
        self.layer = layer
        kPreRopePairNormMax = [Float](repeating: 0, count: c.kvHeadCount * c.headDim / 2)
        kPostRopeAbsmax = [Float](repeating: 0, count: c.kvDim)
        qPostRopeAbsmax = [Float](repeating: 0, count: c.qDim)
        vAbsmax = [Float](repeating: 0, count: c.kvDim)
        inputs = [
            .attn: InputStatistics(channels: c.hiddenSize), .oProj: InputStatistics(channels: c.qDim),
            .mlp: InputStatistics(channels: c.hiddenSize), .downProj: InputStatistics(channels: c.intermediateSize)
        ]
    }
}

private struct Shared<T>: @unchecked Sendable { let p: UnsafeMutablePointer<T> }

/// A forward observer that accumulates `LayerStatistics`. Per-channel work is split into fixed
/// column blocks over threads (each channel is owned by one block and visits rows in order), so
/// the result does not depend on the thread count.
public final class StatisticsCollector: ForwardObserver {
    public let config: ModelConfig
    public let threads: Int
    public private(set) var layers: [Int: LayerStatistics] = [:]
    /// Keep each window's partial sums in `InputStatistics.windows` (for part files). Every
    /// `observe` call is one window (the calibrator runs one window per layer call).
    public var keepsWindowSums = false

    public init(config: ModelConfig, threads: Int) {
        self.config = config
        self.threads = threads
    }

    /// Removes and returns the statistics of a finished layer.
    public func take(layer: Int) -> LayerStatistics? { layers.removeValue(forKey: layer) }

    public func observe(_ tap: Tap, layer: Int, _ view: ActivationView) {
        var s = layers[layer] ?? LayerStatistics(layer: layer, config: config)
        switch tap {
        case .attentionInput: accumulate(&s.inputs[.attn]!, view)
        case .oProjInput: accumulate(&s.inputs[.oProj]!, view)
        case .mlpInput: accumulate(&s.inputs[.mlp]!, view)
        case .downProjInput: accumulate(&s.inputs[.downProj]!, view)
        case .kPreRope: pairNormMax(&s.kPreRopePairNormMax, view)
        case .kPostRope: columnAbsmax(&s.kPostRopeAbsmax, view)
        case .qPostRope: columnAbsmax(&s.qPostRopeAbsmax, view)
        case .v: columnAbsmax(&s.vAbsmax, view)
        case .kPreRopeUnbiased:
            var m = s.kPreRopePairNormMaxUnbiased ?? [Float](repeating: 0, count: s.kPreRopePairNormMax.count)
            pairNormMax(&m, view)
            s.kPreRopePairNormMaxUnbiased = m
        case .kPostRopeUnbiased:
            var m = s.kPostRopeAbsmaxUnbiased ?? [Float](repeating: 0, count: s.kPostRopeAbsmax.count)
            columnAbsmax(&m, view)
            s.kPostRopeAbsmaxUnbiased = m
        case .qPreRope, .layerOutput: break
        }
        layers[layer] = s
    }

    private static let block = 64

    /// One call's rows (one window): maxima into `st`, sums from 0 into the window's partials,
    /// which are then added to `st`'s sums (in window order, as the file defines them).
    private func accumulate(_ st: inout InputStatistics, _ v: ActivationView) {
        precondition(v.cols == st.absmax.count)
        var w = InputStatistics.WindowSums(
            sumAbs: [Double](repeating: 0, count: v.cols), sumSq: [Double](repeating: 0, count: v.cols), count: v.rows)
        st.absmax.withUnsafeMutableBufferPointer { mx in
            w.sumAbs.withUnsafeMutableBufferPointer { sa in
                w.sumSq.withUnsafeMutableBufferPointer { sq in
                    let mxp = Shared(p: mx.baseAddress!), sap = Shared(p: sa.baseAddress!),
                        sqp = Shared(p: sq.baseAddress!)
                    let base = Shared(p: UnsafeMutablePointer(mutating: v.base))
                    Parallel.forEachChunk(v.cols, chunk: Self.block, threads: threads) { cols in
                        for r in 0..<v.rows {
                            let row = base.p + r * v.rowStride
                            for c in cols {
                                let x = row[c], a = abs(x)
                                if a > mxp.p[c] || a.isNaN { mxp.p[c] = a }
                                sap.p[c] += Double(a)
                                sqp.p[c] += Double(x) * Double(x)
                            }
                        }
                    }
                }
            }
        }
        st.add(window: w, keep: keepsWindowSums)
    }

    private func columnAbsmax(_ out: inout [Float], _ v: ActivationView) {
        precondition(v.cols == out.count)
        out.withUnsafeMutableBufferPointer { o in
            let op = Shared(p: o.baseAddress!), base = Shared(p: UnsafeMutablePointer(mutating: v.base))
            Parallel.forEachChunk(v.cols, chunk: Self.block, threads: threads) { cols in
                for r in 0..<v.rows {
                    let row = base.p + r * v.rowStride
                    for c in cols { let a = abs(row[c]); if a > op.p[c] || a.isNaN { op.p[c] = a } }
                }
            }
        }
    }

    private func pairNormMax(_ out: inout [Float], _ v: ActivationView) {
        let d = config.headDim, half = d / 2
        precondition(v.cols == config.kvDim && out.count == config.kvHeadCount * half)
        out.withUnsafeMutableBufferPointer { o in
            let op = Shared(p: o.baseAddress!), base = Shared(p: UnsafeMutablePointer(mutating: v.base))
            Parallel.forEachChunk(config.kvHeadCount, chunk: 1, threads: threads) { heads in
                for h in heads {
                    for r in 0..<v.rows {
                        let row = base.p + r * v.rowStride + h * d
                        for j in 0..<half {
                            let x = Double(row[j]), y = Double(row[j + half])
                            let n = Float((x * x + y * y).squareRoot())
                            if n > op.p[h * half + j] || n.isNaN { op.p[h * half + j] = n }
                        }
                    }
                }
            }
        }
    }
}
