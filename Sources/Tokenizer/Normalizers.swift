import Foundation
import JSONSupport

/// tokenizer.json `normalizer`: text → text before pre-tokenization.
enum Normalizer: Sendable {
    case prepend(String)
    case replace(String, String)
    /// Unicode canonical composition (NFC), as Qwen2's tokenizer.json asks.
    case nfc
    case sequence([Normalizer])

    static func parse(_ v: JSONValue, path: String) throws(TokenizerError) -> Normalizer? {
        if v.isNull { return nil }
        guard let type = v["type"]?.stringValue else {
            throw .invalidField(path: path, key: "normalizer.type", reason: "is missing")
        }
        switch type {
        case "Prepend":
            guard let p = v["prepend"]?.stringValue else {
                throw .invalidField(path: path, key: "normalizer.prepend", reason: "must be a string")
            }
            return .prepend(p)
        case "Replace":
            guard let pat = v["pattern"]?["String"]?.stringValue, let c = v["content"]?.stringValue else {
                throw .unsupported(path: path, key: "Replace normalizer pattern", value: "non-string pattern")
            }
            return .replace(pat, c)
        case "NFC":
            return .nfc
        case "Sequence":
            guard let items = v["normalizers"]?.arrayValue else {
                throw .invalidField(path: path, key: "normalizer.normalizers", reason: "must be an array")
            }
            var out: [Normalizer] = []
            for i in items { if let n = try parse(i, path: path) { out.append(n) } }
            return .sequence(out)
        default:
            throw .unsupported(path: path, key: "normalizer type", value: type)
        }
    }

    func apply(_ s: String) -> String {
        switch self {
        case .prepend(let p): return s.isEmpty ? s : p + s
        case .replace(let a, let b): return s.replacingScalars(a, with: b)
        case .nfc: return s.precomposedStringWithCanonicalMapping
        case .sequence(let ns): return ns.reduce(s) { $1.apply($0) }
        }
    }
}

extension String {
    /// Every occurrence of `pattern`'s Unicode scalars replaced by `content`, matched scalar by
    /// scalar as `tokenizers` does (Swift's `replacing` matches whole grapheme clusters, so it
    /// would miss the space in " ्", a space followed by a combining mark).
    func replacingScalars(_ pattern: String, with content: String) -> String {
        let p = Array(pattern.unicodeScalars)
        guard !p.isEmpty else { return self }
        let x = Array(unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < x.count {
            if x[i] == p[0] && i + p.count <= x.count && x[i..<(i + p.count)].elementsEqual(p) {
                out.append(contentsOf: content.unicodeScalars)
                i += p.count
            } else {
                out.append(x[i])
                i += 1
            }
        }
        return String(out)
    }
}
