/// What is wrong with one field of a JSON document: the key's dotted path ("weights.group_size")
/// and a reason that completes the sentence "`key` …" ("must be an integer, found a string").
public struct JSONFieldError: Error, Sendable, Equatable, CustomStringConvertible {
    public let key: String
    public let reason: String
    public init(key: String, reason: String) { (self.key, self.reason) = (key, reason) }
    public var description: String { "\(key) \(reason)" }
}

/// The one strict, typed reader behind the recipe, the batch manifest and config.json: each
/// accessor reads one key of an object, checks its type and range, and throws `JSONFieldError`
/// naming the key's full path and what was found. An absent key reads as nil (the caller's
/// default); a JSON `null` reads as nil too when `nulls` is `.absent` (Hugging Face configs, where
/// null means "the default"), and is refused when it is `.refused` (recipes and manifests, where a
/// null that means something — "off" — is asked for with `isNull`).
public struct JSONFields: Sendable {
    public enum Nulls: Sendable { case absent, refused }

    public let object: JSONObject
    /// The object's own path with a trailing dot ("weights."), "" at the top level.
    public let prefix: String
    public let nulls: Nulls

    public init(_ object: JSONObject, prefix: String = "", nulls: Nulls) {
        (self.object, self.prefix, self.nulls) = (object, prefix, nulls)
    }

    /// The top level of a document, which must be an object.
    public init(document: JSONValue, nulls: Nulls) throws(JSONFieldError) {
        guard let o = document.objectValue else {
            throw JSONFieldError(key: "(top level)", reason: "must be an object, found \(document.kindDescription)")
        }
        self.init(o, nulls: nulls)
    }

    public var keys: [String] { object.keys }
    public subscript(key: String) -> JSONValue? { object[key] }
    /// Whether the key is present (null included).
    public func contains(_ key: String) -> Bool { object[key] != nil }
    /// Whether the key is present and null.
    public func isNull(_ key: String) -> Bool { object[key]?.isNull ?? false }

    /// An error about `key` of this object.
    public func error(_ key: String, _ reason: String) -> JSONFieldError {
        JSONFieldError(key: prefix + key, reason: reason)
    }

    /// A value as an error message shows it: strings quoted, numbers as written, others by kind.
    public static func show(_ v: JSONValue) -> String {
        switch v {
        case .string(let s): return "\"" + (s.count > 40 ? String(s.prefix(40)) + "…" : s) + "\""
        case .number(let n): return n
        case .bool(let b): return b ? "true" : "false"
        default: return v.kindDescription
        }
    }

    /// The key's value, nil when absent (or null under `.absent`); `what` completes "must be …".
    private func present(_ key: String, _ what: String) throws(JSONFieldError) -> JSONValue? {
        guard let v = object[key] else { return nil }
        if v.isNull {
            if nulls == .absent { return nil }
            throw error(key, "must be \(what), found null")
        }
        return v
    }

    /// Refuses keys not in `allowed`, suggesting the allowed key it most likely means
    /// ("group-size" → "group_size").
    public func checkKeys(_ allowed: [String], what: String = "a known key") throws(JSONFieldError) {
        for k in object.keys where !allowed.contains(k) {
            let hint = Self.nearest(k, in: allowed).map { "; did you mean \"\($0)\"?" } ?? ""
            throw error(k, "is not \(what) (allowed here: \(allowed.joined(separator: ", "))\(hint))")
        }
    }

    /// The allowed key a misspelt one most likely means: the same once '-' and '_' are dropped
    /// and case is ignored.
    public static func nearest(_ key: String, in allowed: [String]) -> String? {
        func fold(_ s: String) -> String { s.lowercased().filter { $0 != "_" && $0 != "-" } }
        return allowed.first { fold($0) == fold(key) }
    }

    public func string(_ key: String, nonEmpty: Bool = false) throws(JSONFieldError) -> String? {
        let what = nonEmpty ? "a non-empty string" : "a string"
        guard let v = try present(key, what) else { return nil }
        guard let s = v.stringValue else { throw error(key, "must be \(what), found \(Self.show(v))") }
        if nonEmpty && s.isEmpty { throw error(key, "must be \(what), found \"\"") }
        guard !s.utf8.contains(0) else { throw error(key, "contains a NUL character") }
        return s
    }

    public func bool(_ key: String) throws(JSONFieldError) -> Bool? {
        guard let v = try present(key, "true or false") else { return nil }
        guard let b = v.boolValue else { throw error(key, "must be true or false, found \(Self.show(v))") }
        return b
    }

    /// An exact integer in `range`.
    public func int(_ key: String, in range: ClosedRange<Int> = Int.min...Int.max) throws(JSONFieldError) -> Int? {
        guard let v = try present(key, "an integer") else { return nil }
        guard let i = v.intValue else { throw error(key, "must be an integer, found \(Self.show(v))") }
        guard range.contains(i) else { throw error(key, "must be \(Self.describe(range)), found \(i)") }
        return i
    }

    /// A finite number in `range`.
    public func number(
        _ key: String, in range: ClosedRange<Double> = -Double.greatestFiniteMagnitude...Double.greatestFiniteMagnitude
    ) throws(JSONFieldError) -> Double? {
        guard let v = try present(key, "a number") else { return nil }
        guard let d = v.doubleValue, d.isFinite else { throw error(key, "must be a number, found \(Self.show(v))") }
        guard range.contains(d) else { throw error(key, "must be \(Self.describe(range)), found \(v.show)") }
        return d
    }

    /// One of `allowed` strings.
    public func choice(_ key: String, among allowed: [String]) throws(JSONFieldError) -> String? {
        let what = "one of " + allowed.joined(separator: ", ")
        guard let v = try present(key, what) else { return nil }
        guard let s = v.stringValue, allowed.contains(s) else {
            throw error(key, "must be \(what), found \(Self.show(v))")
        }
        return s
    }

    /// A string that names a case of `E` (its raw value).
    public func choice<E: RawRepresentable & CaseIterable>(_ key: String, as _: E.Type) throws(JSONFieldError) -> E?
    where E.RawValue == String {
        try choice(key, among: E.allCases.map(\.rawValue)).flatMap { E(rawValue: $0) }
    }

    /// A nested object, read with the same null policy and its own path.
    public func object(_ key: String) throws(JSONFieldError) -> JSONFields? {
        guard let v = try present(key, "an object") else { return nil }
        guard let o = v.objectValue else { throw error(key, "must be an object, found \(Self.show(v))") }
        return JSONFields(o, prefix: prefix + key + ".", nulls: nulls)
    }

    public func array(_ key: String) throws(JSONFieldError) -> [JSONValue]? {
        guard let v = try present(key, "an array") else { return nil }
        guard let a = v.arrayValue else { throw error(key, "must be an array, found \(Self.show(v))") }
        return a
    }

    static func describe(_ r: ClosedRange<Int>) -> String {
        if r.upperBound == Int.max { return "at least \(r.lowerBound)" }
        if r.lowerBound == Int.min { return "at most \(r.upperBound)" }
        return r.lowerBound == r.upperBound ? "\(r.lowerBound)" : "in [\(r.lowerBound), \(r.upperBound)]"
    }

    static func describe(_ r: ClosedRange<Double>) -> String {
        func f(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : "\(x)" }
        if r.upperBound == .greatestFiniteMagnitude { return "at least \(f(r.lowerBound))" }
        return "in [\(f(r.lowerBound)), \(f(r.upperBound))]"
    }
}

extension JSONValue {
    /// The value as an error message shows it (`JSONFields.show`).
    public var show: String { JSONFields.show(self) }
}
