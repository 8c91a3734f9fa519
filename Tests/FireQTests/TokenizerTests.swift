import Foundation
import Testing
import Tokenizer

/// Tokenizer against the HF tokenizer's own output (golden files from transformers/tokenizers).
@Suite struct TokenizerTests {
    static func tokenizer() throws -> Tokenizer {
        try TestPaths.requireModel()
        return try Tokenizer(directory: TestPaths.model)
    }

    @Test func goldenCases() throws {
        let tok = try Self.tokenizer()
        let cases = try TestPaths.jsonObject(TestPaths.golden + "/tokenizer-cases.json") as! [[String: Any]]
        #expect(cases.count >= 10)
        for c in cases {
            let text = c["text"] as! String
            let ids = (c["ids"] as! [NSNumber]).map { $0.int32Value }
            #expect(tok.encode(text) == ids, "text \(text.debugDescription)")
        }
    }

    @Test func wholeEvaluationFile() throws {
        let tok = try Self.tokenizer()
        let text = String(decoding: TestPaths.read(TestPaths.sharedData + "/wikitext-2-raw-test.raw"), as: UTF8.self)
        let gold = TestPaths.read(TestPaths.golden + "/wikitext-2-raw-test.ids.u32")
        let want = gold.withUnsafeBytes { raw in
            (0..<(gold.count / 4)).map { Int32(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
        }
        #expect(want.count == 304_830)
        let ids = tok.encodeParallel(text)
        #expect(ids.count == want.count)
        let firstDifference = zip(ids, want).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(firstDifference == nil)
        // The parallel path equals the sequential one on a prefix with many cut points.
        let prefix = String(text.unicodeScalars.prefix(200_000))
        let parallelEqual = tok.encodeParallel(prefix, chunks: 7) == tok.encode(prefix)
        #expect(parallelEqual)
    }

    @Test func decodeRoundTrip() throws {
        let tok = try Self.tokenizer()
        for s in [
            "The capital of France is", " = Robert Boulter = \r\n", "naïve café — “quotes” 杜甫 ❤️ emoji 🚀",
            "<|im_start|>user\nHi<|im_end|>\n"
        ] {
            #expect(tok.decode(tok.encode(s)) == s)
        }
        #expect(tok.decode([1, 19556], skipSpecial: true) == "Hello")
    }

    /// The hand-written pre-tokenizer scanners equal the regex engine on tricky text.
    @Test(arguments: [PreTokenizerPatterns.gpt2, PreTokenizerPatterns.llama3, PreTokenizerPatterns.qwen2])
    func scannersMatchRegexReference(pattern: String) throws {
        let samples = [
            "Hello, world! 12345 It's a test.\n\n  indented\tTAB",
            "I'M here, they'RE 're 'll 've 'd 's 't 'x ' '",
            "   leading spaces and trailing   ", " \n \r\n\r\n  x  \n", "a\u{00A0}b\u{2003} c\u{3000}",
            "x = 1 + 22 - 333 * 4444 / 55555",
            "naïve café — “quotes” 杜甫 ❤️ emoji 🚀 ½ Ⅻ ٣", "def foo(x):\n    return x**2  # comment\n",
            "..!!?? \t\t\n\nabc...\n",
            "", " ", "\n", "'", "a'", "ЁЛКИ-палки 123abc", "tab\tsep\tvalues\n"
        ]
        let wiki = String(
            decoding: TestPaths.read(TestPaths.sharedData + "/wikitext-2-raw-test.raw").prefix(20_000), as: UTF8.self)
        for s in samples + [wiki] {
            let fast = try PreTokenizerPatterns.fastMatches(pattern: pattern, in: s)
            let ref = try PreTokenizerPatterns.regexMatches(pattern: pattern, in: s)
            #expect(fast == ref, "text \(s.prefix(80).debugDescription)")
        }
    }

    @Test func missingTokenizerFile() {
        let dir = TestPaths.tempDir()
        #expect {
            try Tokenizer(directory: dir)
        } throws: { e in
            let d = (e as! TokenizerError).description
            return d.contains(dir + "/tokenizer.json") && d.contains("not found")
        }
    }

    @Test func invalidTokenizerJSON() throws {
        let dir = TestPaths.tempDir()
        _ = FileManager.default.createFile(
            atPath: dir + "/tokenizer.json",
            contents: Data(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}"#.utf8))
        #expect {
            try Tokenizer(directory: dir)
        } throws: { e in (e as! TokenizerError).description.contains("'b'") }
        _ = FileManager.default.createFile(
            atPath: dir + "/tokenizer.json", contents: Data(#"{"model": {"type": "Unigram"}}"#.utf8))
        #expect {
            try Tokenizer(directory: dir)
        } throws: { e in (e as! TokenizerError).description.contains("unsupported model type 'Unigram'") }
        _ = FileManager.default.createFile(atPath: dir + "/tokenizer.json", contents: Data("{\"model\": ".utf8))
        #expect {
            try Tokenizer(directory: dir)
        } throws: { e in (e as! TokenizerError).description.contains("not valid JSON") }
    }

    /// SentencePiece-style BPE (Llama-2 / Mistral layout): Prepend + Replace normalizer,
    /// byte fallback, and the matching decoder chain, on a hand-built vocabulary.
    @Test func sentencePieceStyleBPE() throws {
        let dir = TestPaths.tempDir()
        let json = #"""
            {"added_tokens":[{"id":1,"content":"<s>","special":true}],
             "normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},
             "pre_tokenizer":null,
             "decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]},
             "model":{"type":"BPE","unk_token":"<unk>","byte_fallback":true,"fuse_unk":true,
               "vocab":{"<unk>":0,"<s>":1,"<0xC3>":2,"<0xA9>":3,"▁":4,"h":5,"i":6,"▁h":7,"▁hi":8,"c":9,"a":10,"f":11,"ca":12,"caf":13},
               "merges":["▁ h","▁h i","c a","ca f"]}}
            """#
        _ = FileManager.default.createFile(atPath: dir + "/tokenizer.json", contents: Data(json.utf8))
        let tok = try Tokenizer(directory: dir)
        // "hi café" → ▁hi ▁ caf <0xC3> <0xA9>
        #expect(tok.encode("hi café") == [8, 4, 13, 2, 3])
        #expect(tok.decode([8, 4, 13, 2, 3]) == "hi café")
        #expect(tok.encode("<s>hi") == [1, 8])
    }

    /// Gemma 3's tokenizer.json: Replace " " → "▁" matches scalars, not grapheme clusters (a space
    /// before a combining mark such as the Devanagari virama U+094D still becomes "▁", as in
    /// `tokenizers`), and canonically equivalent tokens (U+09DF vs U+09AF U+09BC) keep their own ids.
    @Test func gemmaReplaceAndCanonicallyEquivalentTokens() throws {
        let dir = TestPaths.tempDir()
        let json = #"""
            {"normalizer":{"type":"Replace","pattern":{"String":" "},"content":"▁"},
             "pre_tokenizer":{"type":"Split","pattern":{"String":" "},"behavior":"MergedWithPrevious","invert":false},
             "decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"}]},
             "model":{"type":"BPE","unk_token":"<unk>","byte_fallback":true,"fuse_unk":true,
               "vocab":{"<unk>":0,"<0x20>":1,"▁":2,"्":3,"▁्":4,"য়":5,"য":6,"়":7,"য়":8,"a":9},
               "merges":[["▁","्"],["য","়"]]}}
            """#
        _ = FileManager.default.createFile(atPath: dir + "/tokenizer.json", contents: Data(json.utf8))
        let tok = try Tokenizer(directory: dir)
        #expect(tok.encode("a \u{94D}") == [9, 4])
        #expect(tok.encode("\u{9DF}") == [5] && tok.encode("\u{9AF}\u{9BC}") == [8])
        #expect(tok.decode([9, 4]) == "a \u{94D}")
    }

    /// Qwen2's tokenizer.json normalizer: NFC composes "e" + U+0301 into "é" (U+00E9) before
    /// tokenization, so both spellings give the same ids (as `tokenizers` does).
    @Test func nfcNormalizer() throws {
        let dir = TestPaths.tempDir()
        let json = #"""
            {"normalizer":{"type":"NFC"},"pre_tokenizer":null,"decoder":null,
             "model":{"type":"BPE","byte_fallback":true,
               "vocab":{"<0x65>":0,"<0xC3>":1,"<0xA9>":2,"<0xCC>":3,"<0x81>":4,"e":5},"merges":[]}}
            """#
        _ = FileManager.default.createFile(atPath: dir + "/tokenizer.json", contents: Data(json.utf8))
        let tok = try Tokenizer(directory: dir)
        #expect(tok.encode("e\u{301}") == [1, 2])
        #expect(tok.encode("\u{E9}") == [1, 2])
        #expect(tok.encode("e") == [5])
    }
}
