import ArgumentParser
import Foundation
import JSONSupport
import LlamaReference
import ModelDescription
import Pipelines
import TensorStore

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
            guard factor >= 1 else { throw CLIError("--factor must be at least 1.") }
            let fm = FileManager.default
            if fm.fileExists(atPath: out) { throw CLIError("\(out): already exists.") }
            let config = try ModelConfig(directory: modelOptions.model)
            let ckpt = try Checkpoint(directory: modelOptions.model)
            try TensorNames.validate(ckpt, config: config)
            let L = config.layerCount
            var tensors: [TensorData] = []
            for name in ckpt.tensorNames {
                let (f, t) = try ckpt.file(for: name)
                let bytes = [UInt8](f.rawBytes(t))
                if let (idx, part) = TensorNames.layerPart(of: name) {
                    for k in 0..<factor {
                        tensors.append(
                            TensorData(
                                name: TensorNames.layer(idx + k * L, String(part)), dtype: t.dtype, shape: t.shape,
                                bytes: bytes))
                    }
                } else {
                    tensors.append(TensorData(name: name, dtype: t.dtype, shape: t.shape, bytes: bytes))
                }
            }
            tensors.sort { $0.name < $1.name }
            try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
            try SafetensorsWriter.write(tensors, to: out + "/model.safetensors")
            guard
                let cfgData = FileBytes.readIfPresent(
                    modelOptions.model + "/config.json", limit: FileBytes.smallJSONLimit),
                case .object(var cfg) = try JSONParser.parse(cfgData)
            else { throw CLIError("\(modelOptions.model)/config.json: unreadable.") }
            cfg["num_hidden_layers"] = .int(L * factor)
            try AtomicFile.write(Data(JSONWriter.serialize(.object(cfg)).utf8), to: out + "/config.json")
            for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]
            where fm.fileExists(atPath: modelOptions.model + "/" + f) {
                try fm.copyItem(atPath: modelOptions.model + "/" + f, toPath: out + "/" + f)
            }
            print("wrote \(out) with \(L * factor) layers")
        } catch { fail(error) }
    }
}
