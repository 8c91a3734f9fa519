import Foundation
import JSONSupport

/// A Hugging Face `tokenizer.json` tokenizer: added tokens → normalizer → pre-tokenizer → BPE,
/// and the decoder for the way back. Encoding never adds BOS/EOS (callers do, explicitly).
public final class Tokenizer: @unchecked Sendable {
    public let path: String
    struct AddedToken {
        let id: Int32; let scalars: [Unicode.Scalar]; let lstrip: Bool; let rstrip: Bool; let singleWord: Bool;
        let special: Bool
    }
    let added: [AddedToken]
    /// First scalar → added tokens starting with it, longest first.
    private let addedByFirst: [Unicode.Scalar: [AddedToken]]
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let model: BPEModel
    let decoder: TokenDecoder?
    private let idToAdded: [Int32: String]
    private let byteLevel: Bool

    /// Loads `tokenizer.json` from a model folder or a file path.
    public convenience init(directory: String) throws(TokenizerError) {
        try self.init(path: directory + "/tokenizer.json")
    }

    public init(path: String) throws(TokenizerError) {
        self.path = path
        let data: [UInt8]
        do { data = try FileBytes.read(path, limit: FileBytes.tokenizerLimit) } catch {
            throw error.missing ? .missingFile(path: path) : .unreadable(path: path, reason: error.reason)
        }
        let json: JSONValue
        do { json = try JSONParser.parse(data) } catch { throw .invalidJSON(path: path, reason: error.description) }
        guard json.objectValue != nil else {
            throw .invalidJSON(path: path, reason: "the top level is \(json.kindDescription), not an object")
        }
        guard let modelJSON = json["model"] else { throw .invalidField(path: path, key: "model", reason: "is missing") }
        model = try BPEModel(json: modelJSON, path: path)
        normalizer =
            try json["normalizer"].map { (v) throws(TokenizerError) in try Normalizer.parse(v, path: path) } ?? nil
        preTokenizer =
            try json["pre_tokenizer"].map { (v) throws(TokenizerError) in try PreTokenizer.parse(v, path: path) } ?? nil
        decoder = try json["decoder"].map { (v) throws(TokenizerError) in try TokenDecoder.parse(v, path: path) } ?? nil
        byteLevel = preTokenizer?.isByteLevel ?? false
        var added: [AddedToken] = []
        var idToAdded: [Int32: String] = [:]
        for (k, a) in (json["added_tokens"]?.arrayValue ?? []).enumerated() {
            guard let id = a["id"]?.intValue, let content = a["content"]?.stringValue, !content.isEmpty else {
                throw .invalidField(
                    path: path, key: "added_tokens[\(k)]", reason: "needs an integer 'id' and a non-empty 'content'")
            }
            let idLimit = 2 * model.idToToken.count + 1024 + (json["added_tokens"]?.arrayValue?.count ?? 0)
            guard id >= 0, id < idLimit else {
                throw .invalidField(
                    path: path, key: "added_tokens[\(k)]",
                    reason: "has id \(id), outside 0 ..< \(idLimit) (twice the vocabulary plus the added tokens)")
            }
            added.append(
                AddedToken(
                    id: Int32(id), scalars: Array(content.unicodeScalars),
                    lstrip: a["lstrip"]?.boolValue ?? false, rstrip: a["rstrip"]?.boolValue ?? false,
                    singleWord: a["single_word"]?.boolValue ?? false, special: a["special"]?.boolValue ?? false))
            idToAdded[Int32(id)] = content
        }
        self.added = added
        self.idToAdded = idToAdded
        var byFirst: [Unicode.Scalar: [AddedToken]] = [:]
        for a in added { byFirst[a.scalars[0], default: []].append(a) }
        for k in byFirst.keys { byFirst[k]!.sort { $0.scalars.count > $1.scalars.count } }
        addedByFirst = byFirst
    }

    public var vocabularySize: Int { max(model.idToToken.count, (idToAdded.keys.max().map { Int($0) + 1 }) ?? 0) }

    /// The id of a token string (vocabulary or added token), if any.
    public func id(of token: String) -> Int32? {
        if let a = added.first(where: { String(String.UnicodeScalarView($0.scalars)) == token }) { return a.id }
        return model.vocab[ExactString(token)]
    }

    /// Token ids of `text` (no BOS/EOS added).
    public func encode(_ text: String) -> [Int32] {
        let scalars = Array(text.unicodeScalars)
        var out: [Int32] = []
        out.reserveCapacity(scalars.count / 3)
        for seg in splitOnAdded(scalars) {
            switch seg {
            case .added(let id): out.append(id)
            case .text(let r): encodeSegment(scalars[r], into: &out)
            }
        }
        return out
    }

    /// Encodes a large text by cutting it at line ends into chunks encoded on all cores.
    /// Equal to `encode` whenever no pre-tokenizer match spans a line end (true for the
    /// GPT-2 / Llama-3 patterns, where "\n" ends every match except runs of whitespace; chunks are
    /// cut after a newline that is followed by a non-space scalar, which no match crosses).
    public func encodeParallel(
        _ text: String, chunks: Int = ProcessInfo.processInfo.activeProcessorCount * 4
    ) -> [Int32] {
        let scalars = Array(text.unicodeScalars)
        guard byteLevel, chunks > 1, scalars.count > 65_536 else { return encode(text) }
        var cuts = [0]
        let step = scalars.count / chunks
        var pos = step
        while pos < scalars.count {
            var k = pos
            while k + 1 < scalars.count && !(scalars[k] == "\n" && !CharClass.isSpace(scalars[k + 1])) { k += 1 }
            if k + 1 >= scalars.count { break }
            cuts.append(k + 1)
            pos = k + 1 + step
        }
        cuts.append(scalars.count)
        let n = cuts.count - 1
        let bounds = cuts
        let results = SendableBox(UnsafeMutableBufferPointer<[Int32]>.allocate(capacity: n))
        results.value.initialize(repeating: [])
        defer { results.value.deinitialize(); results.value.deallocate() }
        DispatchQueue.concurrentPerform(iterations: n) { i in
            var s = ""
            s.unicodeScalars.append(contentsOf: scalars[bounds[i]..<bounds[i + 1]])
            results.value[i] = self.encode(s)
        }
        return results.value.flatMap { $0 }
    }

    enum Segment { case added(Int32), text(Range<Int>) }

    private func splitOnAdded(_ s: [Unicode.Scalar]) -> [Segment] {
        guard !addedByFirst.isEmpty else { return [.text(0..<s.count)] }
        var segs: [Segment] = []
        var textStart = 0
        var i = 0
        while i < s.count {
            guard let cands = addedByFirst[s[i]] else { i += 1; continue }
            var matched: AddedToken?
            for c in cands where i + c.scalars.count <= s.count && s[i..<(i + c.scalars.count)].elementsEqual(c.scalars)
            {
                if c.singleWord {
                    let before = i > 0 ? s[i - 1] : " "
                    let after = i + c.scalars.count < s.count ? s[i + c.scalars.count] : " "
                    if CharClass.isLetter(before) || CharClass.isNumber(before) || CharClass.isLetter(after)
                        || CharClass.isNumber(after)
                    {
                        continue
                    }
                }
                matched = c; break
            }
            guard let m = matched else { i += 1; continue }
            var textEnd = i
            if m.lstrip { while textEnd > textStart && CharClass.isSpace(s[textEnd - 1]) { textEnd -= 1 } }
            if textEnd > textStart { segs.append(.text(textStart..<textEnd)) }
            segs.append(.added(m.id))
            i += m.scalars.count
            if m.rstrip { while i < s.count && CharClass.isSpace(s[i]) { i += 1 } }
            textStart = i
        }
        if textStart < s.count { segs.append(.text(textStart..<s.count)) }
        return segs
    }

    private func encodeSegment(_ seg: ArraySlice<Unicode.Scalar>, into out: inout [Int32]) {
        var piece: ArraySlice<Unicode.Scalar> = seg
        if let normalizer {
            var str = ""
            str.unicodeScalars.append(contentsOf: seg)
            piece = ArraySlice(normalizer.apply(str).unicodeScalars)
        }
        let pieces = preTokenizer?.apply([piece]) ?? [piece]
        for p in pieces where !p.isEmpty {
            let word: String
            if byteLevel {
                word = ByteLevel.encode(p)
            } else {
                var s = ""
                s.unicodeScalars.append(contentsOf: p)
                word = s
            }
            out.append(contentsOf: model.encode(word))
        }
    }

    /// The token string of an id (added token content or vocabulary entry).
    public func token(_ id: Int32) -> String? {
        if let a = idToAdded[id] { return a }
        let i = Int(id)
        return i >= 0 && i < model.idToToken.count ? model.idToToken[i] : nil
    }

    /// Text of `ids`; `skipSpecial` drops special added tokens. Unknown ids are skipped.
    public func decode(_ ids: [Int32], skipSpecial: Bool = false) -> String {
        var out = ""
        var run: [String] = []
        func flush() {
            if !run.isEmpty { out += (decoder?.decodeChain(run) ?? run).joined(); run = [] }
        }
        for id in ids {
            if let a = idToAdded[id] {
                if skipSpecial && added.contains(where: { $0.id == id && $0.special }) { continue }
                flush(); out += a
            } else if let t = token(id) {
                run.append(t)
            }
        }
        flush()
        return out
    }
}

/// Hands a value to concurrently running closures that write disjoint parts of it.
struct SendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
