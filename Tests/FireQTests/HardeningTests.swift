import CalibrationStats
import Foundation
import JSONSupport
import LlamaReference
import ModelDescription
import TensorStore
import Testing
import Tokenizer

/// Issue #13: limits before allocation, the statistics file's integrity block, and the findings of
/// the fuzzers (Scripts/fuzz.sh) pinned as plain cases.
@Suite struct HardeningTests {
    // MARK: FileBytes: bounded whole-file reads

    @Test func fileBytesRefusesBeforeReading() throws {
        let dir = TestPaths.tempDir()
        let missing = dir + "/nope.json"
        #expect(throws: FileReadError.self) { try FileBytes.read(missing, limit: 10) }
        do { _ = try FileBytes.read(missing, limit: 10) } catch {
            #expect(error.missing && error.description == "\(missing): does not exist")
        }
        do { _ = try FileBytes.read(dir, limit: 10) } catch {
            #expect(!error.missing && error.description == "\(dir): is a folder, not a file")
        }
        let big = dir + "/big.json"
        try Data(repeating: 0x20, count: 11).write(to: URL(fileURLWithPath: big))
        do { _ = try FileBytes.read(big, limit: 10); Issue.record("an 11-byte file passed a 10-byte limit") } catch {
            #expect(error.description == "\(big): has 11 bytes, more than this kind of file may have (10)")
        }
        #expect(try FileBytes.read(big, limit: 11) == [UInt8](repeating: 0x20, count: 11))
        let empty = dir + "/empty.json"
        #expect(FileManager.default.createFile(atPath: empty, contents: Data()))
        #expect(try FileBytes.read(empty, limit: 0) == [])
        // A pipe (`--text <(zcat corpus.gz)`) is read to its end, under the same limit.
        let fifo = dir + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        let writer = Thread {
            if let h = FileHandle(forWritingAtPath: fifo) { h.write(Data("piped text".utf8)); try? h.close() }
        }
        writer.start()
        #expect(try FileBytes.read(fifo, limit: 100) == Array("piped text".utf8))
    }

    // MARK: the statistics file's integrity block (Formats/calibration-stats.md)

    static func tinyStats() throws -> (path: String, config: ModelConfig) {
        let model = TestPaths.root + "/Fuzz/fixtures/tiny-model"
        let out = TestPaths.tempDir() + "/stats.h5"
        let r = try CLI.run([
            "calibrate", "--model", model, "--text", TestPaths.sharedData + "/tinyshakespeare.txt",
            "--samples", "2", "--seq-len", "32", "--out", out
        ])
        #expect(r.status == 0, "\(r.stderr)")
        return (out, try ModelConfig(directory: model))
    }

    @Test func statsFileCarriesItsSHA256() throws {
        let (path, config) = try Self.tinyStats()
        let bytes = [UInt8](TestPaths.read(path))
        let line = "fireq-calibration-stats sha256 " + SHA256.hex(bytes[512...]) + "\n"
        #expect(Array(bytes[0..<line.utf8.count]) == Array(line.utf8))
        #expect(bytes[line.utf8.count..<512].allSatisfy { $0 == 0 })
        #expect(
            Array(bytes[512..<520]) == [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A],
            "the HDF5 superblock follows the 512-byte user block")
        let back = try StatsFile.read(path, config: config)
        #expect(back.fileSHA256 == SHA256.hex(bytes))
    }

    @Test func damagedStatsRefusedBeforeLibHDF5() throws {
        let (path, config) = try Self.tinyStats()
        var bytes = [UInt8](TestPaths.read(path))
        bytes[bytes.count / 2] ^= 0x01
        let flipped = TestPaths.tempDir() + "/flipped.h5"
        try Data(bytes).write(to: URL(fileURLWithPath: flipped))
        do { _ = try StatsFile.read(flipped, config: config); Issue.record("a flipped bit was accepted") } catch {
            #expect(
                "\(error)"
                    == "\(flipped): is damaged or was edited after it was written (its SHA-256 does not match the one it records): rerun fireq calibrate."
            )
        }
        var unsealed = [UInt8](TestPaths.read(path))
        for i in 0..<512 { unsealed[i] = 0 }
        let old = TestPaths.tempDir() + "/old.h5"
        try Data(unsealed).write(to: URL(fileURLWithPath: old))
        do {
            _ = try StatsFile.read(old, config: config); Issue.record("a file without integrity block was accepted")
        } catch {
            #expect(
                "\(error)".contains(
                    "has no fireq integrity block (written by fireq before 2026-12-03, or not by fireq)"))
        }
        let truncated = TestPaths.tempDir() + "/truncated.h5"
        try Data(TestPaths.read(path).prefix(3000)).write(to: URL(fileURLWithPath: truncated))
        #expect(throws: CalibrationError.self) { try StatsFile.read(truncated, config: config) }
    }

    // MARK: limits found or demanded by the fuzzers

    @Test func byteSizesBelowOneByteAreRefused() {
        #expect(parseByteSize("0.000000000003000003GIB") == nil)  // was 0 (fuzz finding)
        #expect(parseByteSize("0.5B") == nil)
        #expect(parseByteSize("1B") == 1)
        #expect(parseByteSize("1.5 KiB") == 1536)
        #expect(parseByteSize("5GB") == 5_000_000_000)
    }

    @Test func configDimensionsAreBounded() throws {
        func config(_ extra: String) -> String {
            #"{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "#
                + #""num_attention_heads": 2, "vocab_size": 272\#(extra)}"#
        }
        _ = try ModelConfig(json: try JSONParser.parse(config("")), path: "c.json")
        let huge =
            #"{"architectures": ["LlamaForCausalLM"], "hidden_size": 4194304, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 272}"#
        do {
            _ = try ModelConfig(json: try JSONParser.parse(huge), path: "c.json");
            Issue.record("hidden_size 4194304 accepted")
        } catch {
            #expect("\(error)" == "c.json: 'hidden_size' is 4194304, more than this tool accepts (2097152).")
        }
        let theta =
            #"{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 272, "rope_theta": -1}"#
        #expect(throws: ModelError.self) { try ModelConfig(json: try JSONParser.parse(theta), path: "c.json") }
    }

    @Test func sparseVocabularyIdsAreRefused() throws {
        // The fuzz finding: one vocabulary id near Int32.max sized a 4.8 GB table from ~5 KB of JSON.
        let src = TestPaths.root + "/Fuzz/fixtures/tiny-model/tokenizer.json"
        guard case .object(var tok) = try JSONParser.parse(TestPaths.read(src)),
            case .object(var model) = tok["model"]!,
            case .object(var vocab) = model["vocab"]!
        else { Issue.record("fixture is not a tokenizer"); return }
        #expect(vocab.keys.count == 262)
        vocab["er"] = .number("600000000")
        model["vocab"] = .object(vocab)
        tok["model"] = .object(model)
        let path = TestPaths.tempDir() + "/tokenizer.json"
        try Data(JSONWriter.serialize(.object(tok)).utf8).write(to: URL(fileURLWithPath: path))
        do { _ = try Tokenizer(path: path); Issue.record("id 600000000 accepted") } catch {
            #expect(
                "\(error)"
                    == "\(path): 'model.vocab[\"er\"]' has id 600000000, far beyond the vocabulary's 262 entries (ids must be below 1548)."
            )
        }
        _ = try Tokenizer(path: src)
    }
}
