/// A parsed JSON value that keeps object key order (needed for deterministic re-serialisation
/// and for strict checks such as duplicate keys, which Foundation's parser silently drops).
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// Numbers keep their source text so integers beyond 2^53 survive; see `intValue`/`doubleValue`.
    case number(String)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var objectValue: JSONObject? { if case .object(let o) = self { return o } else { return nil } }
    public var isNull: Bool { if case .null = self { return true } else { return false } }
    public var doubleValue: Double? { if case .number(let n) = self { return Double(n) } else { return nil } }
    /// The number as an exact integer, or nil if it has a fraction/exponent or does not fit.
    public var intValue: Int? {
        guard case .number(let n) = self else { return nil }
        if let i = Int(n) { return i }
        if let d = Double(n), d.rounded() == d, abs(d) < 9.0e15 { return Int(d) }
        return nil
    }

    /// A short description of the value's kind for error messages ("a string", "an array", ...).
    public var kindDescription: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    public subscript(key: String) -> JSONValue? { objectValue?[key] }
}

/// An order-preserving JSON object.
public struct JSONObject: Sendable, Equatable {
    public private(set) var keys: [String] = []
    /// Keyed by the exact bytes of each key (ExactString), not Swift's canonical equivalence.
    private var storage: [ExactString: JSONValue] = [:]

    public init() {}
    public init(_ pairs: [(String, JSONValue)]) {
        for (k, v) in pairs { self[k] = v }
    }

    public subscript(key: String) -> JSONValue? {
        get { storage[ExactString(key)] }
        set {
            let k = ExactString(key)
            if let v = newValue {
                if storage.updateValue(v, forKey: k) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: k) != nil {
                keys.removeAll { ExactString($0) == k }
            }
        }
    }

    public var count: Int { keys.count }
    public var pairs: [(key: String, value: JSONValue)] { keys.map { ($0, storage[ExactString($0)]!) } }
}

/// A String compared and hashed by its UTF-8 bytes. Swift's String equality is Unicode canonical
/// equivalence ("য়" U+09DF equals "য" + "়" U+09AF U+09BC), but JSON object keys and tokenizer
/// vocabularies are distinct byte strings: a Gemma vocabulary holds both spellings as two tokens.
public struct ExactString: Hashable, Sendable {
    public let string: String
    public init(_ s: String) { string = s }
    public static func == (a: ExactString, b: ExactString) -> Bool { a.string.utf8.elementsEqual(b.string.utf8) }
    public func hash(into h: inout Hasher) {
        var s = string
        s.withUTF8 { h.combine(bytes: UnsafeRawBufferPointer($0)) }
    }
}
