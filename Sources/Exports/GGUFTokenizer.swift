import Foundation
import JSONSupport
import Tokenizer

/// The `tokenizer.*` keys of a GGUF export, from the packed folder's tokenizer.json,
/// tokenizer_config.json and config.json (Formats/exports.md, as llama.cpp's converter writes
/// them for byte-level BPE vocabularies).
public enum GGUFTokenizer {
    /// llama.cpp token types (llama-vocab.h `llama_token_type`).
    static let normal: Int32 = 1, control: Int32 = 3, userDefined: Int32 = 4, byte: Int32 = 6

    /// What a SentencePiece BPE vocabulary converted to tokenizer.json looks like: BPE with
    /// byte fallback, a normalizer replacing " " by "▁" (optionally after prepending "▁": then
    /// llama.cpp's add_space_prefix), no pre-tokenizer or a split on " " (which that normalizer
    /// leaves nothing to split). Returns add_space_prefix; nil for any other layout (then
    /// byte-level BPE is required).
    static func sentencePieceLayout(_ tj: JSONValue, path: String) throws -> Bool? {
        guard tj["model"]?["byte_fallback"]?.boolValue == true else { return nil }
        func isSpaceReplace(_ v: JSONValue?) -> Bool {
            v?["type"]?.stringValue == "Replace" && v?["pattern"]?["String"]?.stringValue == " "
                && v?["content"]?.stringValue == "\u{2581}"
        }
        let norm = tj["normalizer"]
        var prefix = false
        if isSpaceReplace(norm) {
        } else if norm?["type"]?.stringValue == "Sequence", let parts = norm?["normalizers"]?.arrayValue,
            parts.count == 2,
            parts[0]["type"]?.stringValue == "Prepend", parts[0]["prepend"]?.stringValue == "\u{2581}",
            isSpaceReplace(parts[1])
        {
            prefix = true
        } else {
            throw ExportError(
                path: path,
                reason:
                    "is a byte-fallback BPE whose normalizer is not SentencePiece's (\" \" → \"\u{2581}\", optionally after a \"\u{2581}\" prefix), so llama.cpp's SentencePiece tokenizer would split text differently"
            )
        }
        let p = tj["pre_tokenizer"]
        let splitsOnSpace =
            p?["type"]?.stringValue == "Split" && p?["pattern"]?["String"]?.stringValue == " "
            && p?["invert"]?.boolValue != true
        guard p == nil || p!.isNull || splitsOnSpace else {
            throw ExportError(
                path: path,
                reason:
                    "is a SentencePiece-style BPE with a pre-tokenizer (\(p?["type"]?.stringValue ?? "?")) that llama.cpp's SentencePiece tokenizer does not apply"
            )
        }
        return prefix
    }

    /// True when tokenizer.json's post-processor is a template whose single-sequence form starts
    /// with the BOS token (how Hugging Face's Gemma tokenizer adds BOS).
    static func templateStartsWithBOS(_ tj: JSONValue, tokenizerConfig tc: JSONValue?) -> Bool {
        guard let pp = tj["post_processor"], pp["type"]?.stringValue == "TemplateProcessing",
            let first = pp["single"]?.arrayValue?.first, let id = first["SpecialToken"]?["id"]?.stringValue
        else { return false }
        let bos = tc?["bos_token"]?.stringValue ?? tc?["bos_token"]?["content"]?.stringValue
        return bos == nil || bos == id
    }

    /// `<0xXX>`: a byte-fallback piece.
    static func isBytePiece(_ t: String) -> Bool {
        let u = Array(t.utf8)
        guard u.count == 6, u[0] == UInt8(ascii: "<"), u[1] == UInt8(ascii: "0"), u[2] == UInt8(ascii: "x"),
            u[5] == UInt8(ascii: ">")
        else { return false }
        return u[3...4].allSatisfy {
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains($0)
        }
    }

    static func keyValues(_ src: ExportSource) throws -> [(String, GGUFValue)] {
        let path = src.directory + "/tokenizer.json"
        guard let tj = try src.jsonFile("tokenizer.json") else {
            throw ExportError(path: path, reason: "is missing; the GGUF export embeds the tokenizer")
        }
        let tc = try src.jsonFile("tokenizer_config.json")
        guard let model = tj["model"], model["type"]?.stringValue == "BPE", let vocab = model["vocab"]?.objectValue
        else {
            throw ExportError(
                path: path,
                reason:
                    "is not a BPE tokenizer; the GGUF export writes byte-level BPE ('gpt2') and SentencePiece BPE ('llama') vocabularies only"
            )
        }
        let spm = try sentencePieceLayout(tj, path: path)
        let pre = spm != nil ? "default" : try preTokenizerName(tj["pre_tokenizer"], path: path)

        // Tokens by id: the model vocabulary, then the added tokens (which may extend it).
        let n = src.config.vocabSize
        var tokens = [String?](repeating: nil, count: n)
        var types = [Int32](repeating: normal, count: n)
        for (token, idValue) in vocab.pairs {
            guard let id = idValue.intValue, id >= 0, id < n else {
                throw ExportError(
                    path: path,
                    reason: "vocabulary entry '\(token)' has id \(idValue) outside the model's vocab_size \(n)")
            }
            tokens[id] = token
        }
        var idOf: [String: Int] = [:]
        for (token, idValue) in vocab.pairs { idOf[token] = idValue.intValue }
        for a in tj["added_tokens"]?.arrayValue ?? [] {
            guard let id = a["id"]?.intValue, let content = a["content"]?.stringValue, id >= 0, id < n else {
                throw ExportError(
                    path: path, reason: "an added token has no valid id and content within vocab_size \(n)")
            }
            tokens[id] = content
            idOf[content] = id
            types[id] = a["special"]?.boolValue == true ? control : userDefined
        }
        let tokenStrings = tokens.enumerated().map { $0.element ?? "[PAD\($0.offset)]" }

        var merges: [String] = []
        for m in model["merges"]?.arrayValue ?? [] {
            if let s = m.stringValue {
                merges.append(s)
            } else if let pair = m.arrayValue, pair.count == 2, let a = pair[0].stringValue, let b = pair[1].stringValue
            {
                merges.append(a + " " + b)
            } else {
                throw ExportError(
                    path: path,
                    reason: "model.merges holds \(m.kindDescription), expected \"a b\" strings or [a, b] pairs")
            }
        }

        var kv: [(String, GGUFValue)] = []
        let addPrefix = spm ?? tc?["add_prefix_space"]?.boolValue ?? false
        kv.append(("tokenizer.ggml.add_space_prefix", .bool(addPrefix)))
        let addBOS = tc?["add_bos_token"]?.boolValue ?? (spm != nil && templateStartsWithBOS(tj, tokenizerConfig: tc))
        kv.append(("tokenizer.ggml.add_bos_token", .bool(addBOS)))
        kv.append(("tokenizer.ggml.model", .string(spm != nil ? "llama" : "gpt2")))
        kv.append(("tokenizer.ggml.pre", .string(pre)))
        kv.append(("tokenizer.ggml.tokens", .stringArray(tokenStrings)))
        if spm != nil {
            // SentencePiece merges the pair whose joined piece scores highest: score −r for the
            // piece merge r first makes, so llama.cpp merges in merges' order (Formats/exports.md).
            var rank = [String: Int]()
            for (r, m) in merges.enumerated() {
                guard let sp = m.firstIndex(of: " ") else { continue }
                let joined = String(m[..<sp]) + String(m[m.index(after: sp)...])
                if rank[joined] == nil { rank[joined] = r }
            }
            var scores = [Float](repeating: 0, count: n)
            for id in 0..<n {
                let t = tokenStrings[id]
                if types[id] != normal {
                    scores[id] = -1000
                } else if isBytePiece(t) {
                    types[id] = byte; scores[id] = 0
                } else {
                    scores[id] = -Float(rank[t] ?? merges.count)
                }
            }
            kv.append(("tokenizer.ggml.scores", .f32Array(scores)))
            kv.append(("tokenizer.ggml.token_type", .i32Array(types)))
        } else {
            kv.append(("tokenizer.ggml.token_type", .i32Array(types)))
            kv.append(("tokenizer.ggml.merges", .stringArray(merges)))
        }
        // Special ids: tokenizer_config's token strings looked up in the vocabulary, else config.json's ids.
        func special(_ tokenKey: String, _ configKey: String?) -> Int? {
            let v = tc?[tokenKey]
            if let s = v?.stringValue ?? v?["content"]?.stringValue, let id = idOf[s] { return id }
            return configKey.flatMap { src.configJSON[$0]?.intValue }
        }
        for (key, tokenKey, configKey) in [
            ("bos_token_id", "bos_token", "bos_token_id"), ("eos_token_id", "eos_token", "eos_token_id"),
            ("unknown_token_id", "unk_token", nil), ("padding_token_id", "pad_token", "pad_token_id")
        ] {
            if let id = special(tokenKey, configKey) { kv.append(("tokenizer.ggml." + key, .u32(UInt32(id)))) }
        }
        if let t = tc?["chat_template"]?.stringValue {
            kv.append(("tokenizer.chat_template", .string(t)))
        } else if let data = FileBytes.readIfPresent(
            src.directory + "/chat_template.jinja", limit: FileBytes.smallJSONLimit),
            let t = String(validating: data, as: UTF8.self)
        {
            kv.append(("tokenizer.chat_template", .string(t)))
        }
        return kv
    }

    /// llama.cpp's name for the pre-tokenizer (its converter recognises it by hashing how a test
    /// string splits; here by the tokenizer.json structure that gives those splits).
    public static func preTokenizerName(_ p: JSONValue?, path: String) throws -> String {
        func isByteLevel(_ v: JSONValue?) -> Bool {
            v?["type"]?.stringValue == "ByteLevel" && (v?["use_regex"]?.boolValue ?? true)
                && !(v?["add_prefix_space"]?.boolValue ?? false)
        }
        if isByteLevel(p) { return "gpt-2" }
        if p?["type"]?.stringValue == "Sequence", let parts = p?["pretokenizers"]?.arrayValue, parts.count == 2,
            parts[0]["type"]?.stringValue == "Digits", parts[0]["individual_digits"]?.boolValue == true,
            isByteLevel(parts[1])
        {
            return "smollm"
        }
        // Qwen2: the Qwen2 regex as an isolated Split, then ByteLevel without its own regex.
        if p?["type"]?.stringValue == "Sequence", let parts = p?["pretokenizers"]?.arrayValue, parts.count == 2,
            parts[0]["type"]?.stringValue == "Split",
            parts[0]["pattern"]?["Regex"]?.stringValue == PreTokenizerPatterns.qwen2,
            parts[0]["behavior"]?.stringValue == "Isolated", parts[0]["invert"]?.boolValue != true,
            parts[1]["type"]?.stringValue == "ByteLevel", parts[1]["use_regex"]?.boolValue == false,
            !(parts[1]["add_prefix_space"]?.boolValue ?? false)
        {
            return "qwen2"
        }
        throw ExportError(
            path: path,
            reason:
                "its pre_tokenizer has no llama.cpp pre-tokenizer name this exporter knows (gpt-2: ByteLevel; smollm: Digits(individual) + ByteLevel; qwen2: Split(Qwen2 regex) + ByteLevel), so llama.cpp would split text differently"
        )
    }
}
