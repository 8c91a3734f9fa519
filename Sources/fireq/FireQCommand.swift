import ArgumentParser
import Foundation

@main
struct FireQ: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fireq",
        abstract: "FireQ post-training quantization toolkit: converts Llama-family checkpoints to INT4-FP8 (W4A8KV4) and measures what it cost.",
        version: FireQVersion.string,
        subcommands: [Convert.self, Export.self, Eval.self, Compare.self, Report.self, Generate.self, Tokenize.self, Calibrate.self, Quantize.self, Inspect.self, Bench.self, StackLayers.self])
}

enum FireQVersion {
    static let string = "0.1.0"
}
