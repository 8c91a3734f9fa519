import Foundation
import Testing

/// The `fireq` executable on bad input: one-sentence error naming the file, exit status ≠ 0.
@Suite struct CLITests {
    /// A model folder whose files link to the default model's, with `replace` swapped in.
    static func modelCopy(replace: [String: Data] = [:], remove: [String] = []) throws -> String {
        try TestPaths.requireModel()
        let dir = TestPaths.tempDir()
        let fm = FileManager.default
        for f in try fm.contentsOfDirectory(atPath: TestPaths.model) where !f.hasPrefix(".") && !remove.contains(f) {
            if let d = replace[f] {
                _ = fm.createFile(atPath: dir + "/" + f, contents: d)
            } else {
                try fm.createSymbolicLink(atPath: dir + "/" + f, withDestinationPath: TestPaths.model + "/" + f)
            }
        }
        return dir
    }

    static func expectFailure(_ args: [String], mentions: [String]) throws {
        let r = try CLI.run(args)
        #expect(r.status != 0, "exit status for \(args)")
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1, "one line on stderr, got: \(r.stderr)")
        #expect(r.stderr.hasPrefix("error: "))
        for m in mentions { #expect(r.stderr.contains(m), "stderr \(r.stderr) should mention \(m)") }
        #expect(!r.stderr.contains("Fatal error"), "no crash")
    }

    /// Usage errors name the option and what it accepts (exit 64, ArgumentParser's usage
    /// status): a negative number is read as the option's value, not as an unknown flag; the
    /// enum options list their values; --threads states its default once.
    @Test func usageErrorsNameTheOption() throws {
        try TestPaths.requireModel()
        let eval = ["eval", "--model", TestPaths.model, "--text", TestPaths.sharedData + "/wikitext-2-raw-test.raw"]
        for (extra, message) in [
            (["--windows", "-3"], "Error: --windows must be at least 1."),
            (["--context", "-5"], "Error: --context must be at least 2."),
            (["--threads", "0"], "Error: --threads must be between 1 and 1024 (found 0)."),
            (
                ["--protocol", "half"],
                "Error: The value 'half' is invalid for '--protocol <protocol>'. Please provide one of 'all' and 'llamacpp'."
            ),
            (
                ["--numerics", "int4"],
                "Error: The value 'int4' is invalid for '--numerics <numerics>'. Please provide one of 'fireq', 'weights-only' or 'weights-fp8act'."
            )
        ] {
            let r = try CLI.run(eval + extra)
            #expect(r.status == 64, "\(extra): \(r.stderr)")
            #expect(r.stderr.hasPrefix(message), "\(extra): \(r.stderr)")
        }
        let help = try CLI.run(["eval", "--help"]).stdout
        let threads = help.split(separator: "\n").filter { $0.contains("--threads <threads>") && $0.contains("Worker") }
        #expect(
            threads.count == 1 && threads[0].contains("(default: all cores") && !threads[0].contains(". (default:"),
            "\(threads)")
    }

    /// `fireq --version` names the commit it was built from (Plugins/BuildInfo): the checkout's
    /// HEAD, as git reports it.
    @Test func versionNamesTheCommit() throws {
        let git = try CLI.run(["-C", TestPaths.root, "rev-parse", "--short=12", "HEAD"], executable: "/usr/bin/git")
        #expect(git.status == 0, "git rev-parse failed: \(git.stderr)")
        let head = git.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let v = try CLI.run(["--version"])
        #expect(v.status == 0)
        #expect(v.stdout.hasPrefix("fireq 0.1.0 (commit \(head)") && head.count == 12, "\(v.stdout) vs HEAD \(head)")
    }

    static func evalArgs(_ model: String) -> [String] {
        [
            "eval", "--model", model, "--text", TestPaths.sharedData + "/wikitext-2-raw-test.raw", "--context", "16",
            "--windows", "1"
        ]
    }

    @Test func truncatedSafetensors() throws {
        let st = TestPaths.read(TestPaths.model + "/model.safetensors")
        let dir = try Self.modelCopy(replace: ["model.safetensors": st.prefix(1_000_000)])
        try Self.expectFailure(Self.evalArgs(dir), mentions: [dir + "/model.safetensors", "truncated"])
    }

    @Test func headerLengthPastEnd() throws {
        var bytes = [UInt8](repeating: 0, count: 64)
        bytes[0] = 0xFF; bytes[1] = 0xFF; bytes[2] = 0x10
        let dir = try Self.modelCopy(replace: ["model.safetensors": Data(bytes)])
        try Self.expectFailure(Self.evalArgs(dir), mentions: [dir + "/model.safetensors", "past the end of the file"])
    }

    /// A model folder whose model.safetensors is a tiny file with the given header.
    static func badSafetensors(_ header: String, data: [UInt8]) throws -> String {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { bytes += $0 }
        bytes += Array(header.utf8) + data
        return try modelCopy(replace: ["model.safetensors": Data(bytes)])
    }

    @Test func overlappingOffsets() throws {
        let dir = try Self.badSafetensors(
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            data: [UInt8](repeating: 0, count: 12))
        try Self.expectFailure(Self.evalArgs(dir), mentions: [dir + "/model.safetensors", "overlaps"])
    }

    @Test func unknownDType() throws {
        let dir = try Self.badSafetensors(
            #"{"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))
        try Self.expectFailure(Self.evalArgs(dir), mentions: [dir + "/model.safetensors", "unsupported dtype 'C64'"])
    }

    @Test func shapeByteCountMismatch() throws {
        let dir = try Self.badSafetensors(
            #"{"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))
        try Self.expectFailure(Self.evalArgs(dir), mentions: [dir + "/model.safetensors", "needs 12 bytes"])
    }

    @Test func missingTensor() throws {
        // A valid file holding only the final norm: the strict load names the first missing tensor.
        var norm: [UInt8] = []
        for _ in 0..<576 { norm += [0x00, 0x3C] }
        let dir = try Self.badSafetensors(
            #"{"model.norm.weight":{"dtype":"F16","shape":[576],"data_offsets":[0,1152]}}"#, data: norm)
        try Self.expectFailure(Self.evalArgs(dir), mentions: [dir, "tensor 'model.embed_tokens.weight' is missing"])
    }

    @Test func invalidConfigJSON() throws {
        let dir = try Self.modelCopy(replace: ["config.json": Data("{\"hidden_size\": }".utf8)])
        try Self.expectFailure(Self.evalArgs(dir), mentions: [dir + "/config.json", "not valid JSON"])
    }

    @Test func unsupportedRopeScaling() throws {
        var cfg = String(decoding: TestPaths.read(TestPaths.model + "/config.json"), as: UTF8.self)
        cfg = cfg.replacingOccurrences(
            of: "\"rope_scaling\": null", with: "\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2.0}")
        let dir = try Self.modelCopy(replace: ["config.json": Data(cfg.utf8)])
        try Self.expectFailure(Self.evalArgs(dir), mentions: [dir + "/config.json", "rope_scaling type 'dynamic'"])
    }

    @Test func missingTokenizer() throws {
        let dir = try Self.modelCopy(remove: ["tokenizer.json"])
        try Self.expectFailure(Self.evalArgs(dir), mentions: [dir + "/tokenizer.json", "not found"])
    }

    @Test func missingTextFile() throws {
        try TestPaths.requireModel()
        try Self.expectFailure(
            ["eval", "--model", TestPaths.model, "--text", "/nonexistent/x.txt"], mentions: ["/nonexistent/x.txt"])
    }

    @Test func tokenizeCommand() throws {
        try TestPaths.requireModel()
        let r = try CLI.run(["tokenize", "--model", TestPaths.model], stdin: "The capital of France is")
        #expect(r.status == 0)
        #expect(r.stdout == "[504,3575,282,4649,314]\n")
    }

    @Test func evalJSONKeys() throws {
        try TestPaths.requireModel()
        let r = try CLI.run([
            "eval", "--model", TestPaths.model, "--text", TestPaths.sharedData + "/wikitext-2-raw-test.raw",
            "--context", "64", "--windows", "2", "--json", "--protocol", "llamacpp"
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        for k in ["perplexity", "mean_nll", "scored_tokens", "tokens_per_second"] { #expect(obj[k] != nil, "key \(k)") }
        #expect(obj["scored_tokens"] as? Int == 2 * 31)
    }
}
