import Foundation
import JSONSupport
import LlamaReference
import LowPrecision
import ModelDescription
import PackedFormat
import TensorStore

/// GGUF v3, architecture `llama` (Llama, Mistral), `qwen2`, `qwen3` or `gemma3`, linears as Q4_0 (Formats/exports.md "GGUF").
public enum GGUFExport {
    /// HF → GGUF names of one decoder layer's tensors (llama.cpp `tensor_mapping.py`) for the
    /// families with a GGUF export (Gemma's norms after attention and MLP included).
    static func layerNames(_ c: ModelConfig) -> [(hf: String, gguf: String)] {
        typealias N = TensorNames
        let norms = N.norms(c)
        let sandwich = [
            norms.attentionOutput.map { ($0, "post_attention_norm.weight") },
            norms.mlpOutput.map { ($0, "post_ffw_norm.weight") }
        ]
        return sandwich.compactMap { $0 } + [
            (norms.attentionInput, "attn_norm.weight"),
            (N.down + ".weight", "ffn_down.weight"),
            (N.gate + ".weight", "ffn_gate.weight"),
            (N.up + ".weight", "ffn_up.weight"),
            (norms.mlpInput, "ffn_norm.weight"),
            (N.k + ".weight", "attn_k.weight"),
            (N.o + ".weight", "attn_output.weight"),
            (N.q + ".weight", "attn_q.weight"),
            (N.v + ".weight", "attn_v.weight")
        ] + (c.qkNorm ? [(N.qNorm, "attn_q_norm.weight"), (N.kNorm, "attn_k_norm.weight")] : [])
    }

    /// llama.cpp's architecture for the model of `c`, or the one-sentence refusal (naming
    /// `configPath`) when GGUF cannot express its family: asked before any conversion starts.
    public static func checkFamily(_ c: ModelConfig, configPath: String) throws -> String {
        guard let architecture = c.family.ggufArchitecture else {
            let supported = ModelFamily.all.filter { $0.ggufArchitecture != nil }.map {
                String(describing: $0.architecture)
            }
            throw ExportError(
                path: configPath,
                reason:
                    "architecture \(c.architecture.rawValue) has no GGUF export here (\(supported.joined(separator: ", ")) only)"
            )
        }
        if c.attentionBias && !c.family.ggufCarriesQKVBias {
            throw ExportError(
                path: configPath,
                reason: "has q/k/v biases (attention_bias), which the GGUF \(architecture) export does not carry")
        }
        if architecture == "gemma3" {
            // What llama.cpp's gemma3 fixes instead of reading (Formats/exports.md "gemma3").
            if c.slidingLayers.indices.contains(where: { c.slidingLayers[$0] != (($0 + 1) % 6 != 0) }) {
                throw ExportError(
                    path: configPath,
                    reason:
                        "has sliding-window layers in a pattern other than every 6th layer global (layer_types / sliding_window_pattern), which llama.cpp's gemma3 assumes"
                )
            }
            if c.localRopeTheta != 10_000 {
                throw ExportError(
                    path: configPath,
                    reason:
                        "has rope_local_base_freq \(c.localRopeTheta), but llama.cpp's gemma3 uses 10000 for the sliding layers"
                )
            }
            if c.attentionScale != 1 / Float(c.headDim).squareRoot() {
                throw ExportError(
                    path: configPath,
                    reason:
                        "scales q·k by \(c.attentionScale) (query_pre_attn_scalar), but llama.cpp's gemma3 uses 1/√head_dim = \(1 / Float(c.headDim).squareRoot())"
                )
            }
            if case .llama3 = c.ropeScaling {
                throw ExportError(
                    path: configPath,
                    reason: "has llama3 RoPE scaling, which the GGUF gemma3 export does not carry (none or linear only)"
                )
            }
        }
        return architecture
    }

    /// One tensor of the export: where its values come from.
    enum Source {
        case quantized(linear: String, permuteHeads: Int?)  // packed linear (without .weight)
        case stored(String, permuteHeads: Int?)  // unquantized tensor in its stored dtype
        case widened(String, offset: Float)  // norm weight or bias widened to F32, + offset (Gemma's 1 + w)
        case values([Float])  // computed F32 values (rope_freqs)
    }

    static func export(
        _ src: ExportSource, to out: String, metadata overrides: [(String, GGUFValue)], toolVersion: String
    ) throws -> ExportSummary {
        let c = src.config
        let architecture = try checkFamily(c, configPath: src.directory + "/config.json")
        // Tensor plan, in HF-name order (llama.cpp's converter order).
        var plan: [(hf: String, gguf: String, source: Source)] = []
        plan.append((TensorNames.embed, "token_embd.weight", .stored(TensorNames.embed, permuteHeads: nil)))
        var layers: [(hf: String, gguf: String, source: Source)] = []
        for i in 0..<c.layerCount {
            let biases =
                c.attentionBias && c.family.ggufCarriesQKVBias
                ? [
                    (TensorNames.q + ".bias", "attn_q.bias"), (TensorNames.k + ".bias", "attn_k.bias"),
                    (TensorNames.v + ".bias", "attn_v.bias")
                ] : []
            let norms = TensorNames.norms(c).all + (c.qkNorm ? [TensorNames.qNorm, TensorNames.kNorm] : [])
            for (hf, gg) in layerNames(c) + biases {
                let name = TensorNames.layer(i, hf)
                let base = String(name.dropLast(".weight".count))
                let permute = c.family.ggufPermutesQK
                let heads: Int? =
                    !permute
                    ? nil
                    : hf == TensorNames.q + ".weight"
                        ? c.headCount : hf == TensorNames.k + ".weight" ? c.kvHeadCount : nil
                let source: Source =
                    norms.contains(hf)
                    ? .widened(name, offset: c.normWeightOffset)
                    : hf.hasSuffix(".bias")
                        ? .widened(name, offset: 0)
                        : src.linearNames.contains(base)
                            ? .quantized(linear: base, permuteHeads: heads) : .stored(name, permuteHeads: heads)
                layers.append((name, "blk.\(i).\(gg)", source))
            }
        }
        plan += layers
        plan.append(
            (TensorNames.finalNorm, "output_norm.weight", .widened(TensorNames.finalNorm, offset: c.normWeightOffset)))
        if !c.tieWordEmbeddings {
            plan.append((TensorNames.lmHead, "output.weight", .stored(TensorNames.lmHead, permuteHeads: nil)))
        }
        plan.sort { $0.hf < $1.hf }
        // llama3 RoPE scaling: llama.cpp divides each frequency by rope_freqs[j] (its converter
        // writes this tensor first, before the checkpoint's own).
        if let factors = Self.ropeFreqFactors(c) { plan.insert(("", "rope_freqs.weight", .values(factors)), at: 0) }
        if !c.family.ggufCarriesQKVBias
            && (c.attentionBias || src.packed.file.tensorNames.contains(where: { $0.hasSuffix(".bias") }))
        {
            throw ExportError(
                path: src.weightsPath,
                reason: "has linear biases, which the GGUF \(c.family.ggufArchitecture ?? "") export does not carry")
        }

        var writer = GGUFWriter()
        var groups = 0
        for p in plan {
            let info: TensorInfo
            switch p.source {
            case .quantized(let l, _):
                guard let w = src.packed.file.info(l + ".weight"), let s = src.packed.file.info(l + ".weight_scale")
                else {
                    throw ExportError(path: src.weightsPath, reason: "quantized linear '\(l)' is incomplete")
                }
                let n = w.shape[0], k = w.shape[1] * 8, g = k / s.shape[1]
                guard g % 32 == 0 else {
                    throw ExportError(
                        path: src.weightsPath,
                        reason:
                            "'\(l)' has group size \(g); GGUF Q4_0 blocks hold 32 weights, so the group size must be a multiple of 32"
                    )
                }
                groups += n * (k / g)
                writer.tensors.append(.init(name: p.gguf, shape: [n, k], type: .q4_0))
                continue
            case .stored(let name, _):
                guard let t = src.packed.file.info(name) else {
                    throw ExportError(path: src.weightsPath, reason: "tensor '\(name)' is missing")
                }; info = t
            case .widened(let name, _):
                guard let t = src.packed.file.info(name) else {
                    throw ExportError(path: src.weightsPath, reason: "tensor '\(name)' is missing")
                }; info = t
            case .values(let v):
                writer.tensors.append(.init(name: p.gguf, shape: [v.count], type: .f32))
                continue
            }
            let type: GGMLType
            if case .widened = p.source {
                type = .f32
            } else {
                switch info.dtype {
                case .f16: type = .f16
                case .bf16: type = .bf16
                case .f32: type = .f32
                default:
                    throw ExportError(
                        path: src.weightsPath,
                        reason: "tensor '\(info.name)' has dtype \(info.dtype.rawValue), which GGUF cannot store here")
                }
            }
            writer.tensors.append(.init(name: p.gguf, shape: info.shape, type: type))
        }

        let notCarried = src.runtimeOnlyNumerics(activationsCarried: false)
        // Scales FP16 cannot hold exactly, counted before writing (the count is a header key).
        var inexact = 0
        for p in plan {
            if case .quantized(let l, _) = p.source { inexact += try countInexact(src.linear(l, codes: false)) }
        }
        writer.keyValues = try keyValues(
            src, architecture: architecture, overrides: overrides, notCarried: notCarried, inexact: inexact,
            toolVersion: toolVersion)

        try writer.write(to: out) { i in
            switch plan[i].source {
            case .quantized(let l, let heads):
                return q4_0Blocks(try src.linear(l), permuteHeads: heads)
            case .stored(let name, let heads):
                let (t, bytes) = try src.raw(name)
                guard let heads else { return bytes }
                return permuteRows(bytes, rows: t.shape[0], rowBytes: bytes.count / t.shape[0], heads: heads)
            case .widened(let name, let offset):
                var out: [UInt8] = []
                for v in try src.packed.file.float32(name) {
                    Bytes.append((offset == 0 ? v : offset + v).bitPattern, to: &out)
                }
                return out
            case .values(let v):
                var out: [UInt8] = []
                for x in v { Bytes.append(x.bitPattern, to: &out) }
                return out
            }
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: out)[.size] as? Int) ?? 0
        return ExportSummary(
            format: .gguf, path: out, notCarried: notCarried, inexactScaleGroups: inexact, groups: groups,
            scaleType: "F16", bytes: size)
    }

    /// llama.cpp's `rope_freqs` for llama3 RoPE scaling, as its converter computes them: for each
    /// frequency f_j = 1 / θ^(2j/D) (FP32), with wavelength λ = 2π / f_j: 1 when λ < L/high,
    /// `factor` when λ > L/low, else 1 / ((1 − s)/factor + s) with s = (L/λ − low)/(high − low)
    /// (L = original_max_position_embeddings); rounded once to FP32. nil without llama3 scaling.
    public static func ropeFreqFactors(_ c: ModelConfig) -> [Float]? {
        guard case .llama3(let factor, let low, let high, let orig) = c.ropeScaling else { return nil }
        let L = Double(orig), lowWavelen = L / low, highWavelen = L / high
        return (0..<(c.headDim / 2)).map { j in
            let f = 1 / powf(Float(c.ropeTheta), Float(2 * j) / Float(c.headDim))
            let wavelen = 2 * Double.pi / Double(f)
            if wavelen < highWavelen { return 1 }
            if wavelen > lowWavelen { return Float(factor) }
            let smooth = (L / wavelen - low) / (high - low)
            return Float(1 / ((1 - smooth) / factor + smooth))
        }
    }

    /// Groups whose d = FP16(s_g/P) differs from s_g/P.
    public static func countInexact(_ l: PackedLinear) -> Int {
        l.scales.reduce(0) { n, s in
            let d = s * l.perTensorScaleInv
            return n + (FP16.decode(FP16.encode(d)) == d ? 0 : 1)
        }
    }

    /// GGUF row r of a q/k projection holds HF row perm(r): inside each head of D rows, GGUF row
    /// 2j is HF row j and GGUF row 2j+1 is HF row j + D/2 (llama.cpp's converter `permute`).
    public static func hfRow(_ r: Int, rows: Int, heads: Int) -> Int {
        let d = rows / heads, h = r / d, j = r % d
        return h * d + (j % 2 == 0 ? j / 2 : j / 2 + d / 2)
    }

    static func permuteRows(_ bytes: [UInt8], rows: Int, rowBytes: Int, heads: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: bytes.count)
        for r in 0..<rows {
            let s = hfRow(r, rows: rows, heads: heads)
            out.replaceSubrange(
                (r * rowBytes)..<((r + 1) * rowBytes), with: bytes[(s * rowBytes)..<((s + 1) * rowBytes)])
        }
        return out
    }

    /// The linear as ggml `block_q4_0` rows (18 bytes per 32 weights): d = FP16(s_g/P), then
    /// weight j in the low nibble of qs[j] and weight j + 16 in its high nibble, as q + 8.
    public static func q4_0Blocks(_ l: PackedLinear, permuteHeads: Int?) -> [UInt8] {
        let blocksPerRow = l.k / 32, groups = l.k / l.groupSize
        var out = [UInt8](repeating: 0, count: l.n * blocksPerRow * 18)
        for r in 0..<l.n {
            let s = permuteHeads.map { hfRow(r, rows: l.n, heads: $0) } ?? r
            for b in 0..<blocksPerRow {
                let o = (r * blocksPerRow + b) * 18
                let d = FP16.encode(l.scales[s * groups + b * 32 / l.groupSize] * l.perTensorScaleInv)
                out[o] = UInt8(d & 0xFF); out[o + 1] = UInt8(d >> 8)
                let q = s * l.k + b * 32
                for j in 0..<16 {
                    let lo = UInt8(Int(l.q[q + j]) + 8), hi = UInt8(Int(l.q[q + j + 16]) + 8)
                    out[o + 2 + j] = lo | (hi << 4)
                }
            }
        }
        return out
    }

    // MARK: - Metadata

    static func keyValues(
        _ src: ExportSource, architecture arch: String, overrides: [(String, GGUFValue)], notCarried: [String],
        inexact: Int, toolVersion: String
    ) throws -> [(String, GGUFValue)] {
        let c = src.config
        var kv: [(String, GGUFValue)] = [("general.architecture", .string(arch)), ("general.type", .string("model"))]
        let folderName = ((src.directory as NSString).standardizingPath as NSString).lastPathComponent
        let name = src.configJSON["_name_or_path"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? folderName
        kv.append(("general.name", .string(name)))
        // What the source says of itself, nothing guessed: its Hub id (config `_name_or_path`
        // "owner/name") as the base model, its model card's license (Formats/exports.md).
        if let id = ModelCard.hubID(src.configJSON["_name_or_path"]?.stringValue ?? ""),
            let slash = id.firstIndex(of: "/")
        {
            kv.append(("general.base_model.count", .u32(1)))
            kv.append(("general.base_model.0.name", .string(String(id[id.index(after: slash)...]))))
            kv.append(("general.base_model.0.organization", .string(String(id[..<slash]))))
            kv.append(("general.base_model.0.repo_url", .string("https://huggingface.co/" + id)))
        }
        if let license = src.packed.metadata["fireq.source_license"], !license.isEmpty {
            kv.append(("general.license", .string(license)))
        }
        for (k, v) in overrides {
            if let i = kv.firstIndex(where: { $0.0 == k }) { kv[i].1 = v } else { kv.append((k, v)) }
        }
        func u32(_ k: String, _ v: Int) { kv.append((k, .u32(UInt32(v)))) }
        u32(arch + ".block_count", c.layerCount)
        u32(arch + ".context_length", c.maxPositionEmbeddings)
        u32(arch + ".embedding_length", c.hiddenSize)
        u32(arch + ".feed_forward_length", c.intermediateSize)
        u32(arch + ".attention.head_count", c.headCount)
        u32(arch + ".attention.head_count_kv", c.kvHeadCount)
        kv.append((arch + ".rope.freq_base", .f32(Float(c.ropeTheta))))
        kv.append((arch + ".attention.layer_norm_rms_epsilon", .f32(c.rmsNormEps)))
        if case .linear(let f) = c.ropeScaling {
            kv.append((arch + ".rope.scaling.type", .string("linear")))
            kv.append((arch + ".rope.scaling.factor", .f32(Float(f))))
        }
        u32("general.file_type", 2)  // LLAMA_FTYPE_MOSTLY_Q4_0
        if arch == "llama" {
            // (llama.cpp's converter writes these two for its LlamaModel only.)
            u32(arch + ".vocab_size", c.vocabSize)
            u32(arch + ".rope.dimension_count", c.headDim)
        }
        if c.headDim != c.hiddenSize / c.headCount || arch == "gemma3" {
            u32(arch + ".attention.key_length", c.headDim)
            u32(arch + ".attention.value_length", c.headDim)
        }
        if arch == "gemma3", let w = c.slidingWindow { u32(arch + ".attention.sliding_window", w) }
        kv += try GGUFTokenizer.keyValues(src)
        u32("general.quantization_version", 2)
        let meta = src.packed.metadata
        kv.append(("fireq.recipe", .string(meta["fireq.recipe"] ?? "")))
        kv.append(("fireq.source_model_sha256", .string(meta["fireq.source_model_sha256"] ?? "")))
        kv.append(("fireq.packed_sha256", .string(try src.packed.contentSHA256())))
        kv.append(("fireq.tool_version", .string(toolVersion)))
        kv.append(("fireq.not_carried", .stringArray(notCarried)))
        kv.append(("fireq.inexact_scale_groups", .u32(UInt32(inexact))))
        return kv
    }

    /// Parses a `--metadata` override file: a JSON object of `general.*` keys.
    public static func overrides(fromJSONFile path: String) throws -> [(String, GGUFValue)] {
        let data: [UInt8]
        do { data = try FileBytes.read(path, limit: FileBytes.smallJSONLimit) } catch {
            throw ExportError(path: path, reason: error.reason)
        }
        let j: JSONValue
        do { j = try JSONParser.parse(data) } catch {
            throw ExportError(path: path, reason: "is not valid JSON (\(error))")
        }
        guard let o = j.objectValue else {
            throw ExportError(path: path, reason: "must hold a JSON object of GGUF keys")
        }
        var out: [(String, GGUFValue)] = []
        for (k, v) in o.pairs {
            guard k.hasPrefix("general."),
                !["general.architecture", "general.file_type", "general.quantization_version", "general.alignment"]
                    .contains(k)
            else {
                throw ExportError(
                    path: path,
                    reason:
                        "key '\(k)' cannot be overridden (only general.* identity keys such as general.name, general.license)"
                )
            }
            switch v {
            case .string(let s): out.append((k, .string(s)))
            case .bool(let b): out.append((k, .bool(b)))
            case .number:
                if let i = v.intValue, i >= 0, i <= Int(UInt32.max) {
                    out.append((k, .u32(UInt32(i))))
                } else if let d = v.doubleValue {
                    out.append((k, .f32(Float(d))))
                }
            case .array(let a):
                let strings = a.compactMap(\.stringValue)
                guard strings.count == a.count else {
                    throw ExportError(path: path, reason: "key '\(k)': arrays must hold strings")
                }
                out.append((k, .stringArray(strings)))
            default:
                throw ExportError(
                    path: path,
                    reason:
                        "key '\(k)' has \(v.kindDescription), expected a string, number, boolean or array of strings")
            }
        }
        return out
    }
}
