import Foundation
import Testing

/// Calibration over a cluster (issue #29, Formats/calibration-stats.md "Parts and their merge"):
/// `fireq calibrate --part I/P` on each part, then `fireq calibrate-merge`, gives the same bytes
/// as one `fireq calibrate` over all the windows; anything but a complete set of parts of one run
/// is refused with one sentence naming the file.
@Suite(.serialized) struct CalibrationPartsTests {
    static let text = TestPaths.sharedData + "/tinyshakespeare.txt"

    static func calibrate(_ model: String, _ out: String, _ extra: [String] = [], text: String = text) throws {
        let r = try CLI.run(
            [
                "calibrate", "--model", model, "--text", text, "--samples", "7", "--seq-len", "48",
                "--shuffle", "--seed", "3", "--threads", "2", "--out", out
            ] + extra)
        #expect(r.status == 0, "\(r.stderr)")
    }

    /// Qwen2 (its k_proj bias adds the `_unbiased` maxima) and Gemma 3 (sliding windows, √hidden
    /// embeddings): 3 uneven parts (2, 2, 3 windows) merged in shuffled order equal one run — the
    /// single run given the model and the text through symbolic links (the files record canonical
    /// paths, as `calibrate-slurm`'s array tasks get them).
    @Test(arguments: ["qwen2", "gemma3"]) func partsMergeToTheSameBytes(_ family: String) throws {
        let model = FamilyTests.folder + "/" + family
        try TestPaths.require(model + "/model.safetensors", hint: FamilyTests.hint)
        let d = TestPaths.tempDir()
        let fm = FileManager.default
        try fm.createSymbolicLink(atPath: d + "/model-link", withDestinationPath: model)
        try fm.createSymbolicLink(atPath: d + "/text-link.txt", withDestinationPath: Self.text)
        try Self.calibrate(d + "/model-link", d + "/single.h5", text: d + "/text-link.txt")
        for i in 1...3 { try Self.calibrate(model, d + "/p\(i).h5", ["--part", "\(i)/3"]) }
        let m = try CLI.run([
            "calibrate-merge", "--model", model, "--out", d + "/merged.h5", d + "/p3.h5", d + "/p1.h5", d + "/p2.h5"
        ])
        #expect(m.status == 0, "\(m.stderr)")
        let single = try Data(contentsOf: URL(fileURLWithPath: d + "/single.h5"))
        let merged = try Data(contentsOf: URL(fileURLWithPath: d + "/merged.h5"))
        #expect(
            single.count > 10_000 && single == merged,
            "\(family): merged \(merged.count) bytes vs single \(single.count)")
    }

    @Test func incompleteOrForeignPartsAreRefused() throws {
        let model = FamilyTests.folder + "/qwen2"
        try TestPaths.require(model + "/model.safetensors", hint: FamilyTests.hint)
        let d = TestPaths.tempDir()
        for i in 1...2 { try Self.calibrate(model, d + "/p\(i).h5", ["--part", "\(i)/2"]) }
        try Self.calibrate(model, d + "/other.h5", ["--part", "2/2", "--samples", "6"])
        try Self.calibrate(model, d + "/whole.h5")
        let base = ["calibrate-merge", "--model", model, "--out", d + "/m.h5"]
        try CLITests.expectFailure(base + [d + "/p1.h5"], mentions: [d + "/m.h5: part 2/2 is missing"])
        try CLITests.expectFailure(
            base + [d + "/p1.h5", d + "/p1.h5"], mentions: [d + "/p1.h5: part 1/2 is given twice"])
        try CLITests.expectFailure(
            base + [d + "/p1.h5", d + "/other.h5"],
            mentions: [d + "/other.h5: is a part of another calibration than \(d)/p1.h5 (its samples is '6', not '7')"])
        try CLITests.expectFailure(
            base + [d + "/p1.h5", d + "/whole.h5"],
            mentions: [d + "/whole.h5", "is not a fireq-calibration-part file", "not a part"])
        #expect(!FileManager.default.fileExists(atPath: d + "/m.h5"))
        // A part is not a statistics file: quantize says to merge it.
        try CLITests.expectFailure(
            [
                "quantize", "--model", model, "--stats", d + "/p1.h5", "--recipe",
                QuantizeTests.recipes + "/fireq.json", "--out", d + "/q"
            ],
            mentions: [d + "/p1.h5", "merge the parts with fireq calibrate-merge"])
        // I/P out of range (a usage error, exit 64), or more parts than windows.
        let r = try CLI.run(["calibrate", "--model", model, "--text", Self.text, "--part", "3/2", "--out", d + "/x.h5"])
        #expect(r.status == 64 && r.stderr.contains("--part '3/2' must be I/P with 1 ≤ I ≤ P"), "\(r.stderr)")
        try CLITests.expectFailure(
            [
                "calibrate", "--model", model, "--text", Self.text, "--samples", "2", "--seq-len", "16", "--part",
                "1/3", "--out", d + "/x.h5"
            ],
            mentions: ["3 parts of 2 windows would leave a part empty"])
    }
}

extension CalibrationPartsTests {
    /// The Slurm submit script: an array of P part tasks, a merge job after all of them succeed
    /// (Scripts/slurm-e2e.sh runs it on a real one-node cluster and `cmp`s the result).
    @Test func slurmScriptRunsPartsThenMerge() throws {
        let model = FamilyTests.folder + "/qwen2"
        try TestPaths.require(model + "/model.safetensors", hint: FamilyTests.hint)
        let d = TestPaths.tempDir()
        let r = try CLI.run([
            "calibrate-slurm", "--model", model, "--text", Self.text, "--samples", "6", "--seq-len", "32",
            "--parts", "3", "--max-parallel", "2", "--partition", "p", "--out", d + "/s.h5"
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let s = r.stdout
        #expect(s.contains("#SBATCH --array=1-3%2") && s.contains("--part \"$SLURM_ARRAY_TASK_ID/3\""))
        #expect(s.contains("sbatch --parsable --dependency=afterok:\"$ARRAY\"") && s.contains("calibrate-merge"))
        #expect(
            s.contains("'\(d)/s.h5.parts/part-3.h5'") && FileManager.default.fileExists(atPath: d + "/s.h5.parts/logs"))
        try CLITests.expectFailure(
            [
                "calibrate-slurm", "--model", model, "--text", Self.text, "--samples", "2", "--parts", "3", "--out",
                d + "/t.h5"
            ],
            mentions: ["--parts 3 of 2 windows would leave a part empty"])
    }
}
