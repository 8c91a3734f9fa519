/// Errors loading a tokenizer. Each reads as one sentence naming the file and the problem.
public enum TokenizerError: Error, Sendable, Equatable, CustomStringConvertible {
    case missingFile(path: String)
    case unreadable(path: String, reason: String)
    case invalidJSON(path: String, reason: String)
    case invalidField(path: String, key: String, reason: String)
    case unsupported(path: String, key: String, value: String)
    case unknownToken(path: String, token: String, context: String)
    case invalidText(path: String, reason: String)

    public var description: String {
        switch self {
        case .missingFile(let p): return "\(p): tokenizer file not found (the model folder needs a tokenizer.json)."
        case .unreadable(let p, let r): return "\(p): \(r)."
        case .invalidJSON(let p, let r): return "\(p): not valid JSON: \(r)."
        case .invalidField(let p, let k, let r): return "\(p): '\(k)' \(r)."
        case .unsupported(let p, let k, let v): return "\(p): unsupported \(k) '\(v)'."
        case .unknownToken(let p, let t, let c): return "\(p): \(c) refers to '\(t)', which is not in the vocabulary."
        case .invalidText(let p, let r): return "\(p): \(r)."
        }
    }
}
