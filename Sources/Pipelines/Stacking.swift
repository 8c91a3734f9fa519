import Foundation
import JSONSupport
import ModelDescription
import TensorStore

/// A deeper copy of a checkpoint whose layers repeat the original's (`fireq stack-layers`, for
/// memory benchmarks): layer i of the copy is layer i mod L of the original, every other tensor
/// and the serving files as they are, `num_hidden_layers` × factor. Assembled in a temporary
/// folder beside `out` and renamed into place, so a failed run leaves nothing under `out`.
public enum CheckpointStacking {
    public static func write(model: String, out: String, factor: Int) throws -> (layers: Int, tensors: Int) {
        guard factor >= 1 else { throw PipelineError("--factor must be at least 1.") }
        let fm = FileManager.default
        if fm.fileExists(atPath: out) { throw PipelineError("\(out): already exists.") }
        let config = try ModelConfig(directory: model)
        let ckpt = try Checkpoint(directory: model)
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
        guard
            let cfgData = FileBytes.readIfPresent(model + "/config.json", limit: FileBytes.smallJSONLimit),
            case .object(var cfg) = try JSONParser.parse(cfgData)
        else { throw PipelineError("\(model)/config.json: not a JSON object.") }
        cfg["num_hidden_layers"] = .int(L * factor)
        let tmp = out + ".tmp-\(getpid())"
        try? fm.removeItem(atPath: tmp)
        try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        do {
            try SafetensorsWriter.write(tensors, to: tmp + "/model.safetensors")
            try Data(JSONWriter.serialize(.object(cfg)).utf8).write(to: URL(fileURLWithPath: tmp + "/config.json"))
            for f in ModelFiles.serving where fm.fileExists(atPath: model + "/" + f) {
                try fm.copyItem(atPath: model + "/" + f, toPath: tmp + "/" + f)
            }
            try fm.moveItem(atPath: tmp, toPath: out)
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw error
        }
        return (L * factor, tensors.count)
    }
}
