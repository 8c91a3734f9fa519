import ArgumentParser
import JSONSupport
import Pipelines

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Kernel benchmarks: the packed FP32 GEMM against OpenBLAS SGEMM at the model's shapes, in one run.",
        discussion: "Prints one line per shape (median of --repeats timings each) and, with --json, one JSON object.")

    @Option(
        name: .long, parsing: .unconditional, help: "Timed repetitions per kernel and shape (the median is reported).")
    var repeats: Int = 7
    /// --threads: both kernels (OpenBLAS gets the same number).
    @OptionGroup var compute: ComputeOptions
    @Flag(name: .long, help: "Print one JSON object.")
    var json = false
    @Option(
        name: .long,
        help:
            "Instead of the kernels: time the model hash (SHA-256 over config.json and every tensor, Formats/calibration-stats.md) of this HF folder, --repeats times."
    )
    var sha256: String?

    func validate() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1.") }
    }

    func run() throws {
        do {
            if let sha256 {
                let t = try KernelBenchmarks.modelHash(of: sha256, repeats: repeats)
                print(json ? JSONWriter.serialize(t.json) : t.line)
                return
            }
            let report = try KernelBenchmarks.run(repeats: repeats, threads: compute.threads)
            if json { print(JSONWriter.serialize(report.json)) } else { report.lines.forEach { print($0) } }
        } catch { fail(error) }
    }
}
