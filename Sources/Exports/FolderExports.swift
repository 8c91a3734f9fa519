import Foundation
import JSONSupport
import LowPrecision
import ModelDescription
import PackedFormat
import TensorStore

/// The two folder exports (compressed-tensors `pack-quantized`, MLX affine 4-bit): one
/// safetensors file in name order, the config with its quantization block, the tokenizer files
/// and `fireq-export.json` (Formats/exports.md).
enum FolderExport {
    /// Group sizes MLX's affine quantization supports.
    static let mlxGroupSizes: Set<Int> = [32, 64, 128]

    /// `report`: `fireq convert`'s report.json, whose numbers go into the model card.
    static func export(
        _ src: ExportSource, format: ExportFormat, to out: String, toolVersion: String, report: JSONValue? = nil,
        name: String? = nil
    ) throws -> ExportSummary {
        let file = src.packed.file
        let c = src.config
        // Which layers the recipe skipped: their linears are stored unquantized under HF names.
        var skippedLinears: [String] = []
        var groupOf: [String: Int] = [:]
        for i in 0..<c.layerCount {
            for l in TensorNames.linearNames(layer: i) {
                if src.linearNames.contains(l) {
                    guard let w = file.info(l + ".weight"), let s = file.info(l + ".weight_scale"), s.shape.count == 2,
                        s.shape[1] > 0
                    else {
                        throw ExportError(path: src.weightsPath, reason: "quantized linear '\(l)' is incomplete")
                    }
                    groupOf[l] = w.shape[1] * 8 / s.shape[1]
                } else {
                    skippedLinears.append(l)
                }
            }
        }
        let defaultGroup = src.groupSize
        if format == .mlx, let bad = groupOf.first(where: { !mlxGroupSizes.contains($0.value) }) {
            throw ExportError(
                path: src.weightsPath,
                reason:
                    "'\(bad.key)' has group size \(bad.value); MLX's affine 4-bit quantization supports group sizes 32, 64 and 128"
            )
        }
        // MLX: scales in the source's float type when exact there, else float32.
        let sourceDType = file.info(TensorNames.embed)?.dtype ?? .f16
        var scaleDType: DType = format == .compressedTensors ? .bf16 : sourceDType
        var linears: [String: PackedLinear] = [:]
        // Scales only: the codes are copied as packed bytes (one bit flip per nibble), never unpacked.
        for l in src.linearNames { linears[l] = try src.linear(l, codes: false) }
        func exact(_ v: Float, _ d: DType) -> Bool {
            switch d {
            case .f16: return FP16.decode(FP16.encode(v)) == v
            case .bf16: return BF16.round(v) == v
            default: return true
            }
        }
        var inexact = 0, groups = 0
        for l in linears.values {
            groups += l.scales.count
            inexact += l.scales.reduce(0) { $0 + (exact($1 * l.perTensorScaleInv, scaleDType) ? 0 : 1) }
        }
        if format == .mlx && inexact > 0 { scaleDType = .f32; inexact = 0 }

        var tensors: [TensorData] = []
        for t in file.tensors {
            let name = t.name
            if name.contains(".qkv_supply.") || name.hasSuffix(".per_tensor_scale_inv") { continue }
            if name.hasSuffix(".weight_scale") {
                let l = linears[String(name.dropLast(".weight_scale".count))]!
                let s = l.scales.map { $0 * l.perTensorScaleInv }
                let shape = [l.n, l.k / l.groupSize]
                switch format {
                case .compressedTensors:
                    tensors.append(TensorData(name: l.name + ".weight_scale", values: s, dtype: .bf16, shape: shape))
                    var shapeBytes: [UInt8] = []
                    Bytes.append(Int64(l.n), to: &shapeBytes); Bytes.append(Int64(l.k), to: &shapeBytes)
                    tensors.append(
                        TensorData(name: l.name + ".weight_shape", dtype: .i64, shape: [2], bytes: shapeBytes))
                case .mlx:
                    tensors.append(TensorData(name: l.name + ".scales", values: s, dtype: scaleDType, shape: shape))
                    tensors.append(
                        TensorData(name: l.name + ".biases", values: s.map { -8 * $0 }, dtype: scaleDType, shape: shape)
                    )
                case .gguf: preconditionFailure()
                }
                continue
            }
            let base = name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : ""
            if src.linearNames.contains(base) {
                // fireq-packed nibbles are two's complement q; both targets store q + 8: flip bit 3 of every nibble.
                let bytes = Array(file.rawBytes(t)).map { $0 ^ 0x88 }
                tensors.append(
                    format == .compressedTensors
                        ? TensorData(name: base + ".weight_packed", dtype: .i32, shape: t.shape, bytes: bytes)
                        : TensorData(name: name, dtype: .u32, shape: t.shape, bytes: bytes))
                continue
            }
            tensors.append(TensorData(name: name, dtype: t.dtype, shape: t.shape, bytes: Array(file.rawBytes(t))))
        }
        tensors.sort { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }

        let notCarried = src.runtimeOnlyNumerics(activationsCarried: format == .compressedTensors)
        guard var config = src.configJSON.objectValue else {
            throw ExportError(path: src.directory + "/config.json", reason: "the top level is not a JSON object")
        }
        let activationsFP8 = src.recipe["activations"]?["format"]?.stringValue != "fp32"
        switch format {
        case .compressedTensors:
            config["quantization_config"] = compressedTensorsConfig(
                groupOf: groupOf, defaultGroup: defaultGroup, ignore: [TensorNames.lmHeadModule] + skippedLinears,
                activationsFP8: activationsFP8)
        case .mlx:
            var q = JSONObject([("group_size", .int(defaultGroup)), ("bits", .int(4)), ("mode", .string("affine"))])
            for (l, g) in groupOf.sorted(by: { $0.key < $1.key }) where g != defaultGroup {
                q[l] = .object(JSONObject([("group_size", .int(g)), ("bits", .int(4))]))
            }
            for l in skippedLinears { q[l] = .bool(false) }
            config["quantization"] = .object(q)
            config["quantization_config"] = .object(q)
            config = Self.legacyRope(config)
            if case .perLayer? = src.config.family.slidingWindow {
                config["sliding_window_pattern"] = .int(
                    try Self.mlxSlidingPattern(src.config, configPath: src.directory + "/config.json"))
            }
        case .gguf: preconditionFailure()
        }
        let packedSHA = try src.packed.contentSHA256()
        let card = ModelCard.markdown(
            src,
            ModelCard.Facts(
                format: format, groupSize: defaultGroup, scaleType: scaleDType.rawValue,
                activationsFP8: activationsFP8 && format == .compressedTensors,
                notCarried: notCarried, toolVersion: toolVersion, packedSHA256: packedSHA, report: report, name: name))
        let exportInfo = JSONObject([
            ("format", .string(format.rawValue)), ("source_packed", .string(src.directory)),
            ("packed_sha256", .string(packedSHA)),
            ("recipe", .string(src.recipe["name"]?.stringValue ?? "")), ("group_size", .int(defaultGroup)),
            ("not_carried", .array(notCarried.map { .string($0) })), ("inexact_scale_groups", .int(inexact)),
            ("scale_dtype", .string(scaleDType.rawValue)), ("tool_version", .string(toolVersion))
        ])
        try Publish.folder(out) { dir in
            try SafetensorsWriter.write(
                tensors, metadata: ["fireq.export": format.rawValue, "fireq.tool_version": toolVersion],
                to: dir + "/model.safetensors")
            try Publish.text(JSONWriter.pretty(.object(config)) + "\n", to: dir + "/config.json")
            try Publish.text(JSONWriter.pretty(.object(exportInfo)) + "\n", to: dir + "/fireq-export.json")
            try Publish.copyCompanions(from: src.directory, to: dir)
            try Publish.text(card, to: dir + "/README.md")
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: out + "/model.safetensors")[.size] as? Int) ?? 0
        return ExportSummary(
            format: format, path: out, notCarried: notCarried, inexactScaleGroups: inexact, groups: groups,
            scaleType: scaleDType.rawValue, bytes: size)
    }

    /// mlx-lm's gemma3_text makes layer i global when (i + 1) mod `sliding_window_pattern` = 0 and
    /// ignores `layer_types`: the period of this model's layers, or the refusal when they have none
    /// mlx-lm can run (it also needs the period within the layer count).
    static func mlxSlidingPattern(_ c: ModelConfig, configPath: String) throws -> Int {
        guard let p = c.slidingPattern else {
            throw ExportError(
                path: configPath,
                reason:
                    "has sliding-window layers (layer_types) that follow no every-p-th-layer-global pattern, the only layout mlx-lm's gemma3_text runs"
            )
        }
        return p
    }

    /// transformers 5.x's `rope_parameters` rewritten as top-level `rope_theta` / `rope_scaling`
    /// (what mlx-lm reads; it silently defaults both otherwise), and for per-attention-type
    /// parameters (Gemma 3) the global ones there plus `rope_local_base_freq`. Key order is kept.
    static func legacyRope(_ config: JSONObject) -> JSONObject {
        guard var p = config["rope_parameters"]?.objectValue else { return config }
        let local = p["sliding_attention"]?.objectValue
        if let full = p["full_attention"]?.objectValue { p = full }
        let type = p["rope_type"]?.stringValue ?? p["type"]?.stringValue ?? "default"
        var scaling = JSONObject()
        for (k, v) in p.pairs where k != "rope_theta" && k != "type" { scaling[k] = v }
        var out = JSONObject()
        for (k, v) in config.pairs {
            if k == "rope_parameters" {
                out["rope_theta"] = p["rope_theta"] ?? .null
                out["rope_scaling"] = type == "default" ? .null : .object(scaling)
                if let local { out["rope_local_base_freq"] = local["rope_theta"] ?? .null }
            } else if k != "rope_theta" && k != "rope_scaling" && !(local != nil && k == "rope_local_base_freq") {
                out[k] = v
            }
        }
        return out
    }

    /// compressed-tensors `quantization_config`: one config group per group size (the recipe's
    /// default targets every Linear; others name their layers), FP8 dynamic per-token inputs when
    /// the recipe quantizes activations, no KV-cache scheme (Formats/exports.md says why).
    static func compressedTensorsConfig(
        groupOf: [String: Int], defaultGroup: Int, ignore: [String], activationsFP8: Bool
    ) -> JSONValue {
        func scheme(_ g: Int, targets: [String]) -> JSONValue {
            .object(
                JSONObject([
                    ("targets", .array(targets.map { .string($0) })),
                    (
                        "weights",
                        .object(
                            JSONObject([
                                ("num_bits", .int(4)), ("type", .string("int")), ("symmetric", .bool(true)),
                                ("strategy", .string("group")),
                                ("group_size", .int(g)), ("dynamic", .bool(false)), ("actorder", .null),
                                ("observer", .null)
                            ]))
                    ),
                    (
                        "input_activations",
                        activationsFP8
                            ? .object(
                                JSONObject([
                                    ("num_bits", .int(8)), ("type", .string("float")), ("symmetric", .bool(true)),
                                    ("strategy", .string("token")),
                                    ("dynamic", .bool(true)), ("observer", .null)
                                ])) : .null
                    ),
                    ("output_activations", .null),
                    ("format", .string("pack-quantized"))
                ]))
        }
        var groups = JSONObject([("group_0", scheme(defaultGroup, targets: ["Linear"]))])
        let others = Dictionary(grouping: groupOf.filter { $0.value != defaultGroup }, by: \.value)
        for (i, g) in others.keys.sorted().enumerated() {
            let names = others[g]!.map(\.key).sorted()
            let pattern =
                "re:^(" + names.map { $0.replacingOccurrences(of: ".", with: "\\.") }.joined(separator: "|") + ")$"
            groups["group_\(i + 1)"] = scheme(g, targets: [pattern])
        }
        return .object(
            JSONObject([
                ("quant_method", .string("compressed-tensors")), ("format", .string("pack-quantized")),
                ("quantization_status", .string("compressed")), ("config_groups", .object(groups)),
                ("ignore", .array(ignore.map { .string($0) })), ("kv_cache_scheme", .null),
                ("version", .string("0.20.1"))
            ]))
    }
}

/// Entry point of `fireq export` and of `fireq convert --export`.
public enum Exporter {
    /// Exports the packed folder `packedDir` to `out` (a file for GGUF, a folder otherwise).
    /// `ggufMetadata`: `general.*` overrides (`--metadata`), GGUF only.
    /// `report`: a `fireq convert` report.json whose smoke-evaluation numbers go into the folder
    /// exports' model card (default: `packedDir/report.json` when there is one).
    public static func export(
        packedDir: String, format: ExportFormat, out: String, force: Bool,
        ggufMetadata: [(String, GGUFValue)] = [], toolVersion: String, report: String? = nil,
        modelName: String? = nil
    ) throws -> ExportSummary {
        try Publish.check(out: out, source: packedDir, force: force)
        let reportPath = report ?? packedDir + "/report.json"
        var reportJSON: JSONValue? = nil
        if let data = FileBytes.readIfPresent(reportPath, limit: FileBytes.smallJSONLimit) {
            do { reportJSON = try JSONParser.parse(data) } catch {
                throw ExportError(path: reportPath, reason: "is not valid JSON (\(error))")
            }
        } else if report != nil {
            throw ExportError(
                path: reportPath, reason: "cannot be read (the conversion report whose numbers go into the model card)")
        }
        let src = try ExportSource(directory: packedDir)
        switch format {
        case .gguf:
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: out, isDirectory: &isDir), isDir.boolValue {
                throw ExportError(path: out, reason: "is a folder; a GGUF export is one file")
            }
            return try GGUFExport.export(src, to: out, metadata: ggufMetadata, toolVersion: toolVersion)
        case .compressedTensors, .mlx:
            return try FolderExport.export(
                src, format: format, to: out, toolVersion: toolVersion, report: reportJSON, name: modelName)
        }
    }

    /// Refuses, before any conversion, an export whose target cannot express the model of the
    /// folder `model` (e.g. GGUF for a family llama.cpp's architectures here do not cover).
    public static func checkTarget(_ format: ExportFormat, model: String) throws {
        let c = try ModelConfig(directory: model)
        if format == .gguf { _ = try GGUFExport.checkFamily(c, configPath: model + "/config.json") }
        if format == .mlx, case .perLayer? = c.family.slidingWindow {
            _ = try FolderExport.mlxSlidingPattern(c, configPath: model + "/config.json")
        }
    }

    /// Reads a `--metadata` override file for GGUF (`general.*` keys only).
    public static func ggufMetadata(fromJSONFile path: String) throws -> [(String, GGUFValue)] {
        try GGUFExport.overrides(fromJSONFile: path)
    }
}
