import ArgumentParser
import Foundation
import JSONSupport
import PackedFormat
import Pipelines
import Quantization

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
                maxShardBytes: shards.bytes, note: { log.line($0) }
            ) { done, total in
                log.progress(done: done, total: total, started: t0, label: "steps")
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
            if let dequantizeTo { try Dequantization.write(m, to: dequantizeTo) }
            let summary = try PackedSummary(m, verified: verify)
            if json { print(JSONWriter.serialize(summary.json)); return }
            for line in summary.lines { print(line) }
        } catch { fail(error) }
    }
}
