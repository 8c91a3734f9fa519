import ArgumentParser
import Evaluation
import Exports
import Foundation
import LlamaReference
import ModelDescription
import Pipelines
import Runtime
import TensorStore

struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Hugging Face model folder (config.json, *.safetensors, tokenizer.json).")
    var model: String

    func validate() throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: model, isDirectory: &isDir), isDir.boolValue else {
            throw ValidationError("--model '\(model)' is not a folder.")
        }
    }
}

/// Which numerics a packed model runs with (`eval`, `compare`).
struct NumericsOption: ParsableArguments {
    @Option(
        name: .long,
        help:
            "Packed models: fireq (the recipe's full numerics) | weights-only (what the exports carry: q·s·(1/P) weights, FP32 activations and Q/K/V) | weights-fp8act (weights-only plus FP8 per-token input activations)."
    )
    var numerics: RuntimeNumerics = .fireq

    var value: RuntimeNumerics { numerics }
}

struct ComputeOptions: ParsableArguments {
    @Option(
        name: .customLong("threads"), parsing: .unconditional,
        help: "Worker threads (default: all cores, \(ProcessInfo.processInfo.activeProcessorCount) here).")
    var threadsOption: Int?

    /// --threads, or every core.
    var threads: Int { threadsOption ?? ProcessInfo.processInfo.activeProcessorCount }

    func validate() throws {
        guard threads >= 1 && threads <= 1024 else {
            throw ValidationError("--threads must be between 1 and 1024 (found \(threads)).")
        }
    }
}

// The CLI's choices are the libraries' enums: ArgumentParser lists their values in the help
// and refuses any other with the list.
extension RuntimeNumerics: ExpressibleByArgument {}
extension PerplexityProtocol: ExpressibleByArgument {}
extension ExportFormat: ExpressibleByArgument {}

/// Prints an error as one line on stderr and exits with status 1 (data errors are not usage errors).
func fail(_ error: Error) -> Never {
    let text = String(describing: error)
    FileHandle.standardError.write(Data(("error: " + text + "\n").utf8))
    Foundation.exit(1)
}

/// `--max-shard-size` of quantize and convert.
struct ShardOption: ParsableArguments {
    @Option(
        name: .customLong("max-shard-size"),
        help:
            "Largest packed weight file, e.g. 5GB, 500MB, 2GiB or bytes; more layers are written as model-0000k-of-0000n.safetensors shards with model.safetensors.index.json (a layer is never split)."
    )
    var maxShardSize: String = "5GB"

    func validate() throws {
        guard let b = parseByteSize(maxShardSize), b >= 1 << 20 else {
            throw ValidationError(
                "--max-shard-size '\(maxShardSize)' is not a size of at least 1 MiB (e.g. 5GB, 500MB, 2GiB).")
        }
    }

    var bytes: Int { parseByteSize(maxShardSize)! }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// The perplexity protocol of `eval` and `compare`: which text, how it is windowed and scored.
struct WindowOptions: ParsableArguments {
    @Option(name: .long, help: "Text file to evaluate on.")
    var text: String
    @Option(name: .long, parsing: .unconditional, help: "Window length in tokens.")
    var context: Int = 512
    @Option(name: .long, parsing: .unconditional, help: "Evaluate at most this many windows (default: all).")
    var windows: Int?
    @Option(name: .long, help: "Which tokens are scored: all | llamacpp (second half of each window, as llama.cpp).")
    var `protocol`: PerplexityProtocol = .all
    @Flag(name: .long, help: "Start every window with the model's BOS token.")
    var bos = false

    func validate() throws {
        guard context >= 2 else { throw ValidationError("--context must be at least 2.") }
        if let windows, windows < 1 { throw ValidationError("--windows must be at least 1.") }
    }

    var scoring: PerplexityProtocol { `protocol` }

    /// Checks --context against the model and resolves --bos to its token id (the library's check).
    func check(_ config: ModelConfig, modelPath: String) throws -> Int32? {
        try EvalJob.checkWindows(context: context, bos: bos, config: config, modelPath: modelPath)
    }
}

/// The sbatch settings `fireq batch slurm` and `fireq calibrate-slurm` write into their scripts.
struct SlurmFlags: ParsableArguments {
    @Option(name: .long, help: "Slurm partition.") var partition: String?
    @Option(name: .long, help: "Time limit per task (Slurm syntax, e.g. 4:00:00).") var time: String?
    @Option(name: .customLong("cpus-per-task"), parsing: .unconditional, help: "CPUs per task (its --threads).")
    var cpusPerTask: Int = 2
    @Option(name: .customLong("max-parallel"), parsing: .unconditional, help: "Array tasks running at once (%K).")
    var maxParallel: Int = 4
    @Option(name: .long, help: "Memory per task (Slurm syntax, e.g. 16G).") var mem: String?
    @Option(
        name: .customLong("job-name"),
        help: "Slurm job name (default: fireq-batch for batch, fireq-calibrate for calibrate-slurm).") var jobName:
        String?

    func validate() throws {
        guard cpusPerTask >= 1 else { throw ValidationError("--cpus-per-task must be at least 1.") }
        guard maxParallel >= 1 else { throw ValidationError("--max-parallel must be at least 1.") }
        // The values go into #SBATCH lines of a generated script: one word, nothing to unquote.
        for (flag, v) in [("--partition", partition), ("--time", time), ("--mem", mem), ("--job-name", jobName)] {
            if let v, v.isEmpty || v.contains(where: { $0.isWhitespace || $0 == "'" || $0 == "\"" || $0 == "\\" }) {
                throw ValidationError("\(flag) '\(v)' must be one word without quotes.")
            }
        }
    }

    func options(defaultJobName: String) -> SlurmOptions {
        var o = SlurmOptions()
        o.partition = partition
        o.time = time
        o.cpusPerTask = cpusPerTask
        o.maxParallel = maxParallel
        o.mem = mem
        o.jobName = jobName ?? defaultJobName
        return o
    }
}
