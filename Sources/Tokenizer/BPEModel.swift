import Foundation
import JSONSupport

/// The BPE model of tokenizer.json: vocabulary, ranked merges, optional byte fallback and unk.
///
/// Merging follows HF tokenizers exactly: repeatedly merge the adjacent pair with the lowest
/// merge rank, the leftmost one on ties. A min-heap of candidate pairs keeps this O(n log n) for
/// long pieces (SentencePiece-style models have no pre-tokenizer, so a piece can be a whole
/// paragraph); stale heap entries are detected by re-checking the pair when popped.
final class BPEModel: @unchecked Sendable {
    /// Token → id by exact bytes (ExactString: canonically equivalent spellings are distinct tokens).
    let vocab: [ExactString: Int32]
    let idToToken: [String]
    /// (left id, right id) → (rank, merged id), packed into one UInt64 key.
    let merges: [UInt64: (rank: Int32, id: Int32)]
    let unkID: Int32?
    let byteFallback: Bool
    let fuseUnk: Bool
    private var cache: [ExactString: [Int32]] = [:]
    private let lock = NSLock()

    init(json v: JSONValue, path: String) throws(TokenizerError) {
        guard v["type"]?.stringValue == "BPE" else {
            throw .unsupported(path: path, key: "model type", value: v["type"]?.stringValue ?? "missing")
        }
        for k in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let x = v[k], !x.isNull, x.stringValue != "" {
                throw .unsupported(path: path, key: "BPE \(k)", value: x.stringValue ?? "non-string")
            }
        }
        if let d = v["dropout"], !d.isNull, d.doubleValue != 0 {
            throw .unsupported(path: path, key: "BPE dropout", value: "\(d.doubleValue ?? 0)")
        }
        if v["ignore_merges"]?.boolValue == true {
            throw .unsupported(path: path, key: "BPE ignore_merges", value: "true")
        }
        guard let vocabObj = v["vocab"]?.objectValue else {
            throw .invalidField(path: path, key: "model.vocab", reason: "must be an object of token → id")
        }
        var vocab: [ExactString: Int32] = [:]
        vocab.reserveCapacity(vocabObj.count)
        var maxID = -1
        // Ids index a table sized by the largest one: a sparse id far beyond the entry count would
        // size it from a few bytes of JSON, so ids must stay below 2 × entries + 1024.
        let idLimit = 2 * vocabObj.count + 1024
        for (tok, idv) in vocabObj.pairs {
            guard let id = idv.intValue, id >= 0, id < Int(Int32.max) else {
                throw .invalidField(
                    path: path, key: "model.vocab[\"\(tok)\"]", reason: "must be a non-negative integer id")
            }
            guard id < idLimit else {
                throw .invalidField(
                    path: path, key: "model.vocab[\"\(tok)\"]",
                    reason:
                        "has id \(id), far beyond the vocabulary's \(vocabObj.count) entries (ids must be below \(idLimit))"
                )
            }
            vocab[ExactString(tok)] = Int32(id)
            maxID = max(maxID, id)
        }
        var idToToken = [String](repeating: "", count: maxID + 1)
        for (t, i) in vocab { idToToken[Int(i)] = t.string }
        guard let mergeList = v["merges"]?.arrayValue else {
            throw .invalidField(path: path, key: "model.merges", reason: "must be an array")
        }
        var merges: [UInt64: (Int32, Int32)] = [:]
        merges.reserveCapacity(mergeList.count)
        for (rank, m) in mergeList.enumerated() {
            let a: String, b: String
            if let s = m.stringValue {
                // Split at the first space scalar (a Character split would miss a space that a
                // combining mark follows).
                let u = s.unicodeScalars
                guard let sp = u.firstIndex(of: " ") else {
                    throw .invalidField(path: path, key: "model.merges[\(rank)]", reason: "must be \"left right\"")
                }
                a = String(u[u.startIndex..<sp]); b = String(u[u.index(after: sp)...])
            } else if let arr = m.arrayValue, arr.count == 2, let x = arr[0].stringValue, let y = arr[1].stringValue {
                a = x; b = y
            } else {
                throw .invalidField(
                    path: path, key: "model.merges[\(rank)]", reason: "must be a string or a pair of strings")
            }
            guard let ia = vocab[ExactString(a)] else {
                throw .unknownToken(path: path, token: a, context: "merge \(rank)")
            }
            guard let ib = vocab[ExactString(b)] else {
                throw .unknownToken(path: path, token: b, context: "merge \(rank)")
            }
            guard let im = vocab[ExactString(a + b)] else {
                throw .unknownToken(path: path, token: a + b, context: "merge \(rank)")
            }
            let key = UInt64(UInt32(ia)) << 32 | UInt64(UInt32(ib))
            if merges[key] == nil { merges[key] = (Int32(rank), im) }
        }
        self.vocab = vocab
        self.idToToken = idToToken
        self.merges = merges
        if let u = v["unk_token"]?.stringValue {
            guard let id = vocab[ExactString(u)] else {
                throw .unknownToken(path: path, token: u, context: "model.unk_token")
            }
            unkID = id
        } else {
            unkID = nil
        }
        byteFallback = v["byte_fallback"]?.boolValue ?? false
        fuseUnk = v["fuse_unk"]?.boolValue ?? false
    }

    /// Token ids of one piece (already in the model's alphabet).
    func encode(_ word: String) -> [Int32] {
        let key = ExactString(word)
        if let hit = lock.withLock({ cache[key] }) { return hit }
        let ids = merge(initialSymbols(word))
        lock.withLock { if cache.count < 200_000 { cache[key] = ids } }
        return ids
    }

    private func initialSymbols(_ word: String) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(word.unicodeScalars.count)
        var lastWasUnk = false
        for u in word.unicodeScalars {
            if let id = vocab[ExactString(String(u))] { out.append(id); lastWasUnk = false; continue }
            if byteFallback {
                var allFound = true
                var bytes: [Int32] = []
                for b in String(u).utf8 {
                    let name = "<0x" + (b < 16 ? "0" : "") + String(b, radix: 16, uppercase: true) + ">"
                    if let id = vocab[ExactString(name)] { bytes.append(id) } else { allFound = false; break }
                }
                if allFound { out.append(contentsOf: bytes); lastWasUnk = false; continue }
            }
            if let unk = unkID {
                if !(fuseUnk && lastWasUnk) { out.append(unk) }
                lastWasUnk = true
            }
            // Without unk the scalar is dropped, as HF does.
        }
        return out
    }

    private func merge(_ symbols: [Int32]) -> [Int32] {
        let n = symbols.count
        if n < 2 { return symbols }
        var sym = symbols
        var prev = (0..<n).map { $0 - 1 }
        var next = (0..<n).map { $0 + 1 }
        var alive = [Bool](repeating: true, count: n)
        var heap = MinHeap()
        func push(_ i: Int) {
            let j = next[i]
            guard j < n else { return }
            let key = UInt64(UInt32(sym[i])) << 32 | UInt64(UInt32(sym[j]))
            if let m = merges[key] { heap.push(rank: m.rank, pos: Int32(i), left: sym[i], right: sym[j]) }
        }
        for i in 0..<(n - 1) { push(i) }
        while let top = heap.pop() {
            let i = Int(top.pos)
            guard alive[i], sym[i] == top.left else { continue }
            let j = next[i]
            guard j < n, sym[j] == top.right else { continue }
            let key = UInt64(UInt32(sym[i])) << 32 | UInt64(UInt32(sym[j]))
            guard let m = merges[key], m.rank == top.rank else { continue }
            sym[i] = m.id
            alive[j] = false
            next[i] = next[j]
            if next[j] < n { prev[next[j]] = i }
            if prev[i] >= 0 { push(prev[i]) }
            push(i)
        }
        var out: [Int32] = []
        var i = 0
        while i < n { out.append(sym[i]); i = next[i] }
        return out
    }
}

/// Binary min-heap ordered by (rank, position).
struct MinHeap {
    struct Entry { var rank: Int32; var pos: Int32; var left: Int32; var right: Int32 }
    private var a: [Entry] = []

    @inline(__always) private static func less(_ x: Entry, _ y: Entry) -> Bool {
        x.rank < y.rank || (x.rank == y.rank && x.pos < y.pos)
    }

    mutating func push(rank: Int32, pos: Int32, left: Int32, right: Int32) {
        a.append(Entry(rank: rank, pos: pos, left: left, right: right))
        var c = a.count - 1
        while c > 0 {
            let p = (c - 1) / 2
            if Self.less(a[c], a[p]) { a.swapAt(c, p); c = p } else { break }
        }
    }

    mutating func pop() -> Entry? {
        guard let first = a.first else { return nil }
        let last = a.removeLast()
        if !a.isEmpty {
            a[0] = last
            var p = 0
            while true {
                let l = 2 * p + 1, r = l + 1
                var m = p
                if l < a.count && Self.less(a[l], a[m]) { m = l }
                if r < a.count && Self.less(a[r], a[m]) { m = r }
                if m == p { break }
                a.swapAt(p, m); p = m
            }
        }
        return first
    }
}
