import Foundation
import JSONSupport
import ModelDescription

/// The `README.md` model card every folder export carries (Hugging Face's form: YAML front matter,
/// then Markdown; Formats/exports.md "Model card"). It says what the export is and how it was made
/// from what the packed folder records; **nothing is invented**: a field whose value is not known
/// (a base model that is not a Hub id, a license the source does not state, numbers without a
/// conversion report) is left out.
enum ModelCard {
    /// What the card is made from besides the packed folder.
    struct Facts {
        var format: ExportFormat
        var groupSize: Int
        var scaleType: String
        var activationsFP8: Bool
        var notCarried: [String]
        var toolVersion: String
        var packedSHA256: String
        /// `fireq convert`'s report.json (the smoke evaluation), when the export comes from it.
        var report: JSONValue?
        /// The name when config.json has no `_name_or_path` (convert: its output folder's name).
        var name: String?
    }

    /// A Hub repository id ("owner/name"), not a path.
    static func hubID(_ s: String) -> String? {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        let ok =
            parts.count == 2
            && parts.allSatisfy { p in
                !p.isEmpty && p.first != "." && p.allSatisfy { $0.isLetter || $0.isNumber || "-_.".contains($0) }
            }
        return ok ? s : nil
    }

    /// YAML scalar: plain when safe, else double-quoted with JSON escapes (valid YAML).
    static func yaml(_ s: String) -> String {
        let plain =
            !s.isEmpty && s.allSatisfy { $0.isLetter || $0.isNumber || "-_./".contains($0) }
            && !["true", "false", "null", "yes", "no"].contains(s.lowercased())
        return plain ? s : JSONWriter.serialize(.string(s), sortedKeys: true)
    }

    static func markdown(_ src: ExportSource, _ f: Facts) -> String {
        let config = src.configJSON
        let nameOrPath = config["_name_or_path"]?.stringValue ?? ""
        let folderName = ((src.directory as NSString).standardizingPath as NSString).lastPathComponent
        let name = nameOrPath.isEmpty ? (f.name ?? folderName) : nameOrPath
        let base = hubID(nameOrPath)
        let library = f.format == .mlx ? "mlx" : "transformers"
        let meta = src.packed.metadata
        var tags = ["fireq", "int4", f.format == .mlx ? "mlx" : "compressed-tensors"]
        if let t = config["model_type"]?.stringValue, !t.isEmpty { tags.append(t) }
        var y = "---\n"
        if let base { y += "base_model: \(yaml(base))\nbase_model_relation: quantized\n" }
        if let license = meta["fireq.source_license"], !license.isEmpty { y += "license: \(yaml(license))\n" }
        y +=
            "library_name: \(library)\npipeline_tag: text-generation\ntags:\n" + tags.map { "- \(yaml($0))\n" }.joined()
            + "---\n\n"

        let recipe = src.recipe["name"]?.stringValue ?? "(unnamed)"
        let target =
            f.format == .mlx
            ? "mlx-lm's affine 4-bit quantized matmul (`QuantizedLinear`, group size \(f.groupSize), zero bias), activations in the model's dtype"
            : "compressed-tensors `pack-quantized`: INT4 weights with \(f.scaleType) group scales (group size \(f.groupSize), symmetric), "
                + (f.activationsFP8
                    ? "FP8 (E4M3) per-token dynamic input activations as declared (W4A8; runtimes without FP8 support run it as W4A16)"
                    : "activations in the model's dtype (W4A16)")
        var b = "# \(name) — INT4 (\(f.format == .mlx ? "MLX" : "compressed-tensors")), quantized by FireQ\n\n"
        b +=
            "\(name) with its linear layers in 4 bits, made by fireq \(f.toolVersion) (FireQ post-training quantization: "
        b +=
            "channel-wise smoothing, power-of-two per-tensor scales, pre- and post-RoPE Q/K scaling) with the recipe `\(recipe)`.\n\n"
        b += "## Quantization\n\n"
        b +=
            "* Weights of every decoder linear: 4-bit integers in groups of \(f.groupSize) input channels, one scale per group; "
        b += "the FireQ smoothing folded into the weights and norms beforehand.\n"
        b +=
            "* Unquantized, as the source stores them: embeddings, norms\(src.config.tieWordEmbeddings ? " (the output head is the tied embedding)" : ", the output head").\n"
        b += "* What the target runtime computes: \(target).\n"
        if f.notCarried.isEmpty {
            b += "* FireQ numerics this export does not carry: none.\n"
        } else {
            b += "* FireQ numerics this export does not carry (the FireQ runtime runs them; this runtime does not):\n"
            for n in f.notCarried { b += "  * \(n)\n" }
        }
        b += "\n"
        if let cal = meta["fireq.calibration"].flatMap({ try? JSONParser.parse(Array($0.utf8)) }) {
            b += "## Calibration data\n\n"
            let kind = cal["source_kind"]?.stringValue ?? "?"
            let path = cal["source_path"]?.stringValue.map { ($0 as NSString).lastPathComponent } ?? "?"
            b += "\(cal["samples"]?.stringValue ?? "?") windows × \(cal["seq_len"]?.stringValue ?? "?") tokens "
            b +=
                "(\(cal["tokens"]?.stringValue ?? "?") tokens, \(cal["selection"]?.stringValue ?? "?")) of \(kind) `\(path)`, "
            b +=
                "sha256 `\(cal["source_sha256"]?.stringValue ?? "?")`; statistics sha256 `\(meta["fireq.stats_sha256"] ?? "?")`.\n\n"
        }
        if let r = f.report, let m = r["models"]?.arrayValue?.first, let p = r["protocol"] {
            func num(_ v: JSONValue?, _ digits: Int) -> String {
                v?.doubleValue.map { String(format: "%.\(digits)f", $0) } ?? "–"
            }
            let scoring = p["scoring"]?.stringValue ?? "all"
            b += "## Measured loss (the conversion's smoke evaluation)\n\n"
            b +=
                "On \(p["windows"]?.intValue.map(String.init) ?? "?") windows of \(p["context"]?.intValue.map(String.init) ?? "?") tokens of "
            b +=
                "\(p["text"]?.stringValue ?? "?") (sha256 `\(p["text_sha256"]?.stringValue ?? "?")`), scoring \(scoring), "
            b +=
                "with FireQ's full numerics (`fireq eval --numerics fireq`); this export's runtime computes what is listed above.\n\n"
            b += "| model | perplexity | Δ | KL (nats/token) | top-1 agreement |\n|---|---:|---:|---:|---:|\n"
            b += "| source (FP32 reference) | \(num(r["baseline"]?["perplexity"], 4)) | – | – | – |\n"
            let delta = m["delta_perplexity_percent"]?.doubleValue.map { String(format: "%+.2f %%", $0) } ?? "–"
            let top1 = m["top1_agreement"]?.doubleValue.map { String(format: "%.2f %%", 100 * $0) } ?? "–"
            b +=
                "| FireQ (`\(recipe)`) | \(num(m["perplexity"], 4)) | \(delta) | \(num(m["kl_mean"], 4)) | \(top1) |\n\n"
        }
        b += "## Provenance\n\n"
        b +=
            "* Source model hash (sha256 of config.json and every tensor): `\(meta["fireq.source_model_sha256"] ?? "?")`\n"
        b += "* Packed model sha256: `\(f.packedSHA256)`; tool: fireq \(f.toolVersion)\n"
        b += "* Details of this export: `fireq-export.json`.\n"
        return y + b
    }
}
