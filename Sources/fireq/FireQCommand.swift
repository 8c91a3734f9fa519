import ArgumentParser
import Foundation

@main
struct FireQ: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fireq",
        abstract: "FireQ post-training quantization toolkit: FP32 reference evaluation and tokenization of Llama-family checkpoints.",
        version: FireQVersion.string,
        subcommands: [Eval.self, Tokenize.self, Calibrate.self, Quantize.self, Inspect.self, Bench.self, StackLayers.self])
}

enum FireQVersion {
    static let string = "0.1.0"
}
