import ArgumentParser
import Batch
import Foundation
import Pipelines

struct Batch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Many conversions from one JSON Lines manifest: check, run here, run on Slurm, report (Formats/batch-manifest.md).",
        subcommands: [BatchCheck.self, BatchRun.self, BatchRunOne.self, BatchSlurmCommand.self, BatchReportCommand.self]
    )
}

/// This executable's absolute path (what `batch run` and the Slurm script call).
func selfExecutable() -> String {
    if let p = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return p }
    return canonicalPath(CommandLine.arguments[0])
}

/// Loads a manifest and fails with every problem it has (structure and files).
func loadChecked(_ path: String) throws -> BatchManifest {
    let m = try BatchManifest(path: path)
    let problems = m.allProblems()
    if !problems.isEmpty {
        for p in problems { FileHandle.standardError.write(Data(("error: " + p + "\n").utf8)) }
        throw CLIError("\(path): \(problems.count) problem(s) in the manifest; nothing was run.")
    }
    if m.entries.isEmpty { throw CLIError("\(path): the manifest has no entries.") }
    return m
}

struct BatchCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract:
            "Validate every entry (keys, types, files, recipes, duplicate outputs) before anything runs; one line per problem, exit 1 when there is any."
    )
    @Argument(help: "Manifest (JSON Lines).") var manifest: String

    func run() throws {
        do {
            let m = try loadChecked(manifest)
            print("\(manifest): \(m.entries.count) entries, all valid (sha256 \(m.sha256))")
        } catch { fail(error) }
    }
}

struct BatchRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract:
            "Run every entry on this machine, --jobs at a time, past failures. Exit 0: all passed; 3: only perplexity thresholds failed; 1: an entry failed with an error.",
        discussion:
            "Each entry runs as a child `fireq batch run-one` (an ordinary convert: a rerun skips finished stages and entries), its output appended to MANIFEST.fireq-batch/logs/INDEX.log."
    )
    @Argument(help: "Manifest (JSON Lines).") var manifest: String
    @Option(name: .long, parsing: .unconditional, help: "Entries run at the same time.") var jobs: Int = 1
    @Option(name: .long, parsing: .unconditional, help: "Threads per entry (default: cores / jobs).") var threads: Int?

    func validate() throws {
        guard jobs >= 1 && jobs <= 256 else { throw ValidationError("--jobs must be between 1 and 256.") }
        if let threads, threads < 1 || threads > 1024 { throw ValidationError("--threads must be between 1 and 1024.") }
    }

    func run() throws {
        let code: Int32
        do {
            let m = try loadChecked(manifest)
            let t = threads ?? max(1, ProcessInfo.processInfo.activeProcessorCount / jobs)
            FileHandle.standardError.write(
                Data(
                    "\(manifest): \(m.entries.count) entries, \(jobs) at a time, \(t) thread(s) each; logs in \(m.stateFolder)/logs\n"
                        .utf8))
            let started = Date()
            code = try BatchRunner.runAll(m, executable: selfExecutable(), jobs: jobs, threads: t) { f in
                let s = f.status
                var line = "[\(f.entry.index)] \(f.entry.id): \(s?.status ?? "failed")"
                if let sig = f.signal { line += " (killed by signal \(sig))" }
                if let msg = s?.message, s?.status != "passed" { line += ": " + msg }
                if f.upToDate {
                    line += " (up to date)"
                } else if let sec = s?.seconds {
                    line += String(format: " (%.0f s)", sec)
                }
                FileHandle.standardOutput.write(Data((line + "\n").utf8))
            }
            let counts = BatchReport(m).counts.map { "\($0.1) \($0.0)" }.joined(separator: ", ")
            print(
                String(
                    format: "%@: %@ in %.0f s (fireq batch report %@ --out BASE)", manifest, counts,
                    Date().timeIntervalSince(started), manifest))
        } catch { fail(error) }
        Foundation.exit(code)
    }
}

struct BatchRunOne: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run-one",
        abstract:
            "Run one entry in this process (what each Slurm array task or Kubernetes indexed pod calls). Exit 0 passed or up to date, 3 threshold failed, 1 error."
    )
    @Argument(help: "Manifest (JSON Lines).") var manifest: String
    @Option(
        name: .long, parsing: .unconditional, help: "Entry index, from 0 ($SLURM_ARRAY_TASK_ID, $JOB_COMPLETION_INDEX)."
    ) var index: Int
    @OptionGroup var compute: ComputeOptions
    @Option(
        name: .customLong("manifest-sha256"),
        help: "Refuse to run when the manifest's SHA-256 differs (the job was written for other bytes).")
    var manifestSHA256: String?

    func run() throws {
        let code: Int32
        do {
            let m = try BatchManifest(path: manifest)
            code = BatchRunner.runOne(
                m, index: index, threads: compute.threads, expectSHA256: manifestSHA256,
                log: TerminalProgress()
            ) { s in for l in s.lines { print(l) } }
        } catch { fail(error) }
        Foundation.exit(code)
    }
}

struct BatchSlurmCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slurm",
        abstract: "Print an sbatch array job, one task per entry (--array=0-(n-1)%K, --requeue, one log per task).")
    @Argument(help: "Manifest (JSON Lines).") var manifest: String
    @OptionGroup var slurm: SlurmFlags

    func run() throws {
        do {
            let m = try loadChecked(manifest)
            if m.stateFolder.contains(where: { $0.isWhitespace }) {
                throw CLIError("\(m.stateFolder): Slurm's --output cannot name a path with spaces; move the manifest.")
            }
            let o = slurm.options(defaultJobName: "fireq-batch")
            print(try BatchSlurm.script(m, executable: selfExecutable(), options: o), terminator: "")
        } catch { fail(error) }
    }
}

struct BatchReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Summarise every entry: BASE.json, BASE.md and BASE.html, failures first.")
    @Argument(help: "Manifest (JSON Lines).") var manifest: String
    @Option(name: .long, help: "Write BASE.json, BASE.md and BASE.html.") var out: String

    func run() throws {
        do {
            let m = try BatchManifest(path: manifest)
            let r = BatchReport(m)
            try r.write(base: out)
            FileHandle.standardError.write(
                Data(
                    "wrote \(out).json, \(out).md, \(out).html: \(r.counts.map { "\($0.1) \($0.0)" }.joined(separator: ", "))\n"
                        .utf8))
        } catch { fail(error) }
    }
}
