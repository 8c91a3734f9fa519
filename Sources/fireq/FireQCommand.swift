import ArgumentParser
import CFireQKernels
import Foundation
import Pipelines

@main
struct FireQ: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fireq",
        abstract:
            "FireQ post-training quantization toolkit: converts Llama-family checkpoints to INT4-FP8 (W4A8KV4) and measures what it cost.",
        version: "fireq \(FireQVersion.string) (commit \(BuildInfo.commit))",
        subcommands: [
            Convert.self, Batch.self, Export.self, Eval.self, Compare.self, Report.self, Generate.self, Tokenize.self,
            Calibrate.self, CalibrateMerge.self, CalibrateSlurm.self, Quantize.self, Inspect.self, Bench.self,
            StackLayers.self
        ])
}

extension FireQ {
    /// Refuses a FIREQ_ISA the CPU lacks or does not name a path, before any command runs.
    static func main() {
        let names = ["portable", "avx2", "avx512"]
        let want = fq_isa_requested(), hw = Int(fq_cpu_isa_level())
        if want == -2 {
            fail(
                CLIError(
                    "FIREQ_ISA='\(ProcessInfo.processInfo.environment["FIREQ_ISA"] ?? "")' is not a kernel path (portable, avx2, avx512)."
                ))
        }
        if want > hw {
            fail(
                CLIError(
                    "FIREQ_ISA=\(names[Int(want)]) asks for a kernel path this CPU lacks (it supports up to \(names[hw]))."
                ))
        }
        self.main(nil)
    }
}
