import Exports
import Foundation
import JSONSupport
import PackedFormat
import Testing

/// `fireq export` and `fireq convert --export` (Formats/exports.md): hand-checked block bytes,
/// determinism, and every bad input of the issue. The targets' own code loading the exports is in
/// Tests/python/test_exports.py.
@Suite(.serialized) struct ExportTests {
    /// A packed folder of the default model (paper recipe, 2 × 64 calibration tokens), made once.
    nonisolated(unsafe) static var packedPath: String?
    static func packed() throws -> String {
        if let p = packedPath { return p }
        let out = TestPaths.tempDir() + "/packed"
        let r = try QuantizeTests.quantize(QuantizeTests.recipes + "/fireq.json", out: out)
        #expect(r.status == 0, "\(r.stderr)")
        packedPath = out
        return out
    }

    /// One block by hand: q = j − 8 for j < 16 and again for the second half, s = 0.5, 1/P = 0.25:
    /// d = FP16(0.125) = 0x3000, then byte j = (q_j + 8) | (q_{j+16} + 8) << 4 = j · 0x11.
    @Test func q4_0BlockBytesByHand() {
        let q = (0..<32).map { Int8($0 % 16 - 8) }
        let l = PackedLinear(
            name: "x", n: 1, k: 32, groupSize: 32, q: q, scales: [0.5], scaleFormat: "fp8_e4m3", perTensorScaleInv: 0.25
        )
        let b = GGUFExport.q4_0Blocks(l, permuteHeads: nil)
        #expect(b == [0x00, 0x30] + (0..<16).map { UInt8($0 * 0x11) })
        #expect(GGUFExport.countInexact(l) == 0)
        // 2^-9 / 2^14 = 2^-23 is an FP16 subnormal (exact); 0x1.2p-9 / 2^14 needs bits below 2^-24.
        let tiny = PackedLinear(
            name: "t", n: 1, k: 64, groupSize: 32, q: [Int8](repeating: 1, count: 64), scales: [0x1p-9, 0x1.2p-9],
            scaleFormat: "fp8_e4m3", perTensorScaleInv: 0x1p-14)
        #expect(GGUFExport.countInexact(tiny) == 1)
        // A group of 64 is two blocks with the same d.
        let g64 = PackedLinear(
            name: "g", n: 1, k: 64, groupSize: 64, q: [Int8](repeating: -1, count: 64), scales: [2],
            scaleFormat: "fp8_e4m3", perTensorScaleInv: 1)
        let b64 = GGUFExport.q4_0Blocks(g64, permuteHeads: nil)
        #expect(b64.count == 36 && b64[0..<2] == [0x00, 0x40] && b64[18..<20] == [0x00, 0x40] && b64[2] == 0x77)
    }

    /// llama.cpp's q/k row order: inside each head, GGUF rows 2j and 2j+1 are HF rows j and j + D/2.
    @Test func queryKeyRowPermutation() {
        #expect((0..<8).map { GGUFExport.hfRow($0, rows: 8, heads: 2) } == [0, 2, 1, 3, 4, 6, 5, 7])
        #expect((0..<6).map { GGUFExport.hfRow($0, rows: 6, heads: 1) } == [0, 3, 1, 4, 2, 5])
    }

    @Test func exportsAreByteIdenticalAcrossRuns() throws {
        let p = try Self.packed(), d = TestPaths.tempDir()
        for f in ["gguf", "compressed-tensors", "mlx"] {
            let a = try CLI.run(["export", p, "--format", f, "--out", d + "/a." + f])
            let b = try CLI.run(["export", p, "--format", f, "--out", d + "/b." + f])
            #expect(a.status == 0 && b.status == 0, "\(a.stderr) \(b.stderr)")
            let file = f == "gguf" ? "" : "/model.safetensors"
            #expect(
                TestPaths.read(d + "/a." + f + file) == TestPaths.read(d + "/b." + f + file),
                "\(f) export differs between runs")
            #expect(a.stdout.contains("not carried: FP8 re-rounding"), "\(a.stdout)")
        }
        // Sizes: 4.5 bits per weight of Q4_0 against 4.125 + F16 embedding for the safetensors exports.
        let gguf = try FileManager.default.attributesOfItem(atPath: d + "/a.gguf")[.size] as! Int
        #expect(gguf > 100_000_000 && gguf < 130_000_000)
    }

    @Test func notAPackedFolder() throws {
        try TestPaths.requireModel()
        let d = TestPaths.tempDir()
        try CLITests.expectFailure(
            ["export", TestPaths.model, "--format", "gguf", "--out", d + "/x.gguf"],
            mentions: [TestPaths.model + "/model.safetensors", "is not a fireq-packed file"])
        #expect(!FileManager.default.fileExists(atPath: d + "/x.gguf"))
        try CLITests.expectFailure(
            ["export", d + "/nothing", "--format", "mlx", "--out", d + "/x"],
            mentions: [d + "/nothing", "not a fireq-packed folder"])
    }

    @Test func existingOutputNeedsForce() throws {
        let p = try Self.packed(), d = TestPaths.tempDir()
        _ = FileManager.default.createFile(atPath: d + "/m.gguf", contents: Data("keep".utf8))
        try CLITests.expectFailure(
            ["export", p, "--format", "gguf", "--out", d + "/m.gguf"], mentions: [d + "/m.gguf", "--force"])
        #expect(TestPaths.read(d + "/m.gguf") == Data("keep".utf8))
        let r = try CLI.run(["export", p, "--format", "gguf", "--out", d + "/m.gguf", "--force"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(TestPaths.read(d + "/m.gguf").prefix(4) == Data("GGUF".utf8))
        try CLITests.expectFailure(["export", p, "--format", "mlx", "--out", p], mentions: [p, "packed folder itself"])
    }

    /// G = 16: GGUF's Q4_0 blocks hold 32 and MLX supports 32/64/128, so both refuse; compressed-tensors takes it.
    @Test func groupSizeTheTargetLacks() throws {
        let d = TestPaths.tempDir()
        let recipe = QuantizeTests.recipeFile(#"{"name": "g16", "weights": {"group_size": 16}}"#)
        let r = try QuantizeTests.quantize(recipe, out: d + "/p16")
        #expect(r.status == 0, "\(r.stderr)")
        try CLITests.expectFailure(
            ["export", d + "/p16", "--format", "gguf", "--out", d + "/x.gguf"],
            mentions: [d + "/p16/model.safetensors", "group size 16", "multiple of 32"])
        try CLITests.expectFailure(
            ["export", d + "/p16", "--format", "mlx", "--out", d + "/x"], mentions: ["group size 16", "32, 64 and 128"])
        #expect(
            !FileManager.default.fileExists(atPath: d + "/x.gguf") && !FileManager.default.fileExists(atPath: d + "/x"))
        let ct = try CLI.run(["export", d + "/p16", "--format", "compressed-tensors", "--out", d + "/ct"])
        #expect(ct.status == 0, "\(ct.stderr)")
        let cfg = try TestPaths.jsonObject(d + "/ct/config.json") as! [String: Any]
        let q = cfg["quantization_config"] as! [String: Any]
        let g = ((q["config_groups"] as! [String: Any])["group_0"] as! [String: Any])["weights"] as! [String: Any]
        #expect(g["group_size"] as? Int == 16)
    }

    /// A model the target cannot take: the same folder declared Gemma 3, whose GGUF llama.cpp
    /// runs with a fixed q·k scale (1/√head_dim) and local RoPE base (10 000): a config that
    /// states others is refused naming config.json and the value, before anything is written.
    @Test func architectureTheTargetLacks() throws {
        let p = try Self.packed(), d = TestPaths.tempDir() + "/q"
        try FileManager.default.copyItem(atPath: p, toPath: d)
        var cfg = try TestPaths.jsonObject(d + "/config.json") as! [String: Any]
        cfg["architectures"] = ["Gemma3ForCausalLM"]; cfg["model_type"] = "gemma3_text"
        cfg["query_pre_attn_scalar"] = 256; cfg["sliding_window"] = 512
        try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: d + "/config.json"))
        try CLITests.expectFailure(
            ["export", d, "--format", "gguf", "--out", d + ".gguf"],
            mentions: [
                d + "/config.json",
                "scales q·k by 0.0625 (query_pre_attn_scalar), but llama.cpp's gemma3 uses 1/√head_dim = 0.125"
            ])
        cfg["query_pre_attn_scalar"] = 64; cfg["rope_local_base_freq"] = 20000
        try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: d + "/config.json"))
        try CLITests.expectFailure(
            ["export", d, "--format", "gguf", "--out", d + ".gguf"],
            mentions: [d + "/config.json", "has rope_local_base_freq 20000.0, but llama.cpp's gemma3 uses 10000"])
        #expect(!FileManager.default.fileExists(atPath: d + ".gguf"))
    }

    /// llama.cpp's pre-tokenizer names, recognised by the tokenizer.json structure that splits
    /// text as they do: Qwen2's (the Qwen2.5 tokenizer.json's pre_tokenizer, verbatim), and a
    /// Qwen2-like one with another regex is refused (llama.cpp would split differently).
    @Test func preTokenizerNames() throws {
        let qwen2 =
            #"{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]}"#
        #expect(try GGUFTokenizer.preTokenizerName(try JSONParser.parse(Array(qwen2.utf8)), path: "t.json") == "qwen2")
        let smollm =
            #"{"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]}"#
        #expect(
            try GGUFTokenizer.preTokenizerName(try JSONParser.parse(Array(smollm.utf8)), path: "t.json") == "smollm")
        let other = qwen2.replacingOccurrences(of: "\\p{N}|", with: "\\p{N}{1,3}|")
        #expect(other != qwen2)
        #expect {
            _ = try GGUFTokenizer.preTokenizerName(try JSONParser.parse(Array(other.utf8)), path: "t.json")
        } throws: { e in
            "\(e)".hasPrefix("t.json: its pre_tokenizer has no llama.cpp pre-tokenizer name")
        }
    }

    /// A write that fails half-way (file size limit): one-line error naming the output, nothing
    /// under the final name, no temporary file left; the rerun without the limit succeeds.
    @Test func writeFailingHalfWay() throws {
        let p = try Self.packed(), d = TestPaths.tempDir()
        for (f, out) in [("gguf", d + "/m.gguf"), ("mlx", d + "/m.mlx")] {
            // 20,000 blocks of 512 bytes ≈ 10 MB, a tenth of the export; SIGXFSZ ignored so write() fails with EFBIG.
            let r = try CLI.shell(
                "ulimit -f 20000; trap '' XFSZ; exec \"$0\" export \"$1\" --format \(f) --out \"$2\"",
                [CLI.binary, p, out])
            #expect(r.status != 0, "\(f): exit status")
            #expect(
                r.stderr.hasPrefix("error: ") && r.stderr.split(separator: "\n").count == 1 && r.stderr.contains(out),
                "\(f): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out), "\(f): nothing under the final name")
            #expect(
                try FileManager.default.contentsOfDirectory(atPath: d).filter { $0.contains(".tmp-") }.isEmpty,
                "\(f): temporary files left")
            let ok = try CLI.run(["export", p, "--format", f, "--out", out])
            #expect(ok.status == 0, "\(ok.stderr)")
        }
    }

    /// `convert --export`: each export is a recorded stage (a rerun skips it, a damaged one is
    /// rebuilt) and is published next to OUT with the same bytes `fireq export` writes.
    @Test func convertPublishesExportsAsStages() throws {
        try TestPaths.requireModel()
        let d = TestPaths.tempDir(), out = d + "/m"
        let args = ConvertTests.convertArgs(out: out, extra: ["--export", "gguf,compressed-tensors", "--keep-work"])
        let r = try CLI.run(args)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("not carried: INT4 K/V"), "\(r.stdout)")
        let direct = try CLI.run(["export", out, "--format", "gguf", "--out", d + "/direct.gguf"])
        #expect(direct.status == 0, "\(direct.stderr)")
        #expect(
            TestPaths.read(out + ".gguf") == TestPaths.read(d + "/direct.gguf"), "convert's GGUF equals fireq export's")
        #expect(FileManager.default.fileExists(atPath: out + ".compressed-tensors/model.safetensors"))
        #expect(!FileManager.default.fileExists(atPath: out + ".mlx"))

        let again = try CLI.run(args + ["--force"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(
            again.stderr.contains("[export] gguf: up to date")
                && again.stderr.contains("[export] compressed-tensors: up to date"), "\(again.stderr)")
        // A damaged stage output is rebuilt.
        let work = out + ".fireq-work/export.gguf"
        let h = FileHandle(forUpdatingAtPath: work)!
        try h.seek(toOffset: 1000); try h.write(contentsOf: Data([0xFF, 0xFF])); try h.close()
        let third = try CLI.run(args + ["--force"])
        #expect(third.status == 0, "\(third.stderr)")
        #expect(
            third.stderr.contains("changed; recomputing") && !third.stderr.contains("[export] gguf: up to date"),
            "\(third.stderr)")
        #expect(TestPaths.read(out + ".gguf") == TestPaths.read(d + "/direct.gguf"))
        // Without --force an existing export is refused before any work.
        _ = FileManager.default.createFile(atPath: d + "/n.gguf", contents: Data("keep".utf8))
        try CLITests.expectFailure(
            ConvertTests.convertArgs(out: d + "/n", extra: ["--export", "gguf"]), mentions: [d + "/n.gguf", "--force"])
        #expect(TestPaths.read(d + "/n.gguf") == Data("keep".utf8) && !FileManager.default.fileExists(atPath: d + "/n"))
    }

    @Test func weightsOnlyNumericsNeedsAPackedFolder() throws {
        try TestPaths.requireModel()
        try CLITests.expectFailure(
            CLITests.evalArgs(TestPaths.model) + ["--numerics", "weights-only"],
            mentions: ["--numerics weights-only", "HF checkpoint"])
    }
}
