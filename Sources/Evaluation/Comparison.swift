import CFireQKernels
import Foundation
import Kernels
import LlamaReference

/// Scores of one model on the windows of a comparison.
public struct ModelScores: Sendable {
    public var name: String
    /// Mean NLL over every predicted token of each window (protocol `all`).
    public var meanNLLAll: Double
    /// Mean NLL over the second half of each window (protocol `llamacpp`).
    public var meanNLLLlamacpp: Double
    /// Mean NLL of each window under the comparison's protocol.
    public var windowNLL: [Double]
    /// Against the baseline, over the comparison protocol's tokens (nil for the baseline itself):
    /// mean and 99th-percentile KL(baseline ‖ model) in nats, and the share of tokens whose argmax agrees.
    public var klMean: Double?
    public var klP99: Double?
    public var top1Agreement: Double?
    /// Per decoder layer: ‖h_model − h_baseline‖ / ‖h_baseline‖ of the residual stream after the
    /// layer, over all tokens of all windows (empty for the baseline).
    public var layerRelativeError: [Double]
    /// Per decoder layer, run alone on the baseline's input to that layer: ‖out − out_baseline‖ /
    /// ‖out_baseline − in‖, the error the layer adds by itself relative to what it contributes
    /// (empty for the baseline).
    public var layerIsolatedError: [Double] = []
    public var seconds: Double

    public init(name: String, meanNLLAll: Double, meanNLLLlamacpp: Double, windowNLL: [Double], klMean: Double?, klP99: Double?,
                top1Agreement: Double?, layerRelativeError: [Double], seconds: Double) {
        self.name = name; self.meanNLLAll = meanNLLAll; self.meanNLLLlamacpp = meanNLLLlamacpp; self.windowNLL = windowNLL
        self.klMean = klMean; self.klP99 = klP99; self.top1Agreement = top1Agreement
        self.layerRelativeError = layerRelativeError; self.seconds = seconds
    }

    public func meanNLL(_ p: PerplexityProtocol) -> Double { p == .all ? meanNLLAll : meanNLLLlamacpp }
    public func perplexity(_ p: PerplexityProtocol) -> Double { exp(meanNLL(p)) }
}

public struct CompareResult: Sendable {
    public var context: Int
    public var windows: Int
    public var scoring: PerplexityProtocol
    public var bos: Bool
    public var textTokens: Int
    /// Scored tokens per protocol over all windows.
    public var scoredTokensAll: Int
    public var scoredTokensLlamacpp: Int
    public var baseline: ModelScores
    public var models: [ModelScores]

    public init(context: Int, windows: Int, scoring: PerplexityProtocol, bos: Bool, textTokens: Int, scoredTokensAll: Int,
                scoredTokensLlamacpp: Int, baseline: ModelScores, models: [ModelScores]) {
        self.context = context; self.windows = windows; self.scoring = scoring; self.bos = bos; self.textTokens = textTokens
        self.scoredTokensAll = scoredTokensAll; self.scoredTokensLlamacpp = scoredTokensLlamacpp; self.baseline = baseline; self.models = models
    }
}

/// Runs a baseline and any number of models over the same windows (the protocol of `Perplexity`)
/// and measures what each model lost: perplexity under both protocols, KL divergence of its token
/// distributions from the baseline's, top-1 agreement and per-layer relative error of the residual stream.
public enum Comparison {
    public static func run(baseline: any CausalLanguageModel, models: [(name: String, model: any CausalLanguageModel)],
                           baselineName: String, tokens: [Int32], context: Int, maxWindows: Int?, scoring: PerplexityProtocol,
                           bos: Int32? = nil, source: String = "text", threads: Int,
                           progress: ((_ window: Int, _ windows: Int) -> Void)? = nil) throws -> CompareResult {
        let c = baseline.config
        for m in models {
            guard m.model.config.vocabSize == c.vocabSize, m.model.config.hiddenSize == c.hiddenSize,
                  m.model.config.layerCount == c.layerCount else {
                throw ComparisonError.mismatch(name: m.name, baseline: baselineName)
            }
        }
        let textPerWindow = bos == nil ? context : context - 1
        let available = tokens.count / textPerWindow
        guard available >= 1 else { throw PerplexityError.tooFewTokens(path: source, tokens: tokens.count, context: context) }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= c.vocabSize }) {
            throw PerplexityError.tokenOutOfRange(path: source, id: bad, vocab: c.vocabSize)
        }
        let windows = min(available, maxWindows ?? available)
        let V = c.vocabSize, H = c.hiddenSize, L = c.layerCount
        let predicted = context - 1                       // logits rows 0 ..< context−1 predict tokens 1 ..< context
        let half = context / 2                            // first row scored by the llamacpp protocol
        let first = scoring == .all ? 0 : half            // first row of the comparison protocol
        let kept = predicted - first                      // baseline logits rows kept for KL / top-1

        let capture = LayerCapture(layers: L, rows: context, hidden: H)
        let baseLogits = FloatBuffer(count: kept * V, zeroed: false)
        var baseLSE = [Double](repeating: 0, count: kept), baseTop = [Int](repeating: 0, count: kept)
        let block = 64
        let blockLogits = FloatBuffer(count: block * V, zeroed: false)

        struct Acc { var sumAll = 0.0, sumHalf = 0.0, windowNLL: [Double] = [], kl: [Double] = [], agree = 0, seconds = 0.0
                     var diff2: [Double], ref2: [Double], isoDiff2: [Double], isoRef2: [Double] }
        let zeros = [Double](repeating: 0, count: L)
        var acc = [Acc](repeating: Acc(diff2: zeros, ref2: zeros, isoDiff2: zeros, isoRef2: zeros), count: models.count + 1)
        let embedded = FloatBuffer(count: context * H), isolated = FloatBuffer(count: context * H)

        for w in 0..<windows {
            var seq = Array(tokens[(w * textPerWindow)..<((w + 1) * textPerWindow)])
            if let bos { seq.insert(bos, at: 0) }
            baseline.embed(seq, into: embedded.pointer)
            for mi in 0...models.count {
                let isBase = mi == 0
                let model = isBase ? baseline : models[mi - 1].model
                let t0 = Date()
                var isolatedSeconds = 0.0
                let observer: ForwardObserver = isBase ? capture : LayerDiff(reference: capture)
                let hidden = model.hiddenStates([seq], observer: observer)
                if let d = observer as? LayerDiff {
                    for l in 0..<L { acc[mi].diff2[l] += d.diff2[l]; acc[mi].ref2[l] += d.ref2[l] }
                    // Every layer alone on the baseline's input to it (not counted in the model's speed).
                    let isoStart = Date()
                    defer { isolatedSeconds = Date().timeIntervalSince(isoStart) }
                    let n = context * H
                    for l in 0..<L {
                        let input = l == 0 ? UnsafePointer(embedded.pointer) : UnsafePointer(capture.outputs[l - 1].pointer)
                        isolated.pointer.update(from: input, count: n)
                        model.runLayer(l, hidden: isolated.pointer, seqLen: context)
                        let ref = capture.outputs[l].pointer
                        var e = 0.0, r = 0.0
                        for j in 0..<n {
                            let o = Double(ref[j]), dq = Double(isolated.pointer[j]) - o, dc = o - Double(input[j])
                            e += dq * dq; r += dc * dc
                        }
                        acc[mi].isoDiff2[l] += e; acc[mi].isoRef2[l] += r
                    }
                }
                var sumAll = 0.0, sumHalf = 0.0
                var kl = [Double](repeating: 0, count: kept), agree = [Bool](repeating: false, count: kept)
                var nll = [Double](repeating: 0, count: predicted)
                var r0 = 0
                while r0 < predicted {
                    let m = min(block, predicted - r0)
                    model.logits(hidden: hidden.pointer + r0 * H, rows: m, out: blockLogits.pointer)
                    if isBase && r0 + m > first {
                        // The baseline keeps its logits of the scored rows for the models' KL.
                        let s0 = max(r0, first)
                        (baseLogits.pointer + (s0 - first) * V).update(from: blockLogits.pointer + (s0 - r0) * V, count: (r0 + m - s0) * V)
                    }
                    let nllP = nll.withUnsafeMutableBufferPointer { SendablePointer($0.baseAddress!) }
                    let klP = kl.withUnsafeMutableBufferPointer { SendablePointer($0.baseAddress!) }
                    let agP = agree.withUnsafeMutableBufferPointer { SendablePointer($0.baseAddress!) }
                    let lseP = baseLSE.withUnsafeMutableBufferPointer { SendablePointer($0.baseAddress!) }
                    let topP = baseTop.withUnsafeMutableBufferPointer { SendablePointer($0.baseAddress!) }
                    let bl = SendablePointer(baseLogits.pointer), src = SendablePointer(blockLogits.pointer)
                    let seqCopy = seq, base = r0
                    Parallel.forEachChunk(m, chunk: 4, threads: threads) { rr in
                        for i in rr {
                            let r = base + i
                            let row = src.p + i * V
                            let lse = fq_logsumexp(row, V)
                            nllP.p[r] = lse - Double(row[Int(seqCopy[r + 1])])
                            guard r >= first else { continue }
                            let kIdx = r - first
                            let top = fq_argmax(row, V)
                            if isBase {
                                lseP.p[kIdx] = lse; topP.p[kIdx] = top
                            } else {
                                klP.p[kIdx] = fq_kl_logits(bl.p + kIdx * V, lseP.p[kIdx], row, lse, V)
                                agP.p[kIdx] = top == topP.p[kIdx]
                            }
                        }
                    }
                    r0 += m
                }
                for r in 0..<predicted {
                    sumAll += nll[r]
                    if r >= half { sumHalf += nll[r] }
                }
                acc[mi].sumAll += sumAll; acc[mi].sumHalf += sumHalf
                acc[mi].windowNLL.append((scoring == .all ? sumAll : sumHalf) / Double(scoring == .all ? predicted : predicted - half))
                if !isBase {
                    acc[mi].kl.append(contentsOf: kl)
                    acc[mi].agree += agree.reduce(0) { $0 + ($1 ? 1 : 0) }
                }
                acc[mi].seconds += Date().timeIntervalSince(t0) - isolatedSeconds
            }
            progress?(w + 1, windows)
        }
        let nAll = windows * predicted, nHalf = windows * (predicted - half)
        func scores(_ i: Int, _ name: String) -> ModelScores {
            let a = acc[i]
            var s = ModelScores(name: name, meanNLLAll: a.sumAll / Double(nAll), meanNLLLlamacpp: a.sumHalf / Double(nHalf),
                                windowNLL: a.windowNLL, klMean: nil, klP99: nil, top1Agreement: nil, layerRelativeError: [], seconds: a.seconds)
            if i > 0 {
                let sorted = a.kl.sorted()
                s.klMean = a.kl.reduce(0, +) / Double(max(1, a.kl.count))
                s.klP99 = sorted.isEmpty ? 0 : sorted[max(0, Int((0.99 * Double(sorted.count)).rounded(.up)) - 1)]
                s.top1Agreement = Double(a.agree) / Double(max(1, a.kl.count))
                s.layerRelativeError = (0..<L).map { a.ref2[$0] > 0 ? (a.diff2[$0] / a.ref2[$0]).squareRoot() : 0 }
                s.layerIsolatedError = (0..<L).map { a.isoRef2[$0] > 0 ? (a.isoDiff2[$0] / a.isoRef2[$0]).squareRoot() : 0 }
            }
            return s
        }
        return CompareResult(context: context, windows: windows, scoring: scoring, bos: bos != nil, textTokens: tokens.count,
                                scoredTokensAll: nAll, scoredTokensLlamacpp: nHalf, baseline: scores(0, baselineName),
                                models: models.indices.map { scores($0 + 1, models[$0].name) })
    }
}

public enum ComparisonError: Error, Sendable, CustomStringConvertible {
    case mismatch(name: String, baseline: String)
    public var description: String {
        switch self {
        case .mismatch(let n, let b):
            return "\(n): the model's vocabulary, hidden size or layer count differs from the baseline \(b); compare a model with its own source."
        }
    }
}

/// Copies the residual stream after every decoder layer (the baseline's).
final class LayerCapture: ForwardObserver {
    let outputs: [FloatBuffer]
    let hidden: Int
    init(layers: Int, rows: Int, hidden: Int) {
        outputs = (0..<layers).map { _ in FloatBuffer(count: rows * hidden, zeroed: true) }
        self.hidden = hidden
    }
    func observe(_ tap: Tap, layer: Int, _ view: ActivationView) {
        guard tap == .layerOutput else { return }
        let dst = outputs[layer].pointer
        for r in 0..<view.rows { (dst + r * hidden).update(from: view.base + r * view.rowStride, count: view.cols) }
    }
}

/// Sums ‖h − h_ref‖² and ‖h_ref‖² per layer against a `LayerCapture` of the same window.
final class LayerDiff: ForwardObserver {
    let reference: LayerCapture
    var diff2: [Double], ref2: [Double]
    init(reference: LayerCapture) {
        self.reference = reference
        diff2 = .init(repeating: 0, count: reference.outputs.count)
        ref2 = diff2
    }
    func observe(_ tap: Tap, layer: Int, _ view: ActivationView) {
        guard tap == .layerOutput else { return }
        let ref = reference.outputs[layer].pointer, H = reference.hidden
        var d = 0.0, s = 0.0
        for r in 0..<view.rows {
            let a = view.base + r * view.rowStride, b = ref + r * H
            for j in 0..<view.cols {
                let x = Double(b[j]), e = Double(a[j]) - x
                d += e * e; s += x * x
            }
        }
        diff2[layer] += d; ref2[layer] += s
    }
}
