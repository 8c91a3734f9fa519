import Batch
import Foundation
import JSONSupport
import Pipelines
import Testing

/// `fireq batch` (Formats/batch-manifest.md): manifest validation line by line, the output lock,
/// the local runner's exit status and resumption, the Slurm script and the summary report.
@Suite(.serialized) struct BatchTests {
    static let shakespeare = TestPaths.sharedData + "/tinyshakespeare.txt"
    static let recipes = TestPaths.root + "/Calibration/recipes"

    /// A small, fast entry (2 × 64 calibration tokens, 2 × 64 smoke tokens), as JSON text.
    static func entry(_ out: String, _ extra: String = "") -> String {
        "{\"model\": \"\(TestPaths.model)\", \"out\": \"\(out)\", \"text\": \"\(shakespeare)\", \"samples\": 2, \"seq_len\": 64, "
            + "\"eval_context\": 64, \"eval_windows\": 2\(extra.isEmpty ? "" : ", " + extra)}"
    }

    static func write(_ lines: [String], in dir: String, name: String = "batch.jsonl") -> String {
        let path = dir + "/" + name
        #expect(
            FileManager.default.createFile(atPath: path, contents: Data((lines.joined(separator: "\n") + "\n").utf8)),
            "\(path)")
        return path
    }

    /// Every kind of bad line, each with the exact sentence `check` prints for it.
    @Test func manifestProblemsNameTheLine() throws {
        try TestPaths.requireModel()
        let d = TestPaths.tempDir()
        let m = Self.write(
            [
                Self.entry("outs/a"),  // 1: valid
                "",  // 2: blank, ignored
                Self.entry("outs/a"),  // 3: same output as line 1
                "{\"model\": \"\(TestPaths.model)\", \"out\": \"outs/b\", \"txt\": \"x\", \"seq-len\": 3}",  // 4
                "[1, 2]",  // 5
                Self.entry("outs/c", "\"seed\": \"2\", \"export\": \"gguf,onnx\""),  // 6
                Self.entry("outs/d", "\"recipe\": \"missing.json\""),  // 7
                "{\"model\": \"\(TestPaths.model)\", \"out\": \"outs/e\", \"generate\": true}",  // 8
                Self.entry("outs/f", "\"recipe\": \"\(Self.shakespeare)\""),  // 9
                Self.entry(TestPaths.model),  // 10: out = the model
                "{\"model\": \"/nonexistent-model\", \"out\": \"outs/g\", \"text\": \"t\"",  // 11: truncated JSON
                Self.entry("outs/h", "\"work\": \"outs/h.gguf\", \"export\": [\"gguf\"]"),  // 12
                Self.entry("outs/i", "\"max_delta_ppl\": 0, \"shuffle\": \"yes\", \"temperature\": 0.5")  // 13
            ], in: d)
        let manifest = try BatchManifest(path: m)
        let p = manifest.allProblems()
        let expected = [
            "\(m):3: writes \(d)/outs/a, as line 1 does.",
            "\(m):4: unknown key \"txt\".",
            "\(m):4: unknown key \"seq-len\" (did you mean \"seq_len\"?).",
            "\(m):4: Give exactly one of \"text\", \"jsonl\", \"tokens\", \"generate\".",
            "\(m):5: an entry must be a JSON object, not an array.",
            "\(m):6: \"seed\" must be an integer, found \"2\".",
            "\(m):6: \"export\": 'onnx' is not one of gguf, compressed-tensors, mlx.",
            "\(m):7: \"recipe\" \(d)/missing.json is not a file.",
            "\(m):8: Give \"eval_text\": the default held-out text is the \"text\" calibration file after its in-order calibration windows.",
            "\(m):10: \"out\" \(TestPaths.model) is the model folder of line 1.",
            "\(m):12: writes \(d)/outs/h.gguf twice (as its output, work folder or an export).",
            "\(m):13: \"temperature\" applies to \"generate\" only.",
            "\(m):13: \"max_delta_ppl\" must be positive, not 0.0.",
            "\(m):13: \"shuffle\" must be true or false, found \"yes\"."
        ]
        for e in expected { #expect(p.contains(e), "missing: \(e)\nhave: \(p.joined(separator: "\n"))") }
        // Lines 9 (a recipe that is not a recipe) and 11 (truncated JSON) embed the JSON parser's
        // own wording: checked by prefix.
        #expect(
            p.contains { $0.hasPrefix("\(m):9: \"recipe\": \(Self.shakespeare)") && $0.contains("not valid JSON") },
            "\(p)")
        #expect(p.contains { $0.hasPrefix("\(m):11: not valid JSON (") }, "\(p)")
        #expect(p.count == expected.count + 2, "\(p.joined(separator: "\n"))")
        // In file order; the blank line 2 takes no index (line 3 is entry 1, line 13 entry 11).
        let lines = p.map { Int($0.dropFirst(m.count + 1).prefix { $0.isNumber })! }
        #expect(lines == lines.sorted())
        #expect(manifest.entryCountIncludingInvalid == 12)
        #expect(manifest.entries.map(\.line) == [1, 3, 7, 9, 10, 12])
        #expect(manifest.entries.map(\.index) == [0, 1, 5, 7, 8, 10])

        // The CLI: one line per problem plus the count, exit 1, nothing run.
        let r = try CLI.run(["batch", "check", m])
        #expect(r.status == 1)
        #expect(r.stderr.split(separator: "\n").count == p.count + 1, "\(r.stderr)")
        #expect(r.stderr.contains("error: \(m): \(p.count) problem(s) in the manifest; nothing was run."))
        let run = try CLI.run(["batch", "run", m])
        #expect(
            run.status == 1 && !FileManager.default.fileExists(atPath: d + "/outs"), "run refuses an invalid manifest")
    }

    /// Relative paths resolve against the manifest's folder, whatever the working directory.
    @Test func relativePathsResolveAgainstTheManifest() throws {
        try TestPaths.requireModel()
        let d = TestPaths.tempDir()
        try FileManager.default.createDirectory(atPath: d + "/sub", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Self.shakespeare, toPath: d + "/sub/calib.txt")
        let m = Self.write(
            [
                "{\"model\": \"\(TestPaths.model)\", \"out\": \"../o/x\", \"text\": \"calib.txt\", \"recipe\": \"\(Self.recipes)/rtn.json\"}"
            ],
            in: d + "/sub")
        let r = try CLI.run(["batch", "check", "sub/batch.jsonl"], cwd: d)
        #expect(r.status == 0, "\(r.stderr)")
        let e = try BatchManifest(path: m).entries[0]
        #expect(e.job.calibration.text == d + "/sub/calib.txt")
        #expect(e.job.out == d + "/sub/../o/x")
        #expect(e.id == "x")
    }

    /// One writer per output: a held lock makes a second conversion fail at once, naming the holder.
    @Test func outputLockRefusesASecondWriter() throws {
        try TestPaths.requireModel()
        let d = TestPaths.tempDir()
        let out = d + "/locked"
        let lock = try OutputLock.acquire(out)
        #expect(lock.path == d + "/.locked.fireq-lock")
        #expect(throws: PipelineError.self) { _ = try OutputLock.acquire(out) }
        try CLITests.expectFailure(
            ConvertTests.convertArgs(out: out),
            mentions: [out + ": another fireq conversion (pid \(getpid()) on ", "is writing this output"])
        #expect(!FileManager.default.fileExists(atPath: out + ".fireq-work"), "nothing started under the lock")
        lock.release()
        let again = try OutputLock.acquire(out)
        again.release()
    }

    /// `batch run`: keeps going past failures and says so in its exit status (1 error, 3 only
    /// thresholds, 0 all passed); a rerun resumes failed entries and skips finished ones; the
    /// report puts failures first with the same numbers as each entry's own report.
    @Test func runnerExitStatusResumeAndReport() throws {
        try TestPaths.requireModel()
        let d = TestPaths.tempDir()
        let m = Self.write(
            [
                Self.entry("out/fireq", "\"id\": \"paper\""),
                Self.entry("out/rtn", "\"recipe\": \"\(Self.recipes)/rtn.json\", \"max_delta_ppl\": 0.01")
            ], in: d)
        let manifest = try BatchManifest(path: m)

        // Run 1: entry 0's output is locked by someone else → an error (exit 1); entry 1 fails
        // its threshold; both ran.
        try FileManager.default.createDirectory(atPath: d + "/out", withIntermediateDirectories: true)
        let lock = try OutputLock.acquire(d + "/out/fireq")
        let r1 = try CLI.run(["batch", "run", m, "--threads", "2"])
        lock.release()
        #expect(r1.status == 1, "\(r1.stdout)\(r1.stderr)")
        #expect(r1.stdout.contains("[0] paper: failed: \(d)/out/fireq: another fireq conversion"), "\(r1.stdout)")
        #expect(
            r1.stdout.contains("[1] rtn: failed-threshold: \(d)/out/rtn: not written: the perplexity rose by"),
            "\(r1.stdout)")
        #expect(BatchStatus.read(manifest.statusPath(0))?.exitStatus == 1)
        #expect(BatchStatus.read(manifest.statusPath(1))?.exitStatus == 3)

        // Run 2: only the threshold failure remains (exit 3); entry 1 resumes from its stages.
        let r2 = try CLI.run(["batch", "run", m, "--threads", "2"])
        #expect(r2.status == 3, "\(r2.stdout)\(r2.stderr)")
        #expect(r2.stdout.contains("[0] paper: passed"))
        let log1 = String(decoding: TestPaths.read(manifest.logPath(1)), as: UTF8.self)
        #expect(
            log1.components(separatedBy: "[1/3] calibration: up to date").count == 2,
            "run 2 skipped entry 1's finished stages")
        let s1 = try #require(BatchStatus.read(manifest.statusPath(1)))
        #expect(s1.attempt == 2 && s1.stages.map(\.skipped) == [true, true, true])
        #expect(try CLI.run(["inspect", d + "/out/fireq", "--verify"]).status == 0)

        // Run 3: entry 0 is up to date (its status record is not touched).
        let before = try #require(BatchStatus.read(manifest.statusPath(0)))
        let r3 = try CLI.run(["batch", "run", m, "--threads", "2"])
        #expect(r3.status == 3)
        #expect(r3.stdout.contains("[0] paper: passed (up to date)"), "\(r3.stdout)")
        #expect(BatchStatus.read(manifest.statusPath(0))?.started == before.started)

        // The report: threshold failure first, then the pass; numbers from each entry's report.
        let rep = try CLI.run(["batch", "report", m, "--out", d + "/summary"])
        #expect(rep.status == 0, "\(rep.stderr)")
        let j = try JSONParser.parse(TestPaths.read(d + "/summary.json"))
        #expect(j["report"]?.stringValue == "fireq-batch")
        #expect(j["counts"]?["failed-threshold"]?.intValue == 1 && j["counts"]?["passed"]?.intValue == 1)
        let rows = try #require(j["entries"]?.arrayValue)
        #expect(rows.map { $0["index"]?.intValue } == [1, 0])
        #expect(rows.map { $0["status"]?.stringValue } == ["failed-threshold", "passed"])
        let own = try JSONParser.parse(TestPaths.read(d + "/out/fireq/report.json"))
        let mine = try #require(own["models"]?.arrayValue?.first)
        #expect(rows[1]["perplexity_llamacpp"]?.doubleValue == mine["perplexity_llamacpp"]?.doubleValue)
        #expect(
            rows[1]["delta_perplexity_all_percent"]?.doubleValue == mine["delta_perplexity_all_percent"]?.doubleValue)
        #expect(rows[1]["packed_sha256"]?.stringValue == (try fileSHA256(d + "/out/fireq/model.safetensors")))
        #expect(rows[1]["report"]?.stringValue == d + "/out/fireq/report.json")
        #expect(rows[0]["report"]?.stringValue == d + "/out/rtn.fireq-work/report.json")
        let html = String(decoding: TestPaths.read(d + "/summary.html"), as: UTF8.self)
        #expect(
            html.contains("<tr id=\"entry-1\" class=\"failed-threshold\">")
                && html.contains("href=\"out/fireq/report.html\""))
        let md = String(decoding: TestPaths.read(d + "/summary.md"), as: UTF8.self)
        #expect(md.contains("[report](out/rtn.fireq-work/report.html)"))

        // run-one refuses a manifest whose bytes changed since its job was written.
        let stale = try CLI.run([
            "batch", "run-one", m, "--index", "0", "--manifest-sha256", String(repeating: "0", count: 64)
        ])
        #expect(
            stale.status == 1 && stale.stderr.contains("the manifest changed since the job was written"),
            "\(stale.stderr)")
        let none = try CLI.run(["batch", "run-one", m, "--index", "2"])
        #expect(
            none.status == 1
                && none.stderr.contains("entry 2: there is no such entry (the manifest has 2, numbered from 0)"))
    }

    /// The Slurm script: one array task per entry, throttled, requeueable, one log per task,
    /// absolute paths and the manifest's hash.
    @Test func slurmScript() throws {
        try TestPaths.requireModel()
        let d = TestPaths.tempDir()
        let m = Self.write([Self.entry("a"), Self.entry("b"), Self.entry("c")], in: d)
        let r = try CLI.run([
            "batch", "slurm", m, "--partition", "cpu", "--time", "2:00:00", "--cpus-per-task", "8", "--max-parallel",
            "2"
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let sha = try BatchManifest(path: m).sha256
        for line in [
            "#SBATCH --array=0-2%2", "#SBATCH --cpus-per-task=8", "#SBATCH --partition=cpu", "#SBATCH --time=2:00:00",
            "#SBATCH --requeue", "#SBATCH --open-mode=append", "#SBATCH --output=\(m).fireq-batch/logs/%a.log",
            "exec '\(canonicalPath(CLI.binary))' batch run-one '\(m)' --index \"$SLURM_ARRAY_TASK_ID\" \\",
            "  --threads \"${SLURM_CPUS_PER_TASK:-8}\" --manifest-sha256 \(sha)"
        ] {
            #expect(r.stdout.split(separator: "\n").contains(Substring(line)), "missing \(line) in\n\(r.stdout)")
        }
        var isDir: ObjCBool = false
        #expect(
            FileManager.default.fileExists(atPath: m + ".fireq-batch/logs", isDirectory: &isDir) && isDir.boolValue,
            "the log folder exists before Slurm opens --output")
        let bad = try CLI.run(["batch", "slurm", m, "--partition", "a b"])
        #expect(
            bad.status != 0 && bad.stderr.contains("--partition 'a b' must be one word without quotes."),
            "\(bad.stderr)")
    }
}
