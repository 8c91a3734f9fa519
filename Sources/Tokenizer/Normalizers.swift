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
            guard let p = v["prepend"]?.stringValue else { throw .invalidField(path: path, key: "normalizer.prepend", reason: "must be a string") }
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
        case .replace(let a, let b): return s.replacing(a, with: b)
        case .nfc: return s.precomposedStringWithCanonicalMapping
        case .sequence(let ns): return ns.reduce(s) { $1.apply($0) }
        }
    }
}
