import ArgumentParser
import Exports
import Foundation
import Pipelines

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Re-express a fireq-packed folder for another runtime: GGUF (llama.cpp), compressed-tensors (vLLM, transformers) or MLX.",
        discussion: """
            No new quantization: the INT4 codes are written as they are and every target dequantizes to \
            q · s_g · (1/P) (Formats/exports.md). What a target cannot express is printed as 'not carried: …' \
            and stored in the export; `fireq eval --numerics weights-only` shows the perplexity the export will \
            give. The output is assembled under a temporary name and renamed into place.
            """)

    @Argument(help: "A fireq-packed folder (from fireq quantize or fireq convert).")
    var packed: String
    @Option(name: .long, help: "gguf | compressed-tensors | mlx")
    var format: ExportFormat
    @Option(name: .long, help: "Output: a .gguf file, or a folder for compressed-tensors and mlx.")
    var out: String
    @Option(
        name: .long,
        help:
            "GGUF only: JSON object of general.* keys (name, organization, license, languages, ...), like llama.cpp's converter's --metadata."
    )
    var metadata: String?
    @Flag(name: .long, help: "Replace an existing output.")
    var force = false

    func validate() throws {
        if metadata != nil && format != .gguf { throw ValidationError("--metadata applies to --format gguf only.") }
    }

    func run() throws {
        do {
            let started = Date()
            let overrides = try metadata.map { try Exporter.ggufMetadata(fromJSONFile: $0) } ?? []
            let s = try Exporter.export(
                packedDir: packed, format: format, out: out, force: force,
                ggufMetadata: overrides, toolVersion: FireQVersion.string)
            printExportSummary(s)
            print(
                String(
                    format: "wrote %@ (%.1f MB) in %.1f s", s.path, Double(s.bytes) / 1e6,
                    Date().timeIntervalSince(started)))
        } catch { fail(error) }
    }
}

/// The lines `fireq export` and `fireq convert --export` print for one export.
func printExportSummary(_ s: ExportSummary) {
    for line in ExportSummaryLine(s).lines { print(line) }
}
