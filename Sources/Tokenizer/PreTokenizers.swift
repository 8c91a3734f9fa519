import JSONSupport

/// tokenizer.json `pre_tokenizer`: splits (already normalised) text into pieces; each piece is
/// tokenized by the model on its own. Pieces are scalar arrays; `byteLevel` maps them to the
/// byte alphabet at the end.
indirect enum PreTokenizer: Sendable {
    /// ByteLevel: optional GPT-2 split, then bytes → printable scalars.
    case byteLevel(addPrefixSpace: Bool, splitter: (any PatternSplitter)?)
    /// Digits: isolate every numeric scalar, or runs of them.
    case digits(individual: Bool)
    /// Split on a regex or literal with a delimiter behaviour.
    case split(splitter: any PatternSplitter, behavior: SplitBehavior, invert: Bool)
    /// Metaspace: spaces → replacement; optional prepend on the first piece; optional split.
    case metaspace(replacement: Unicode.Scalar, prependFirst: Bool, split: Bool)
    case sequence([PreTokenizer])

    enum SplitBehavior: String, Sendable {
        case isolated = "Isolated", removed = "Removed", mergedWithPrevious = "MergedWithPrevious", mergedWithNext =
            "MergedWithNext", contiguous = "Contiguous"
    }

    var isByteLevel: Bool {
        switch self {
        case .byteLevel: return true
        case .sequence(let s): return s.contains { $0.isByteLevel }
        default: return false
        }
    }

    static func parse(_ v: JSONValue, path: String) throws(TokenizerError) -> PreTokenizer? {
        if v.isNull { return nil }
        guard let type = v["type"]?.stringValue else {
            throw .invalidField(path: path, key: "pre_tokenizer.type", reason: "is missing")
        }
        switch type {
        case "ByteLevel":
            let useRegex = v["use_regex"]?.boolValue ?? true
            return .byteLevel(
                addPrefixSpace: v["add_prefix_space"]?.boolValue ?? false,
                splitter: useRegex ? GPT2Splitter() : nil)
        case "Digits":
            return .digits(individual: v["individual_digits"]?.boolValue ?? false)
        case "Split":
            let behaviorString = v["behavior"]?.stringValue ?? "Isolated"
            guard let behavior = SplitBehavior(rawValue: behaviorString) else {
                throw .unsupported(path: path, key: "Split behavior", value: behaviorString)
            }
            let splitter: any PatternSplitter
            if let re = v["pattern"]?["Regex"]?.stringValue {
                do { splitter = try Splitters.make(pattern: re) } catch {
                    throw .invalidField(
                        path: path, key: "pre_tokenizer.pattern.Regex",
                        reason: "is not a regex this tool can compile (\(error))")
                }
            } else if let lit = v["pattern"]?["String"]?.stringValue {
                splitter = LiteralSplitter(literal: Array(lit.unicodeScalars))
            } else {
                throw .invalidField(path: path, key: "pre_tokenizer.pattern", reason: "must hold 'Regex' or 'String'")
            }
            return .split(splitter: splitter, behavior: behavior, invert: v["invert"]?.boolValue ?? false)
        case "Metaspace":
            let rep = v["replacement"]?.stringValue ?? "▁"
            guard rep.unicodeScalars.count == 1 else {
                throw .invalidField(path: path, key: "Metaspace.replacement", reason: "must be one character")
            }
            let scheme =
                v["prepend_scheme"]?.stringValue ?? ((v["add_prefix_space"]?.boolValue ?? true) ? "always" : "never")
            guard scheme == "always" || scheme == "first" || scheme == "never" else {
                throw .unsupported(path: path, key: "Metaspace prepend_scheme", value: scheme)
            }
            return .metaspace(
                replacement: rep.unicodeScalars.first!, prependFirst: scheme != "never",
                split: v["split"]?.boolValue ?? true)
        case "Sequence":
            guard let items = v["pretokenizers"]?.arrayValue else {
                throw .invalidField(path: path, key: "pre_tokenizer.pretokenizers", reason: "must be an array")
            }
            var out: [PreTokenizer] = []
            for i in items { if let p = try parse(i, path: path) { out.append(p) } }
            return .sequence(out)
        default:
            throw .unsupported(path: path, key: "pre_tokenizer type", value: type)
        }
    }

    /// Splits every piece; `first` tells whether a piece starts the (non-special) text segment.
    func apply(_ pieces: [ArraySlice<Unicode.Scalar>]) -> [ArraySlice<Unicode.Scalar>] {
        switch self {
        case .sequence(let ps):
            return ps.reduce(pieces) { $1.apply($0) }
        case .digits(let individual):
            return pieces.flatMap { p -> [ArraySlice<Unicode.Scalar>] in
                var out: [ArraySlice<Unicode.Scalar>] = []
                var start = p.startIndex
                var i = p.startIndex
                while i < p.endIndex {
                    if CharClass.isNumber(p[i]) {
                        if start < i { out.append(p[start..<i]) }
                        var k = i + 1
                        if !individual { while k < p.endIndex && CharClass.isNumber(p[k]) { k += 1 } }
                        out.append(p[i..<k])
                        i = k; start = k
                    } else {
                        i += 1
                    }
                }
                if start < p.endIndex { out.append(p[start..<p.endIndex]) }
                return out
            }
        case .byteLevel(let addPrefixSpace, let splitter):
            return pieces.flatMap { p0 -> [ArraySlice<Unicode.Scalar>] in
                var p = p0
                if addPrefixSpace, let f = p.first, f != " " { p = ArraySlice([" "] + Array(p)) }
                guard let splitter else { return [p] }
                let arr = Array(p)
                return splitter.matches(arr).map { ArraySlice(arr[$0]) }
            }
        case .split(let splitter, let behavior, let invert):
            return pieces.flatMap { p -> [ArraySlice<Unicode.Scalar>] in
                let arr = Array(p)
                let ms = splitter.matches(arr)
                // Segments alternate: gap, match, gap, match, ... ; `invert` swaps their roles.
                var segs: [(Range<Int>, Bool)] = []
                var cur = 0
                for m in ms {
                    if m.lowerBound > cur { segs.append((cur..<m.lowerBound, invert)) }
                    segs.append((m, !invert))
                    cur = m.upperBound
                }
                if cur < arr.count { segs.append((cur..<arr.count, invert)) }
                var out: [Range<Int>] = []
                switch behavior {
                case .isolated: out = segs.map(\.0)
                case .removed: out = segs.filter { !$0.1 }.map(\.0)
                case .mergedWithPrevious:
                    for (r, isDelim) in segs {
                        if isDelim, let last = out.last {
                            out[out.count - 1] = last.lowerBound..<r.upperBound
                        } else {
                            out.append(r)
                        }
                    }
                case .mergedWithNext:
                    var pending: Int? = nil
                    for (r, isDelim) in segs {
                        if isDelim { if pending == nil { pending = r.lowerBound }; continue }
                        out.append((pending ?? r.lowerBound)..<r.upperBound); pending = nil
                    }
                    if let p = pending { out.append(p..<arr.count) }
                case .contiguous:
                    var previousWasDelimiter = false
                    for (r, isDelim) in segs {
                        if isDelim && previousWasDelimiter, let last = out.last {
                            out[out.count - 1] = last.lowerBound..<r.upperBound
                        } else {
                            out.append(r)
                        }
                        previousWasDelimiter = isDelim
                    }
                }
                return out.map { ArraySlice(arr[$0]) }
            }
        case .metaspace(let rep, let prependFirst, let split):
            var out: [ArraySlice<Unicode.Scalar>] = []
            for (idx, p) in pieces.enumerated() {
                var arr = p.map { $0 == " " ? rep : $0 }
                if prependFirst && idx == 0 && arr.first != rep { arr.insert(rep, at: 0) }
                if !split { out.append(ArraySlice(arr)); continue }
                // Split so that each piece starts with the replacement (MergedWithNext).
                var start = 0
                for i in 1..<max(arr.count, 1) where arr[i] == rep {
                    out.append(ArraySlice(arr[start..<i])); start = i
                }
                if start < arr.count { out.append(ArraySlice(arr[start..<arr.count])) }
            }
            return out
        }
    }
}

/// A literal-string splitter (Split with a `String` pattern).
struct LiteralSplitter: PatternSplitter {
    let literal: [Unicode.Scalar]
    func matches(_ s: [Unicode.Scalar]) -> [Range<Int>] {
        guard !literal.isEmpty, s.count >= literal.count else { return [] }
        var out: [Range<Int>] = []
        var i = 0
        while i + literal.count <= s.count {
            if s[i..<(i + literal.count)].elementsEqual(literal) {
                out.append(i..<(i + literal.count)); i += literal.count
            } else {
                i += 1
            }
        }
        return out
    }
}
