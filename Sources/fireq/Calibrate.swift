import ArgumentParser
import CalibrationStats
import Foundation
import Pipelines

struct CalibrationOptions: ParsableArguments {
    @Option(name: .long, help: "Calibration text file (UTF-8; bytes as stored, no BOS).")
    var text: String?
    @Option(name: .long, help: "Calibration JSON Lines file (objects with a string field 'text').")
    var jsonl: String?
    @Option(name: .long, help: "Pre-tokenized windows: HDF5 file with dataset 'tokens', int32 [N, L].")
    var tokens: String?
    @Flag(name: .long, help: "Data-free: sample the N windows from the model itself (seeded by --seed).")
    var generate = false
    @Option(name: .long, parsing: .unconditional, help: "Sampling temperature of --generate.")
    var temperature: Float = 1.0
    @Option(name: .customLong("top-p"), parsing: .unconditional, help: "Nucleus mass of --generate.")
    var topP: Float = 0.95
    @Option(name: .long, parsing: .unconditional, help: "Number of calibration windows N.")
    var samples: Int = 10
    @Option(name: .customLong("seq-len"), parsing: .unconditional, help: "Tokens per window L.")
    var seqLen: Int = 2048
    @Flag(name: .long, help: "Pick the N windows by a seeded shuffle instead of in order from token 0.")
    var shuffle = false
    @Option(name: .long, parsing: .unconditional, help: "Seed of --shuffle.")
    var seed: UInt64 = 0

    var job: CalibrationJob {
        var j = CalibrationJob()
        j.text = text
        j.jsonl = jsonl
        j.tokens = tokens
        j.generate = generate
        j.temperature = temperature
        j.topP = topP
        j.samples = samples
        j.seqLen = seqLen
        j.shuffle = shuffle
        j.seed = seed
        return j
    }

    func validate() throws {
        do { try job.validate() } catch { throw ValidationError(String(describing: error)) }
    }
}

struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stream calibration windows through the FP32 model layer by layer and write the statistics (HDF5).",
        discussion: "Schema: Formats/calibration-stats.md. Peak memory ≈ N × L × hidden × 4 bytes + one layer.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var calibration: CalibrationOptions
    @OptionGroup var compute: ComputeOptions
    @Option(name: .long, help: "Output statistics file (.h5).")
    var out: String
    @Flag(name: .long, help: "Overwrite an existing output file.")
    var force = false
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Run part I of P of the windows and write a part file, for a cluster: merge the P parts with fireq calibrate-merge (the merged file equals one run's, byte for byte).",
            valueName: "I/P"))
    var part: String?

    var parsedPart: StatsFile.Part? {
        guard let part else { return nil }
        let f = part.split(separator: "/", omittingEmptySubsequences: false).map { Int($0) }
        guard f.count == 2, let i = f[0], let n = f[1] else { return nil }
        return StatsFile.Part(index: i, count: n)
    }

    func validate() throws {
        if let part {
            guard let p = parsedPart, p.count >= 1, (1...p.count).contains(p.index) else {
                throw ValidationError("--part '\(part)' must be I/P with 1 ≤ I ≤ P, e.g. 2/4.")
            }
        }
    }

    func run() throws {
        do {
            if FileManager.default.fileExists(atPath: out) && !force { throw CalibrationError.exists(path: out) }
            let outDir =
                (out as NSString).deletingLastPathComponent.isEmpty ? "." : (out as NSString).deletingLastPathComponent
            guard FileManager.default.isWritableFile(atPath: outDir) else {
                throw CLIError(
                    "\(out): cannot write the output: the folder '\(outDir)' does not exist or is not writable.")
            }
            try CalibrationPipeline.run(
                modelDir: modelOptions.model, job: calibration.job, threads: compute.threads, out: out,
                log: TerminalProgress(), part: parsedPart)
        } catch { fail(error) }
    }
}

struct CalibrateMerge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate-merge",
        abstract: "Merge the part files of `fireq calibrate --part I/P` into the statistics file.",
        discussion:
            "The merged file is byte-identical to one `fireq calibrate` over all the windows (Formats/calibration-stats.md, \"Parts and their merge\"). Parts may be given in any order; a missing, repeated or foreign part is refused."
    )

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, help: "Output statistics file (.h5).")
    var out: String
    @Flag(name: .long, help: "Overwrite an existing output file.")
    var force = false
    @Argument(help: "The part files (.h5).")
    var parts: [String] = []

    func run() throws {
        do {
            if FileManager.default.fileExists(atPath: out) && !force { throw CalibrationError.exists(path: out) }
            try CalibrationPipeline.merge(modelDir: modelOptions.model, parts: parts, out: out, log: TerminalProgress())
        } catch { fail(error) }
    }
}

struct CalibrateSlurm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate-slurm",
        abstract:
            "Print a submit script that calibrates on a Slurm cluster: an array of --parts tasks, then a dependent merge job.",
        discussion:
            "Task I runs `fireq calibrate … --part I/P`; the merge job (afterok) runs `fireq calibrate-merge`, whose output equals one `fireq calibrate` over all the windows, byte for byte. Parts and logs go to OUT.parts/. Submit with: fireq calibrate-slurm … > submit.sh && bash submit.sh"
    )

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var calibration: CalibrationOptions
    @Option(name: .long, help: "Output statistics file (.h5) the merge job writes.")
    var out: String
    @Option(name: .long, parsing: .unconditional, help: "Number of array tasks P (each a part of the windows).")
    var parts: Int = 4
    @OptionGroup var slurm: SlurmFlags

    func validate() throws {
        guard parts >= 1 else { throw ValidationError("--parts must be at least 1, not \(parts).") }
    }

    func run() throws {
        do {
            let o = slurm.options(defaultJobName: "fireq-calibrate")
            print(
                try CalibrationSlurm.script(
                    model: modelOptions.model, job: calibration.job, parts: parts, out: out,
                    executable: selfExecutable(), options: o), terminator: "")
        } catch { fail(error) }
    }
}
