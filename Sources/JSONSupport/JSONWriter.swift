/// Compact, deterministic JSON serialisation (keys in the object's order; `sortedKeys` sorts
/// them recursively for a canonical form).
public enum JSONWriter {
    public static func serialize(_ value: JSONValue, sortedKeys: Bool = false) -> String {
        var out = ""
        write(value, sortedKeys: sortedKeys, into: &out)
        return out
    }

    /// Indented form for files people read: objects one key per line, arrays of scalars on one line.
    public static func pretty(_ value: JSONValue, indent: Int = 2) -> String {
        var out = ""
        writePretty(value, level: 0, indent: indent, into: &out)
        return out + "\n"
    }

    static func writePretty(_ value: JSONValue, level: Int, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: (level + 1) * indent),
            end = String(repeating: " ", count: level * indent)
        switch value {
        case .array(let a) where a.contains(where: { $0.objectValue != nil || $0.arrayValue != nil }):
            out += "[\n"
            for (k, v) in a.enumerated() {
                out += pad
                writePretty(v, level: level + 1, indent: indent, into: &out)
                out += k + 1 < a.count ? ",\n" : "\n"
            }
            out += end + "]"
        case .array(let a):
            out += "[" + a.map { serialize($0) }.joined(separator: ", ") + "]"
        case .object(let o) where o.count > 0:
            out += "{\n"
            for (k, key) in o.keys.enumerated() {
                out += pad
                writeString(key, into: &out)
                out += ": "
                writePretty(o[key]!, level: level + 1, indent: indent, into: &out)
                out += k + 1 < o.count ? ",\n" : "\n"
            }
            out += end + "}"
        default:
            write(value, sortedKeys: false, into: &out)
        }
    }

    static func write(_ value: JSONValue, sortedKeys: Bool, into out: inout String) {
        switch value {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n
        case .string(let s): writeString(s, into: &out)
        case .array(let a):
            out += "["
            for (k, v) in a.enumerated() {
                if k > 0 { out += "," }
                write(v, sortedKeys: sortedKeys, into: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            let keys = sortedKeys ? o.keys.sorted() : o.keys
            for (k, key) in keys.enumerated() {
                if k > 0 { out += "," }
                writeString(key, into: &out)
                out += ":"
                write(o[key]!, sortedKeys: sortedKeys, into: &out)
            }
            out += "}"
        }
    }

    public static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}

extension JSONValue {
    public static func int(_ i: Int) -> JSONValue { .number(String(i)) }
    /// A Float32 written with the shortest text that reads back to the same Float32.
    public static func float(_ f: Float) -> JSONValue { .number(f.isFinite ? "\(f)" : "null") }
    public static func double(_ d: Double) -> JSONValue { .number(d.isFinite ? "\(d)" : "null") }
}
