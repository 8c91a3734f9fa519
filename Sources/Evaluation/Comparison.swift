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

    public init(
        name: String, meanNLLAll: Double, meanNLLLlamacpp: Double, windowNLL: [Double], klMean: Double?, klP99: Double?,
        top1Agreement: Double?, layerRelativeError: [Double], seconds: Double
    ) {
        self.name = name; self.meanNLLAll = meanNLLAll; self.meanNLLLlamacpp = meanNLLLlamacpp;
        self.windowNLL = windowNLL
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

    public init(
        context: Int, windows: Int, scoring: PerplexityProtocol, bos: Bool, textTokens: Int, scoredTokensAll: Int,
        scoredTokensLlamacpp: Int, baseline: ModelScores, models: [ModelScores]
    ) {
        self.context = context; self.windows = windows; self.scoring = scoring; self.bos = bos;
        self.textTokens = textTokens
        self.scoredTokensAll = scoredTokensAll; self.scoredTokensLlamacpp = scoredTokensLlamacpp;
        self.baseline = baseline; self.models = models
    }
}

/// A model of a comparison, opened only when its turn comes: `open` returns the model and the
/// name its scores carry. The comparison drops each model before it opens the next, so its peak
/// memory is the largest model's, not the sum.
public struct ComparedModel {
    public var open: () throws -> (name: String, model: any CausalLanguageModel)
    public init(open: @escaping () throws -> (name: String, model: any CausalLanguageModel)) { self.open = open }
    /// An already loaded model (it then stays in memory as long as the caller holds it).
    public static func loaded(_ name: String, _ model: any CausalLanguageModel) -> ComparedModel {
        ComparedModel { (name, model) }
    }
}

/// Runs a baseline and any number of models over the same windows (the protocol of `Perplexity`)
/// and measures what each model lost: perplexity under both protocols, KL divergence of its token
/// distributions from the baseline's, top-1 agreement and per-layer relative error of the residual stream.
///
/// One model at a time: the baseline runs every window first and keeps, per window, what the
/// models are measured against — its embeddings, the residual stream after every layer and its
/// logits of the scored rows, exactly as computed — in a scratch file (unlinked as soon as it is
/// created, so nothing is left behind); each model then runs the windows against that file.
/// The results are those of running them side by side: every model sees the same bytes.
public enum Comparison {
    public static func run(
        baseline: ComparedModel, models: [ComparedModel],
        baselineName: String, tokens: [Int32], context: Int, maxWindows: Int?, scoring: PerplexityProtocol,
        bos: Int32? = nil, source: String = "text", scratchDirectory: String = NSTemporaryDirectory(), threads: Int,
        progress: ((_ done: Int, _ total: Int) -> Void)? = nil
    ) throws -> CompareResult {
        var opened: (any CausalLanguageModel)? = try baseline.open().model
        let c = opened!.config
        let textPerWindow = bos == nil ? context : context - 1
        let available = tokens.count / textPerWindow
        guard available >= 1 else {
            throw PerplexityError.tooFewTokens(path: source, tokens: tokens.count, context: context)
        }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= c.vocabSize }) {
            throw PerplexityError.tokenOutOfRange(path: source, id: bad, vocab: c.vocabSize)
        }
        let windows = min(available, maxWindows ?? available)
        let V = c.vocabSize, H = c.hiddenSize, L = c.layerCount
        let predicted = context - 1  // logits rows 0 ..< context−1 predict tokens 1 ..< context
        let half = context / 2  // first row scored by the llamacpp protocol
        let first = scoring == .all ? 0 : half  // first row of the comparison protocol
        let kept = predicted - first  // baseline logits rows kept for KL / top-1

        let capture = LayerCapture(layers: L, rows: context, hidden: H)
        let baseLogits = FloatBuffer(count: kept * V, zeroed: false)
        var baseLSE = [Double](repeating: 0, count: windows * kept),
            baseTop = [Int](repeating: 0, count: windows * kept)
        let blockLogits = FloatBuffer(count: scoreBlock * V, zeroed: false)
        let embedded = FloatBuffer(count: context * H), isolated = FloatBuffer(count: context * H)
        let spill = try ScratchFile(
            directory: scratchDirectory,
            recordFloats: [context * H] + Array(repeating: context * H, count: L) + [kept * V])
        let spilled = [embedded.pointer] + capture.outputs.map(\.pointer) + [baseLogits.pointer]
        let total = windows * (models.count + 1)

        var names = [baselineName]
        var scores: [ModelScores] = []
        for mi in 0...models.count {
            let isBase = mi == 0
            if !isBase {
                opened = nil  // the previous model is released before the next opens
                let (name, m) = try models[mi - 1].open()
                guard m.config.vocabSize == c.vocabSize, m.config.hiddenSize == c.hiddenSize,
                    m.config.layerCount == c.layerCount
                else {
                    throw ComparisonError.mismatch(name: name, baseline: baselineName)
                }
                names.append(name)
                opened = m
            }
            let model = opened!
            var sumAll = 0.0, sumHalfAll = 0.0, windowNLL: [Double] = [], klAll: [Double] = [], agreeAll = 0,
                seconds = 0.0
            var diff2 = [Double](repeating: 0, count: L), ref2 = diff2, isoDiff2 = diff2, isoRef2 = diff2
            for w in 0..<windows {
                var seq = Array(tokens[(w * textPerWindow)..<((w + 1) * textPerWindow)])
                if let bos { seq.insert(bos, at: 0) }
                if isBase { model.embed(seq, into: embedded.pointer) } else { try spill.read(record: w, into: spilled) }
                let t0 = Date()
                var isolatedSeconds = 0.0
                let observer: ForwardObserver = isBase ? capture : LayerDiff(reference: capture)
                let hidden = model.hiddenStates([seq], observer: observer)
                if let d = observer as? LayerDiff {
                    for l in 0..<L { diff2[l] += d.diff2[l]; ref2[l] += d.ref2[l] }
                    // Every layer alone on the baseline's input to it (not counted in the model's speed).
                    let isoStart = Date()
                    let iso = isolatedLayerErrors(
                        model: model, capture: capture, embedded: embedded, scratch: isolated, rows: context)
                    for l in 0..<L { isoDiff2[l] += iso.diff2[l]; isoRef2[l] += iso.ref2[l] }
                    isolatedSeconds = Date().timeIntervalSince(isoStart)
                }
                var sum = 0.0, sumHalf = 0.0
                let (nll, kl, agree) = scoreWindow(
                    model: model, hidden: hidden.pointer, tokens: seq, window: w, first: first, kept: kept,
                    isBase: isBase, blockLogits: blockLogits, baseLogits: baseLogits, baseLSE: &baseLSE,
                    baseTop: &baseTop, threads: threads)
                for r in 0..<predicted {
                    sum += nll[r]
                    if r >= half { sumHalf += nll[r] }
                }
                sumAll += sum; sumHalfAll += sumHalf
                windowNLL.append(
                    (scoring == .all ? sum : sumHalf) / Double(scoring == .all ? predicted : predicted - half))
                if isBase {
                    try spill.write(record: w, from: spilled)
                } else {
                    klAll.append(contentsOf: kl)
                    agreeAll += agree.reduce(0) { $0 + ($1 ? 1 : 0) }
                }
                seconds += Date().timeIntervalSince(t0) - isolatedSeconds
                progress?(mi * windows + w + 1, total)
            }
            let nAll = windows * predicted, nHalf = windows * (predicted - half)
            var s = ModelScores(
                name: names[mi], meanNLLAll: sumAll / Double(nAll), meanNLLLlamacpp: sumHalfAll / Double(nHalf),
                windowNLL: windowNLL, klMean: nil, klP99: nil, top1Agreement: nil, layerRelativeError: [],
                seconds: seconds)
            if !isBase {
                let sorted = klAll.sorted()
                s.klMean = klAll.reduce(0, +) / Double(max(1, klAll.count))
                s.klP99 = sorted.isEmpty ? 0 : sorted[max(0, Int((0.99 * Double(sorted.count)).rounded(.up)) - 1)]
                s.top1Agreement = Double(agreeAll) / Double(max(1, klAll.count))
                s.layerRelativeError = (0..<L).map { ref2[$0] > 0 ? (diff2[$0] / ref2[$0]).squareRoot() : 0 }
                s.layerIsolatedError = (0..<L).map { isoRef2[$0] > 0 ? (isoDiff2[$0] / isoRef2[$0]).squareRoot() : 0 }
            }
            scores.append(s)
        }
        return CompareResult(
            context: context, windows: windows, scoring: scoring, bos: bos != nil, textTokens: tokens.count,
            scoredTokensAll: windows * predicted, scoredTokensLlamacpp: windows * (predicted - half),
            baseline: scores[0], models: Array(scores.dropFirst()))
    }

    /// Logits rows computed together when a window is scored.
    static let scoreBlock = 64

    /// One window's logits, `scoreBlock` rows at a time: every row's NLL of its next token; from
    /// row `first` on, the baseline keeps its logits (`baseLogits`), log-sum-exp and argmax (at
    /// `window`'s slots of `baseLSE` / `baseTop`), a model gets its KL against them and whether its
    /// argmax agrees. Rows are split over `threads`; each value is computed by one thread.
    static func scoreWindow(
        model: any CausalLanguageModel, hidden: UnsafePointer<Float>, tokens seq: [Int32], window w: Int, first: Int,
        kept: Int, isBase: Bool, blockLogits: FloatBuffer, baseLogits: FloatBuffer, baseLSE: inout [Double],
        baseTop: inout [Int], threads: Int
    ) -> (nll: [Double], kl: [Double], agree: [Bool]) {
        let V = model.config.vocabSize, H = model.config.hiddenSize, predicted = seq.count - 1
        var kl = [Double](repeating: 0, count: kept), agree = [Bool](repeating: false, count: kept)
        var nll = [Double](repeating: 0, count: predicted)
        var r0 = 0
        while r0 < predicted {
            let m = min(scoreBlock, predicted - r0)
            model.logits(hidden: hidden + r0 * H, rows: m, out: blockLogits.pointer)
            if isBase && r0 + m > first {
                // The baseline keeps its logits of the scored rows for the models' KL.
                let s0 = max(r0, first)
                (baseLogits.pointer + (s0 - first) * V).update(
                    from: blockLogits.pointer + (s0 - r0) * V, count: (r0 + m - s0) * V)
            }
            let nllP = nll.withUnsafeMutableBufferPointer { SendablePointer($0.baseAddress!) }
            let klP = kl.withUnsafeMutableBufferPointer { SendablePointer($0.baseAddress!) }
            let agP = agree.withUnsafeMutableBufferPointer { SendablePointer($0.baseAddress!) }
            let lseP = baseLSE.withUnsafeMutableBufferPointer { SendablePointer($0.baseAddress! + w * kept) }
            let topP = baseTop.withUnsafeMutableBufferPointer { SendablePointer($0.baseAddress! + w * kept) }
            let bl = SendablePointer(baseLogits.pointer), src = SendablePointer(blockLogits.pointer)
            let base = r0
            Parallel.forEachChunk(m, chunk: 4, threads: threads) { rr in
                for i in rr {
                    let r = base + i
                    let row = src.p + i * V
                    let lse = fq_logsumexp(row, V)
                    nllP.p[r] = lse - Double(row[Int(seq[r + 1])])
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
        return (nll, kl, agree)
    }

    /// Every layer of `model` run alone on the baseline's input to it (`embedded`, then the
    /// baseline's layer outputs in `capture`): per layer Σ (model − baseline)² of its output and
    /// Σ (baseline output − input)², what the baseline layer adds to the residual stream.
    static func isolatedLayerErrors(
        model: any CausalLanguageModel, capture: LayerCapture, embedded: FloatBuffer, scratch isolated: FloatBuffer,
        rows: Int
    ) -> (diff2: [Double], ref2: [Double]) {
        let L = model.config.layerCount, n = rows * model.config.hiddenSize
        var diff2 = [Double](repeating: 0, count: L), ref2 = diff2
        for l in 0..<L {
            let input = l == 0 ? UnsafePointer(embedded.pointer) : UnsafePointer(capture.outputs[l - 1].pointer)
            isolated.pointer.update(from: input, count: n)
            model.runLayer(l, hidden: isolated.pointer, seqLen: rows)
            let ref = capture.outputs[l].pointer
            var e = 0.0, r = 0.0
            for j in 0..<n {
                let o = Double(ref[j]), dq = Double(isolated.pointer[j]) - o, dc = o - Double(input[j])
                e += dq * dq; r += dc * dc
            }
            diff2[l] = e; ref2[l] = r
        }
        return (diff2, ref2)
    }
}

/// Fixed-size records of float arrays in a file that exists only while it is open: unlinked
/// right after it is created, so a crash or a kill leaves nothing on disk.
final class ScratchFile {
    let fd: Int32
    let path: String
    let recordFloats: [Int]
    let recordBytes: Int

    init(directory: String, recordFloats: [Int]) throws {
        var template = Array(((directory as NSString).appendingPathComponent(".fireq-compare-XXXXXX")).utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard fd >= 0 else {
            throw ComparisonError.scratch(
                path: directory,
                reason:
                    "cannot create a scratch file there (\(String(cString: strerror(errno)))); set TMPDIR to a writable folder"
            )
        }
        unlink(path)
        self.fd = fd
        self.recordFloats = recordFloats
        recordBytes = recordFloats.reduce(0, +) * 4
    }
    deinit { close(fd) }

    func write(record: Int, from parts: [UnsafeMutablePointer<Float>]) throws {
        try transfer(record, parts, writing: true)
    }
    func read(record: Int, into parts: [UnsafeMutablePointer<Float>]) throws {
        try transfer(record, parts, writing: false)
    }

    private func transfer(_ record: Int, _ parts: [UnsafeMutablePointer<Float>], writing: Bool) throws {
        var off = record * recordBytes
        for (p, n) in zip(parts, recordFloats) {
            var done = 0
            while done < n * 4 {
                let at = off_t(off + done)
                let r =
                    writing
                    ? Glibc.pwrite(fd, UnsafeRawPointer(p) + done, n * 4 - done, at)
                    : Glibc.pread(fd, UnsafeMutableRawPointer(p) + done, n * 4 - done, at)
                guard r > 0 else {
                    throw ComparisonError.scratch(
                        path: path,
                        reason: writing
                            ? "cannot write the baseline's window \(record + 1) (\(String(cString: strerror(errno)))); free disk space or set TMPDIR"
                            : "cannot read the baseline's window \(record + 1) back")
                }
                done += r
            }
            off += n * 4
        }
    }
}

public enum ComparisonError: Error, Sendable, CustomStringConvertible {
    case mismatch(name: String, baseline: String)
    case scratch(path: String, reason: String)
    public var description: String {
        switch self {
        case .scratch(let p, let r): return "\(p): \(r)."
        case .mismatch(let n, let b):
            return
                "\(n): the model's vocabulary, hidden size or layer count differs from the baseline \(b); compare a model with its own source."
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
