import ArgumentParser
import Foundation
import Pipelines

struct StackLayers: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stack-layers",
        abstract: "Write a deeper copy of a model whose layers repeat the original's (for memory benchmarks).",
        discussion:
            "Layer i of the copy is layer i mod L of the original; written with the project's safetensors writer.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: .long, help: "Output model folder (created; must not exist).")
    var out: String
    @Option(name: .long, parsing: .unconditional, help: "Depth multiplier.")
    var factor: Int = 2

    func run() throws {
        do {
            let r = try CheckpointStacking.write(model: modelOptions.model, out: out, factor: factor)
            print("wrote \(out) with \(r.layers) layers")
        } catch { fail(error) }
    }
}
