/// Splits text into pieces the way a regex `find_iter` would: returns the matched ranges in order.
/// (Text between matches is not part of any match; for these patterns every scalar is matched.)
protocol PatternSplitter: Sendable {
    func matches(_ s: [Unicode.Scalar]) -> [Range<Int>]
}

/// GPT-2's pattern, used by the ByteLevel pre-tokenizer with `use_regex`:
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
/// A hand-written scanner (the regex engine is ~10× slower); pinned to `RegexSplitter` by tests.
struct GPT2Splitter: PatternSplitter {
    static let pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    func matches(_ s: [Unicode.Scalar]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var i = 0
        let n = s.count
        func other(_ c: Unicode.Scalar) -> Bool {
            !CharClass.isSpace(c) && !CharClass.isLetter(c) && !CharClass.isNumber(c)
        }
        while i < n {
            let c = s[i]
            // Contractions.
            if c == "'" && i + 1 < n {
                let a = s[i + 1]
                if a == "s" || a == "t" || a == "m" || a == "d" { out.append(i..<(i + 2)); i += 2; continue }
                if i + 2 < n {
                    let b = s[i + 2]
                    if (a == "r" && b == "e") || (a == "v" && b == "e") || (a == "l" && b == "l") {
                        out.append(i..<(i + 3)); i += 3; continue
                    }
                }
            }
            // Optional leading space, then a run of one class.
            let j = (c == " " && i + 1 < n) ? i + 1 : i
            let h = s[j]
            let run: ((Unicode.Scalar) -> Bool)?
            if CharClass.isLetter(h) {
                run = CharClass.isLetter
            } else if CharClass.isNumber(h) {
                run = CharClass.isNumber
            } else if other(h) {
                run = other
            } else {
                run = nil
            }
            if let run {
                var k = j + 1
                while k < n && run(s[k]) { k += 1 }
                out.append(i..<k); i = k; continue
            }
            // Whitespace: \s+(?!\S) then \s+.
            var k = i
            while k < n && CharClass.isSpace(s[k]) { k += 1 }
            if k == n || k - i == 1 {
                out.append(i..<k); i = k
            } else {
                out.append(i..<(k - 1)); i = k - 1
            }
        }
        return out
    }
}

/// Llama-3's pattern (also Qwen2's without the {1,3}):
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
struct Llama3Splitter: PatternSplitter {
    static let pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    /// Qwen2 uses `\p{N}` (single digits) instead of `\p{N}{1,3}`.
    static let qwen2Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    let maxDigits: Int

    func matches(_ s: [Unicode.Scalar]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var i = 0
        let n = s.count
        func lower(_ c: Unicode.Scalar) -> Unicode.Scalar {
            (c.value >= 0x41 && c.value <= 0x5A) ? Unicode.Scalar(c.value + 32)! : c
        }
        func isNL(_ c: Unicode.Scalar) -> Bool { c == "\r" || c == "\n" }
        func other(_ c: Unicode.Scalar) -> Bool {
            !CharClass.isSpace(c) && !CharClass.isLetter(c) && !CharClass.isNumber(c)
        }
        while i < n {
            let c = s[i]
            if c == "'" && i + 1 < n {
                let a = lower(s[i + 1])
                if a == "s" || a == "t" || a == "m" || a == "d" { out.append(i..<(i + 2)); i += 2; continue }
                if i + 2 < n {
                    let b = lower(s[i + 2])
                    if (a == "r" && b == "e") || (a == "v" && b == "e") || (a == "l" && b == "l") {
                        out.append(i..<(i + 3)); i += 3; continue
                    }
                }
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if CharClass.isLetter(c)
                || (!isNL(c) && !CharClass.isLetter(c) && !CharClass.isNumber(c) && i + 1 < n
                    && CharClass.isLetter(s[i + 1]))
            {
                var k = i + 1
                while k < n && CharClass.isLetter(s[k]) { k += 1 }
                out.append(i..<k); i = k; continue
            }
            if CharClass.isNumber(c) {
                var k = i + 1
                while k < n && k - i < maxDigits && CharClass.isNumber(s[k]) { k += 1 }
                out.append(i..<k); i = k; continue
            }
            // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            let j = (c == " " && i + 1 < n) ? i + 1 : i
            if other(s[j]) {
                var k = j + 1
                while k < n && other(s[k]) { k += 1 }
                while k < n && isNL(s[k]) { k += 1 }
                out.append(i..<k); i = k; continue
            }
            // Whitespace run starting at i.
            var k = i
            while k < n && CharClass.isSpace(s[k]) { k += 1 }
            // \s*[\r\n]+ : the longest prefix of the run that ends in a newline.
            var lastNL = -1
            for t in i..<k where isNL(s[t]) { lastNL = t }
            if lastNL >= 0 {
                out.append(i..<(lastNL + 1)); i = lastNL + 1; continue
            }
            if k == n || k - i == 1 {
                out.append(i..<k); i = k
            } else {
                out.append(i..<(k - 1)); i = k - 1
            }
        }
        return out
    }
}

/// Any other pattern: Swift's regex engine over Unicode scalars (correct, slower). Also the
/// reference the hand-written scanners are tested against.
struct RegexSplitter: PatternSplitter, @unchecked Sendable {
    let regex: Regex<AnyRegexOutput>

    init(pattern: String) throws {
        regex = try Regex(pattern).matchingSemantics(.unicodeScalar)
    }

    func matches(_ s: [Unicode.Scalar]) -> [Range<Int>] {
        var str = ""
        str.unicodeScalars.append(contentsOf: s)
        var out: [Range<Int>] = []
        let scalars = str.unicodeScalars
        var pos = 0
        var lastIdx = scalars.startIndex
        for m in str.matches(of: regex) {
            let lo = scalars.distance(from: lastIdx, to: m.range.lowerBound) + pos
            let hi = lo + scalars.distance(from: m.range.lowerBound, to: m.range.upperBound)
            if hi > lo { out.append(lo..<hi) }
            pos = hi
            lastIdx = m.range.upperBound
        }
        return out
    }
}

enum Splitters {
    /// The fastest splitter that implements `pattern` exactly.
    static func make(pattern: String) throws -> any PatternSplitter {
        switch pattern {
        case GPT2Splitter.pattern: return GPT2Splitter()
        case Llama3Splitter.pattern: return Llama3Splitter(maxDigits: 3)
        case Llama3Splitter.qwen2Pattern: return Llama3Splitter(maxDigits: 1)
        default: return try RegexSplitter(pattern: pattern)
        }
    }
}

/// Public access to the pre-tokenizer patterns, for tests and tools: the fast scanner chosen
/// for a pattern and the regex-engine reference, both as scalar-offset ranges.
public enum PreTokenizerPatterns {
    public static let gpt2 = GPT2Splitter.pattern
    public static let llama3 = Llama3Splitter.pattern
    public static let qwen2 = Llama3Splitter.qwen2Pattern

    public static func fastMatches(pattern: String, in text: String) throws -> [Range<Int>] {
        try Splitters.make(pattern: pattern).matches(Array(text.unicodeScalars))
    }

    public static func regexMatches(pattern: String, in text: String) throws -> [Range<Int>] {
        try RegexSplitter(pattern: pattern).matches(Array(text.unicodeScalars))
    }
}
