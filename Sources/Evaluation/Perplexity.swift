import Foundation
import LlamaReference

/// Which predictions of a window are scored.
public enum PerplexityProtocol: String, Sendable, CaseIterable {
    /// Every token of a window but the first (logits at positions 0 … N−2).
    case all
    /// llama.cpp `llama-perplexity`: only the second half (logits at positions N/2 … N−2).
    case llamacpp
}

/// Perplexity over non-overlapping windows cut from token 0 (the remainder is dropped).
public struct PerplexityResult: Sendable, Equatable {
    public var windows: Int
    public var context: Int
    public var scoredTokens: Int
    public var meanNLL: Double
    public var perplexity: Double { exp(meanNLL) }
    /// Mean NLL of each window, in order.
    public var windowNLL: [Double]
    public var seconds: Double
    public var tokensPerSecond: Double { seconds > 0 ? Double(windows * context) / seconds : 0 }
}

public enum PerplexityError: Error, Sendable, CustomStringConvertible {
    case tooFewTokens(path: String, tokens: Int, context: Int)
    case tokenOutOfRange(path: String, id: Int32, vocab: Int)
    public var description: String {
        switch self {
        case .tooFewTokens(let p, let n, let c): return "\(p): the text has \(n) tokens, fewer than one window of \(c)."
        case .tokenOutOfRange(let p, let id, let v):
            return
                "\(p): token id \(id) is outside the model's vocabulary of \(v); the tokenizer does not belong to this model."
        }
    }
}

public enum Perplexity {
    /// Scores `tokens` in windows of `context`; `bos` is prepended to every window when given
    /// (the window then holds context−1 text tokens, as llama.cpp does with its BOS).
    public static func evaluate(
        model: any CausalLanguageModel, tokens: [Int32], context: Int, maxWindows: Int?,
        protocol proto: PerplexityProtocol, bos: Int32? = nil, source: String = "text",
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> PerplexityResult {
        let textPerWindow = bos == nil ? context : context - 1
        let available = tokens.count / textPerWindow
        guard available >= 1 else {
            throw PerplexityError.tooFewTokens(path: source, tokens: tokens.count, context: context)
        }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= model.config.vocabSize }) {
            throw PerplexityError.tokenOutOfRange(path: source, id: bad, vocab: model.config.vocabSize)
        }
        let windows = min(available, maxWindows ?? available)
        let first = proto == .all ? 0 : context / 2
        var total = 0.0
        var count = 0
        var perWindow: [Double] = []
        let start = Date()
        for w in 0..<windows {
            var seq = Array(tokens[(w * textPerWindow)..<((w + 1) * textPerWindow)])
            if let bos { seq.insert(bos, at: 0) }
            let hidden = model.hiddenStates([seq], observer: nil)
            let positions = first..<(context - 1)
            let targets = positions.map { seq[$0 + 1] }
            let nll = model.nll(
                hidden: hidden.pointer + first * model.config.hiddenSize, targets: targets, rowBlock: 256)
            let s = nll.reduce(0, +)
            total += s
            count += nll.count
            perWindow.append(s / Double(nll.count))
            progress?(w + 1, windows)
        }
        return PerplexityResult(
            windows: windows, context: context, scoredTokens: count, meanNLL: total / Double(count),
            windowNLL: perWindow, seconds: Date().timeIntervalSince(start))
    }
}
