import JSONSupport

/// tokenizer.json `decoder`: token strings → text.
indirect enum TokenDecoder: Sendable {
    case byteLevel
    case replace(String, String)
    case byteFallback
    case fuse
    case strip(content: Character, start: Int, stop: Int)
    case metaspace(replacement: Character, prependFirst: Bool)
    case sequence([TokenDecoder])

    static func parse(_ v: JSONValue, path: String) throws(TokenizerError) -> TokenDecoder? {
        if v.isNull { return nil }
        guard let type = v["type"]?.stringValue else {
            throw .invalidField(path: path, key: "decoder.type", reason: "is missing")
        }
        switch type {
        case "ByteLevel": return .byteLevel
        case "Replace":
            guard let p = v["pattern"]?["String"]?.stringValue, let c = v["content"]?.stringValue else {
                throw .unsupported(path: path, key: "Replace decoder pattern", value: "non-string pattern")
            }
            return .replace(p, c)
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Strip":
            guard let c = v["content"]?.stringValue, let ch = c.first, c.count == 1 else {
                throw .invalidField(path: path, key: "decoder.content", reason: "must be one character")
            }
            return .strip(content: ch, start: v["start"]?.intValue ?? 0, stop: v["stop"]?.intValue ?? 0)
        case "Metaspace":
            let rep = v["replacement"]?.stringValue?.first ?? "▁"
            let scheme =
                v["prepend_scheme"]?.stringValue ?? ((v["add_prefix_space"]?.boolValue ?? true) ? "always" : "never")
            return .metaspace(replacement: rep, prependFirst: scheme != "never")
        case "Sequence":
            guard let items = v["decoders"]?.arrayValue else {
                throw .invalidField(path: path, key: "decoder.decoders", reason: "must be an array")
            }
            var out: [TokenDecoder] = []
            for i in items { if let d = try parse(i, path: path) { out.append(d) } }
            return .sequence(out)
        default:
            throw .unsupported(path: path, key: "decoder type", value: type)
        }
    }

    /// Applies this decoder to the token strings (HF `decode_chain`).
    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .sequence(let ds): return ds.reduce(tokens) { $1.decodeChain($0) }
        case .byteLevel:
            var bytes: [UInt8] = []
            for t in tokens {
                for u in t.unicodeScalars {
                    if let b = ByteLevel.scalarToByte[u.value] {
                        bytes.append(b)
                    } else {
                        bytes.append(contentsOf: Array(String(u).utf8))
                    }
                }
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case .replace(let a, let b): return tokens.map { $0.replacingScalars(a, with: b) }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                if !pending.isEmpty {
                    if let s = String(validating: pending, as: UTF8.self) {
                        out.append(s)
                    } else {
                        out.append(contentsOf: Array(repeating: "\u{FFFD}", count: pending.count))
                    }
                    pending = []
                }
            }
            for t in tokens {
                if t.count == 6, t.hasPrefix("<0x"), t.hasSuffix(">"),
                    let b = UInt8(t.dropFirst(3).prefix(2), radix: 16)
                {
                    pending.append(b)
                } else {
                    flush(); out.append(t)
                }
            }
            flush()
            return out
        case .fuse: return [tokens.joined()]
        case .strip(let c, let start, let stop):
            return tokens.map { t in
                var s = Substring(t)
                var k = 0
                while k < start, s.first == c { s = s.dropFirst(); k += 1 }
                k = 0
                while k < stop, s.last == c { s = s.dropLast(); k += 1 }
                return String(s)
            }
        case .metaspace(let rep, let prependFirst):
            return tokens.enumerated().map { i, t in
                var s = t.replacingOccurrences(of: rep, with: " ")
                if prependFirst && i == 0 && s.first == " " { s.removeFirst() }
                return s
            }
        }
    }
}

extension String {
    fileprivate func replacingOccurrences(of c: Character, with r: String) -> String {
        replacingScalars(String(c), with: r)
    }
}
