import ArgumentParser
import Foundation
import JSONSupport
import PackedFormat
import Pipelines
import Quantization
import Runtime
import TensorStore

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Smooth and quantize a model with a recipe and calibration statistics into a fireq-packed folder.",
        discussion:
            "Recipes: Calibration/recipes/*.json (schema Formats/recipe-schema.md). Output: Formats/fireq-packed-v1.md."
    )

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var compute: ComputeOptions
    @Option(name: .long, help: "Calibration statistics (.h5) made by `fireq calibrate` for this model.")
    var stats: String
    @Option(name: .long, help: "Recipe JSON file.")
    var recipe: String
    @Option(name: .long, help: "Output folder.")
    var out: String
    @Flag(name: .long, help: "Replace an existing output folder.")
    var force = false
    @OptionGroup var shards: ShardOption

    func run() throws {
        do {
            let r = try Recipe.load(recipe)
            let log = TerminalProgress()
            let t0 = Date()
            let s = try Quantizer.run(
                modelDir: modelOptions.model, statsPath: stats, recipe: r, recipeJSON: r.canonicalJSON, outDir: out,
                toolVersion: FireQVersion.string, threads: compute.threads, force: force,
                maxShardBytes: shards.bytes
            ) { done, total in
                log.progress(done: done, total: total, started: t0, label: "layers")
            }
            let files = PackedModel.weightFileNames(in: out)
            log.line(
                String(
                    format: "wrote %@ (%@): linear weights %.3f× their FP16 bytes, whole model %.3f× the source",
                    out, files.count == 1 ? files[0] : "\(files.count - 1) shards + index",
                    Double(s.linearBytes) / Double(max(1, s.linearFP16Bytes)),
                    Double(s.totalBytes) / Double(max(1, s.sourceBytes))))
        } catch { fail(error) }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a fireq-packed folder; --verify checks every crc32.")

    @Argument(help: "Packed model folder.")
    var directory: String
    @Flag(name: .long, help: "Check every tensor's crc32 (exit status 1 on a mismatch).")
    var verify = false
    @Flag(name: .long, help: "Print one JSON object.")
    var json = false
    @Option(
        name: .customLong("dequantize-to"),
        help:
            "Also write every linear's dequantized FP32 weight ŵ·(1/P), exactly as the INT4-FP8 runtime holds it, to this safetensors file."
    )
    var dequantizeTo: String?

    func run() throws {
        do {
            let m = try PackedModel(directory: directory)
            if verify { try m.verify() }
            if let dequantizeTo {
                var ts: [TensorData] = []
                for name in m.linearNames {
                    // The runtime's own weights: its packed ŵ panels times each column's 1/P (exact: a power of two).
                    let lin = try Int4FP8Linear(try m.linear(name), fp8Rerounding: m.fp8Rerounding)
                    var w = lin.weightValues()
                    for r in 0..<lin.n { for c in 0..<lin.k { w[r * lin.k + c] *= lin.columnScale[r] } }
                    ts.append(TensorData(name: name, float32: w, shape: [lin.n, lin.k]))
                }
                try SafetensorsWriter.write(ts, to: dequantizeTo)
            }
            var layers: [JSONValue] = []
            var qBytes = 0, fp16Bytes = 0, weights = 0
            for name in m.linearNames {
                let (w, s, p) = (
                    m.file.info(name + ".weight")!, m.file.info(name + ".weight_scale")!,
                    m.file.info(name + ".per_tensor_scale_inv")!
                )
                let n = w.shape[0], k = w.shape[1] * 8
                let l = try m.linear(name)
                let bytes = w.byteCount + s.byteCount + p.byteCount
                qBytes += bytes; fp16Bytes += n * k * 2; weights += n * k
                layers.append(
                    .object(
                        JSONObject([
                            ("name", .string(name)), ("shape", .array([.int(n), .int(k)])),
                            ("group_size", .int(l.groupSize)), ("per_tensor_scale", .float(1 / l.perTensorScaleInv)),
                            ("scale_format", .string(l.scaleFormat)),
                            ("bits_per_weight", .double(Double(bytes * 8) / Double(n * k)))
                        ])))
            }
            let total = m.file.tensors.reduce(0) { $0 + $1.byteCount }
            let summary = JSONObject([
                ("format", .string(m.metadata["fireq.format"]!)), ("version", .string(m.metadata["fireq.version"]!)),
                ("tool_version", .string(m.metadata["fireq.tool_version"] ?? "")), ("recipe", m.recipe),
                ("source_model_sha256", .string(m.metadata["fireq.source_model_sha256"] ?? "")),
                ("stats_sha256", .string(m.metadata["fireq.stats_sha256"] ?? "")),
                ("quantized_linears", .int(layers.count)),
                ("linear_bits_per_weight", .double(Double(qBytes * 8) / Double(max(weights, 1)))),
                ("linear_size_vs_fp16", .double(Double(qBytes) / Double(max(fp16Bytes, 1)))),
                ("tensor_bytes", .int(total)),
                ("verified", .bool(verify)),
                ("weight_files", .array(m.weightFiles.map { .string(($0 as NSString).lastPathComponent) })),
                ("layers", .array(layers))
            ])
            if json { print(JSONWriter.serialize(.object(summary))); return }
            print(
                "\(directory): \(m.metadata["fireq.format"]!) v\(m.metadata["fireq.version"]!), recipe '\(m.recipe["name"]?.stringValue ?? "?")', written by fireq \(m.metadata["fireq.tool_version"] ?? "?")"
            )
            print(
                String(
                    format: "%d quantized linears, %.3f bits/weight, %.3f× their FP16 size; tensors %.1f MiB%@",
                    layers.count, Double(qBytes * 8) / Double(max(weights, 1)),
                    Double(qBytes) / Double(max(fp16Bytes, 1)),
                    Double(total) / 1048576, verify ? "; every crc32 verified" : ""))
            if m.sharded {
                print(
                    "\(m.weightFiles.count - 1) shards: "
                        + m.weightFiles.dropFirst().map { ($0 as NSString).lastPathComponent }.joined(separator: ", "))
            }
            for l in layers {
                print(
                    "  \(l["name"]!.stringValue!)  G=\(l["group_size"]!.intValue!)  P=\(JSONWriter.serialize(l["per_tensor_scale"]!))  \(l["scale_format"]!.stringValue!)"
                )
            }
        } catch { fail(error) }
    }
}
