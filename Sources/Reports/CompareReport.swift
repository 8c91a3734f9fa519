import CFireQKernels
import Evaluation
import Foundation
import JSONSupport
import TensorStore

/// Where a compared model came from: what a reader needs to reproduce the number.
public struct ModelProvenance: Sendable {
    public var label: String
    public var path: String
    /// "fp32-reference" or "int4-fp8-runtime".
    public var engine: String
    /// Identity fields in display order (model_sha256, recipe, recipe_sha256, stats_sha256, …).
    public var fields: [(String, String)]
    public init(label: String, path: String, engine: String, fields: [(String, String)]) {
        self.label = label; self.path = path; self.engine = engine; self.fields = fields
    }
}

/// The machine and tool a report was measured with.
public struct ReportEnvironment: Sendable {
    public var toolVersion: String
    public var created: String
    public var cpu: String
    public var cores: Int
    public var isa: String
    public var os: String
    public var threads: Int

    /// This process's machine (CPU model from /proc/cpuinfo, ISA level the kernels dispatch to).
    public static func current(toolVersion: String, threads: Int) -> ReportEnvironment {
        var cpu = "unknown CPU"
        if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = info.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
            let colon = line.firstIndex(of: ":")
        {
            cpu = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let isa = ["portable C", "AVX2+FMA", "AVX-512"][Int(max(0, min(2, fq_isa_level())))]
        let v = ProcessInfo.processInfo.operatingSystemVersion
        let f = ISO8601DateFormatter()
        return ReportEnvironment(
            toolVersion: toolVersion, created: f.string(from: Date()), cpu: cpu,
            cores: ProcessInfo.processInfo.activeProcessorCount, isa: isa,
            os: "Linux \(v.majorVersion).\(v.minorVersion).\(v.patchVersion)", threads: threads)
    }
}

/// A pass/fail rule on the loss (used by `fireq convert`'s smoke evaluation).
public struct LossThreshold: Sendable {
    public var maxDeltaPerplexityPercent: Double
    public var passed: Bool
    public init(maxDeltaPerplexityPercent: Double, passed: Bool) {
        self.maxDeltaPerplexityPercent = maxDeltaPerplexityPercent; self.passed = passed
    }
}

/// What a quantization cost, as JSON, Markdown and a self-contained HTML page with SVG charts.
public struct CompareReport: Sendable {
    public var title: String
    public var result: CompareResult
    public var textPath: String
    public var textSHA256: String
    public var baseline: ModelProvenance
    public var models: [ModelProvenance]
    public var environment: ReportEnvironment
    public var threshold: LossThreshold?
    public var notes: [String]

    public init(
        title: String, result: CompareResult, textPath: String, textSHA256: String, baseline: ModelProvenance,
        models: [ModelProvenance], environment: ReportEnvironment, threshold: LossThreshold? = nil, notes: [String] = []
    ) {
        precondition(models.count == result.models.count)
        self.title = title; self.result = result; self.textPath = textPath; self.textSHA256 = textSHA256
        self.baseline = baseline; self.models = models; self.environment = environment; self.threshold = threshold;
        self.notes = notes
    }

    var scoring: PerplexityProtocol { result.scoring }
    var basePPL: Double { result.baseline.perplexity(scoring) }

    /// Δppl of model i in percent of the baseline's, under the report's protocol.
    public func deltaPercent(_ i: Int) -> Double { (result.models[i].perplexity(scoring) / basePPL - 1) * 100 }

    // MARK: JSON

    public func json() -> JSONValue {
        func prov(_ p: ModelProvenance) -> [(String, JSONValue)] {
            [("label", .string(p.label)), ("path", .string(p.path)), ("engine", .string(p.engine))]
                + p.fields.map { ($0.0, .string($0.1)) }
        }
        func ppl(_ s: ModelScores) -> [(String, JSONValue)] {
            [
                ("perplexity", .double(s.perplexity(scoring))), ("mean_nll", .double(s.meanNLL(scoring))),
                ("perplexity_all", .double(s.perplexity(.all))),
                ("perplexity_llamacpp", .double(s.perplexity(.llamacpp))),
                ("window_mean_nll", .array(s.windowNLL.map { .double($0) })), ("seconds", .double(s.seconds)),
                ("tokens_per_second", .double(s.seconds > 0 ? Double(result.windows * result.context) / s.seconds : 0))
            ]
        }
        let r = result
        var models: [JSONValue] = []
        for (i, s) in r.models.enumerated() {
            let d = s.perplexity(scoring) - basePPL
            let dAll = (s.perplexity(.all) / r.baseline.perplexity(.all) - 1) * 100
            let dHalf = (s.perplexity(.llamacpp) / r.baseline.perplexity(.llamacpp) - 1) * 100
            var fields: [(String, JSONValue)] = prov(self.models[i])
            fields += ppl(s)
            fields.append(("delta_perplexity", .double(d)))
            fields.append(("delta_perplexity_percent", .double(deltaPercent(i))))
            fields.append(("delta_perplexity_all_percent", .double(dAll)))
            fields.append(("delta_perplexity_llamacpp_percent", .double(dHalf)))
            fields.append(("kl_mean", .double(s.klMean ?? 0)))
            fields.append(("kl_p99", .double(s.klP99 ?? 0)))
            fields.append(("top1_agreement", .double(s.top1Agreement ?? 0)))
            fields.append(("layer_relative_error", .array(s.layerRelativeError.map { JSONValue.double($0) })))
            fields.append(("layer_isolated_error", .array(s.layerIsolatedError.map { JSONValue.double($0) })))
            models.append(.object(JSONObject(fields)))
        }
        var top: [(String, JSONValue)] = [
            ("report", .string("fireq-compare")), ("title", .string(title)),
            ("tool_version", .string(environment.toolVersion)), ("created", .string(environment.created)),
            (
                "machine",
                .object(
                    JSONObject([
                        ("cpu", .string(environment.cpu)), ("cores", .int(environment.cores)),
                        ("isa", .string(environment.isa)), ("os", .string(environment.os))
                    ]))
            ),
            ("threads", .int(environment.threads)),
            (
                "protocol",
                .object(
                    JSONObject([
                        ("text", .string(textPath)), ("text_sha256", .string(textSHA256)),
                        ("text_tokens", .int(r.textTokens)),
                        ("context", .int(r.context)), ("windows", .int(r.windows)),
                        ("scoring", .string(r.scoring.rawValue)),
                        ("bos", .bool(r.bos)), ("scored_tokens_all", .int(r.scoredTokensAll)),
                        ("scored_tokens_llamacpp", .int(r.scoredTokensLlamacpp)),
                        ("kl", .string("KL(baseline ‖ model) in nats per scored token")),
                        (
                            "layer_error",
                            .string(
                                "‖h − h_baseline‖ / ‖h_baseline‖ of the residual stream after each decoder layer, all tokens"
                            )
                        ),
                        (
                            "layer_isolated_error",
                            .string(
                                "each layer alone on the baseline's input to it: ‖out − out_baseline‖ / ‖out_baseline − in‖"
                            )
                        )
                    ]))
            ),
            ("baseline", .object(JSONObject(prov(baseline) + ppl(r.baseline)))),
            ("models", .array(models))
        ]
        if let t = threshold {
            top.append(
                (
                    "threshold",
                    .object(
                        JSONObject([
                            ("max_delta_perplexity_percent", .double(t.maxDeltaPerplexityPercent)),
                            ("passed", .bool(t.passed))
                        ]))
                ))
        }
        if !notes.isEmpty { top.append(("notes", .array(notes.map { .string($0) }))) }
        return .object(JSONObject(top))
    }

    // MARK: Markdown

    public func markdown() -> String {
        let r = result
        var o = "# \(title)\n\n"
        if let t = threshold {
            o +=
                t.passed
                ? "**PASSED**: Δppl within \(fmt(t.maxDeltaPerplexityPercent, 1)) % of the baseline.\n\n"
                : "**FAILED**: Δppl exceeds the threshold of \(fmt(t.maxDeltaPerplexityPercent, 1)) % of the baseline.\n\n"
        }
        o +=
            "Protocol: `\(textPath)` (sha256 `\(textSHA256.prefix(16))…`, \(r.textTokens) tokens), \(r.windows) non-overlapping windows of \(r.context) tokens"
        o += r.bos ? " (BOS first)" : " (no BOS)"
        o +=
            "; perplexity over \(r.scoring == .all ? "every predicted token" : "the second half of each window (llama.cpp)"). "
        o +=
            "KL is KL(baseline ‖ model) in nats per scored token; layer error is ‖h − h_base‖ / ‖h_base‖ of the residual stream.\n\n"
        let t = table()
        o +=
            "| " + t.header.joined(separator: " | ") + " |\n|---|---|"
            + String(repeating: "---:|", count: t.header.count - 2) + "\n"
        for row in t.rows { o += "| " + row.joined(separator: " | ") + " |\n" }
        for (title, key, note) in Self.layerMetrics {
            let L = r.models.first?[keyPath: key].count ?? 0
            guard L > 0 else { continue }
            o += "\n## \(title)\n\n\(note)\n\n| layer | " + models.map(\.label).joined(separator: " | ") + " |\n"
            o += "|---:|" + String(repeating: "---:|", count: models.count) + "\n"
            for l in 0..<L {
                o +=
                    "| \(l) | "
                    + r.models.map { $0[keyPath: key].count > l ? fmt($0[keyPath: key][l], 4) : "–" }.joined(
                        separator: " | ") + " |\n"
            }
        }
        o += "\n## Provenance\n\n"
        for p in [baseline] + models {
            o += "* **\(p.label)** — `\(p.path)`, \(p.engine)" + p.fields.map { ", \($0.0) `\($0.1)`" }.joined() + "\n"
        }
        o +=
            "\nfireq \(environment.toolVersion), \(environment.created); \(environment.cpu), \(environment.cores) cores, kernels \(environment.isa), \(environment.threads) threads, \(environment.os).\n"
        for n in notes { o += "\n> \(n)\n" }
        return o
    }

    // MARK: HTML

    static let palette = [
        "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"
    ]

    public func html() -> String {
        let r = result
        var o = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>\(esc(title))</title>
            <style>
            body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
            table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px}
            td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}
            .pass{background:#e6f4ea;border:1px solid #2ca02c;padding:.6em 1em}.fail{background:#fdecea;border:1px solid #d62728;padding:.6em 1em}
            code{font-size:12px}svg text{font-family:system-ui,sans-serif}.small{color:#555;font-size:13px}
            </style></head><body>
            <h1>\(esc(title))</h1>

            """
        if let t = threshold {
            o +=
                t.passed
                ? "<p class=\"pass\"><b>PASSED</b>: Δppl within \(fmt(t.maxDeltaPerplexityPercent, 1)) % of the baseline.</p>\n"
                : "<p class=\"fail\"><b>FAILED</b>: Δppl exceeds the threshold of \(fmt(t.maxDeltaPerplexityPercent, 1)) % of the baseline.</p>\n"
        }
        o +=
            "<p class=\"small\">\(esc(textPath)) (\(r.textTokens) tokens), \(r.windows) windows × \(r.context) tokens, scoring “\(r.scoring.rawValue)”\(r.bos ? ", BOS first" : ""). KL = KL(baseline ‖ model), nats per token.</p>\n"
        o += "<h2>Perplexity per method</h2>\n" + perplexityChart()
        let t = table()
        o += "<table><tr>" + t.header.map { "<th>\(esc($0))</th>" }.joined() + "</tr>\n"
        for row in t.rows {
            o +=
                "<tr>"
                + row.enumerated().map {
                    $0.offset < 2 ? "<td>\(esc($0.element))</td>" : "<td class=n>\($0.element)</td>"
                }.joined() + "</tr>\n"
        }
        o += "</table>\n"
        for (title, key, note) in Self.layerMetrics where (r.models.first?[keyPath: key].count ?? 0) > 0 {
            o += "<h2>\(esc(title))</h2>\n<p class=\"small\">\(esc(note))</p>\n" + layerChart(key)
        }
        o += "<h2>Provenance</h2>\n<table><tr><th>model</th><th>path</th><th>identity</th></tr>\n"
        for p in [baseline] + models {
            o +=
                "<tr><td>\(esc(p.label))</td><td><code>\(esc(p.path))</code><br>\(p.engine)</td><td>"
                + p.fields.map { "\(esc($0.0)): <code>\(esc($0.1))</code>" }.joined(separator: "<br>") + "</td></tr>\n"
        }
        o +=
            "</table>\n<p class=\"small\">Text sha256 <code>\(textSHA256)</code>. fireq \(esc(environment.toolVersion)), \(esc(environment.created)); \(esc(environment.cpu)), \(environment.cores) cores, kernels \(environment.isa), \(environment.threads) threads, \(esc(environment.os)).</p>\n"
        for n in notes { o += "<p class=\"small\">\(esc(n))</p>\n" }
        return o + "</body></html>\n"
    }

    /// The summary table: both protocols' perplexities and Δ, KL and top-1 over the `scoring` tokens.
    func table() -> (header: [String], rows: [[String]]) {
        let r = result
        let header = [
            "model", "engine", "ppl (all)", "Δ (all)", "ppl (llamacpp)", "Δ (llamacpp)",
            "KL mean (\(r.scoring.rawValue))", "KL p99", "top-1 agree", "tokens/s"
        ]
        func tps(_ s: ModelScores) -> String { s.seconds > 0 ? fmt(Double(r.windows * r.context) / s.seconds, 0) : "–" }
        let b = r.baseline
        var rows = [
            [
                baseline.label + " (baseline)", baseline.engine, fmt(b.perplexity(.all), 4), "–",
                fmt(b.perplexity(.llamacpp), 4), "–",
                "–", "–", "–", tps(b)
            ]
        ]
        for (i, s) in r.models.enumerated() {
            rows.append([
                models[i].label, models[i].engine,
                fmt(s.perplexity(.all), 4), signed((s.perplexity(.all) / b.perplexity(.all) - 1) * 100, 1) + " %",
                fmt(s.perplexity(.llamacpp), 4),
                signed((s.perplexity(.llamacpp) / b.perplexity(.llamacpp) - 1) * 100, 1) + " %",
                fmt(s.klMean ?? 0, 4), fmt(s.klP99 ?? 0, 3), fmt(100 * (s.top1Agreement ?? 0), 1) + " %", tps(s)
            ])
        }
        return (header, rows)
    }

    /// Horizontal bars: perplexity of the baseline and each model under the report's protocol.
    func perplexityChart() -> String {
        let rows =
            [(baseline.label + " (baseline)", result.baseline.perplexity(scoring))]
            + result.models.enumerated().map { (models[$0.offset].label, $0.element.perplexity(scoring)) }
        let top = max(rows.map(\.1).max() ?? 1, 1e-9)
        let labelW = 250.0, barW = 540.0, rowH = 26.0, width = labelW + barW + 150
        let height = rowH * Double(rows.count) + 10
        var s =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"perplexity per method\">\n"
        for (i, (label, v)) in rows.enumerated() {
            let y = 5 + Double(i) * rowH, w = barW * v / top
            let color = i == 0 ? "#7f7f7f" : Self.palette[(i - 1) % Self.palette.count]
            s +=
                "<text x=\"\(Int(labelW - 8))\" y=\"\(fmt(y + 17, 1))\" text-anchor=\"end\" font-size=\"13\">\(esc(label))</text>"
            s +=
                "<rect x=\"\(Int(labelW))\" y=\"\(fmt(y + 3, 1))\" width=\"\(fmt(w, 1))\" height=\"\(fmt(rowH - 8, 1))\" fill=\"\(color)\"/>"
            var text = fmt(v, 3)
            if i > 0 { text += " (" + signed((v / result.baseline.perplexity(scoring) - 1) * 100, 1) + " %)" }
            s += "<text x=\"\(fmt(labelW + w + 6, 1))\" y=\"\(fmt(y + 17, 1))\" font-size=\"12\">\(text)</text>\n"
        }
        return s + "</svg>\n"
    }

    /// The per-layer views: (title, values, what they mean).
    static let layerMetrics: [(String, KeyPath<ModelScores, [Double]> & Sendable, String)] = [
        (
            "Where the loss comes from: error each layer adds on its own", \ModelScores.layerIsolatedError,
            "Each decoder layer of the model run alone on the baseline's input to that layer: ‖out − out_baseline‖ / ‖out_baseline − in‖, the layer's own error relative to what it adds to the residual stream."
        ),
        (
            "Relative error of the residual stream after each layer", \ModelScores.layerRelativeError,
            "The whole model: ‖h − h_baseline‖ / ‖h_baseline‖ after each layer (errors accumulate; a layer that makes the stream's norm jump makes the ratio drop)."
        )
    ]

    /// One polyline per model of a per-layer metric.
    func layerChart(_ key: KeyPath<ModelScores, [Double]>) -> String {
        let L = result.models.first?[keyPath: key].count ?? 0
        guard L > 0 else { return "<p>No models compared.</p>\n" }
        let maxErr = max(result.models.flatMap { $0[keyPath: key] }.max() ?? 0, 1e-9)
        let yTop = niceCeiling(maxErr)
        let left = 60.0, right = 20.0, topM = 10.0, bottom = 40.0, plotW = 760.0, plotH = 280.0
        let width = left + plotW + right, legendH = 20.0 * Double(result.models.count)
        let height = topM + plotH + bottom + legendH
        func x(_ l: Int) -> Double { left + (L == 1 ? plotW / 2 : plotW * Double(l) / Double(L - 1)) }
        func y(_ v: Double) -> Double { topM + plotH * (1 - v / yTop) }
        var s =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"relative error per layer\">\n"
        for t in 0...5 {
            let v = yTop * Double(t) / 5
            s +=
                "<line x1=\"\(Int(left))\" x2=\"\(Int(left + plotW))\" y1=\"\(fmt(y(v), 1))\" y2=\"\(fmt(y(v), 1))\" stroke=\"#e5e5e5\"/>"
            s +=
                "<text x=\"\(Int(left - 6))\" y=\"\(fmt(y(v) + 4, 1))\" text-anchor=\"end\" font-size=\"11\">\(fmt(v, 3))</text>\n"
        }
        let step = max(1, L / 15)
        for l in stride(from: 0, to: L, by: step) {
            s +=
                "<text x=\"\(fmt(x(l), 1))\" y=\"\(fmt(topM + plotH + 15, 1))\" text-anchor=\"middle\" font-size=\"11\">\(l)</text>"
        }
        s +=
            "<text x=\"\(fmt(left + plotW / 2, 1))\" y=\"\(fmt(topM + plotH + 32, 1))\" text-anchor=\"middle\" font-size=\"12\">decoder layer</text>\n"
        s +=
            "<line x1=\"\(Int(left))\" x2=\"\(Int(left))\" y1=\"\(Int(topM))\" y2=\"\(Int(topM + plotH))\" stroke=\"#444\"/>"
        s +=
            "<line x1=\"\(Int(left))\" x2=\"\(Int(left + plotW))\" y1=\"\(Int(topM + plotH))\" y2=\"\(Int(topM + plotH))\" stroke=\"#444\"/>\n"
        for (i, m) in result.models.enumerated() {
            let color = Self.palette[i % Self.palette.count]
            let pts = m[keyPath: key].enumerated().map { "\(fmt(x($0.offset), 1)),\(fmt(y($0.element), 1))" }.joined(
                separator: " ")
            s += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(pts)\"/>\n"
            let ly = topM + plotH + bottom + 20 * Double(i) + 12
            s += "<rect x=\"\(Int(left))\" y=\"\(fmt(ly - 9, 1))\" width=\"14\" height=\"10\" fill=\"\(color)\"/>"
            s +=
                "<text x=\"\(Int(left + 20))\" y=\"\(fmt(ly, 1))\" font-size=\"12\">\(esc(models[i].label)) (last layer \(fmt(m[keyPath: key].last ?? 0, 3)), largest \(fmt(m[keyPath: key].max() ?? 0, 3)) at layer \(m[keyPath: key].indices.max { m[keyPath: key][$0] < m[keyPath: key][$1] } ?? 0))</text>\n"
        }
        return s + "</svg>\n"
    }

    // MARK: Files

    /// Writes `<base>.json`, `<base>.md` and `<base>.html`, each atomically.
    public func write(base: String) throws {
        let files = [(base + ".json", JSONWriter.pretty(json())), (base + ".md", markdown()), (base + ".html", html())]
        for (path, text) in files {
            try AtomicFile.write(to: path) { (h) throws(TensorStoreError) in try h.write(Data(text.utf8), path: path) }
        }
    }
}

public func fmt(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }
public func signed(_ v: Double, _ digits: Int) -> String { (v >= 0 ? "+" : "") + fmt(v, digits) }
public func esc(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}
/// The smallest of 1, 2, 2.5, 5 × 10^k not below v.
func niceCeiling(_ v: Double) -> Double {
    let e = pow(10, floor(log10(v)))
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] where m * e >= v { return m * e }
    return 10 * e
}

public struct ReportError: Error, CustomStringConvertible {
    public let description: String
}

extension CompareReport {
    /// Reads back a report written by `json()` (to re-render it, e.g. after a tool upgrade).
    public init(json j: JSONValue, path: String) throws {
        func need<T>(_ v: T?, _ key: String) throws -> T {
            guard let v else {
                throw ReportError(
                    description: "\(path): the report has no valid '\(key)'; it is not a fireq-compare report.")
            }
            return v
        }
        guard j["report"]?.stringValue == "fireq-compare" else {
            throw ReportError(
                description: "\(path): not a fireq-compare report (key 'report' is not \"fireq-compare\").")
        }
        let p = try need(j["protocol"]?.objectValue, "protocol")
        let scoring = try need(
            p["scoring"]?.stringValue.flatMap(PerplexityProtocol.init(rawValue:)), "protocol.scoring")
        func scores(_ m: JSONValue, _ key: String) throws -> (ModelScores, ModelProvenance) {
            let all = try need(m["perplexity_all"]?.doubleValue, key + ".perplexity_all")
            let half = try need(m["perplexity_llamacpp"]?.doubleValue, key + ".perplexity_llamacpp")
            let o = try need(m.objectValue, key)
            let reserved: Set = ["label", "path", "engine"]
            let fields = o.pairs.compactMap { kv in
                reserved.contains(kv.key) ? nil : kv.value.stringValue.map { (kv.key, $0) }
            }
            let s = ModelScores(
                name: try need(m["label"]?.stringValue, key + ".label"), meanNLLAll: log(all),
                meanNLLLlamacpp: log(half),
                windowNLL: (m["window_mean_nll"]?.arrayValue ?? []).compactMap(\.doubleValue),
                klMean: m["kl_mean"]?.doubleValue, klP99: m["kl_p99"]?.doubleValue,
                top1Agreement: m["top1_agreement"]?.doubleValue,
                layerRelativeError: (m["layer_relative_error"]?.arrayValue ?? []).compactMap(\.doubleValue),
                seconds: m["seconds"]?.doubleValue ?? 0)
            var scored = s
            scored.layerIsolatedError = (m["layer_isolated_error"]?.arrayValue ?? []).compactMap(\.doubleValue)
            let prov = ModelProvenance(
                label: s.name, path: m["path"]?.stringValue ?? "", engine: m["engine"]?.stringValue ?? "",
                fields: fields)
            return (scored, prov)
        }
        let (bs, bp) = try scores(try need(j["baseline"], "baseline"), "baseline")
        var ms: [ModelScores] = [], mp: [ModelProvenance] = []
        for (i, m) in try need(j["models"]?.arrayValue, "models").enumerated() {
            let (s, pv) = try scores(m, "models[\(i)]")
            ms.append(s); mp.append(pv)
        }
        let result = CompareResult(
            context: try need(p["context"]?.intValue, "protocol.context"),
            windows: try need(p["windows"]?.intValue, "protocol.windows"),
            scoring: scoring, bos: p["bos"]?.boolValue ?? false, textTokens: p["text_tokens"]?.intValue ?? 0,
            scoredTokensAll: p["scored_tokens_all"]?.intValue ?? 0,
            scoredTokensLlamacpp: p["scored_tokens_llamacpp"]?.intValue ?? 0,
            baseline: bs, models: ms)
        let mach = j["machine"]
        let env = ReportEnvironment(
            toolVersion: j["tool_version"]?.stringValue ?? "?", created: j["created"]?.stringValue ?? "?",
            cpu: mach?["cpu"]?.stringValue ?? "?", cores: mach?["cores"]?.intValue ?? 0,
            isa: mach?["isa"]?.stringValue ?? "?",
            os: mach?["os"]?.stringValue ?? "?", threads: j["threads"]?.intValue ?? 0)
        var threshold: LossThreshold? = nil
        if let t = j["threshold"], let mx = t["max_delta_perplexity_percent"]?.doubleValue,
            let ok = t["passed"]?.boolValue
        {
            threshold = LossThreshold(maxDeltaPerplexityPercent: mx, passed: ok)
        }
        self.init(
            title: j["title"]?.stringValue ?? "FireQ quantization report", result: result,
            textPath: p["text"]?.stringValue ?? "?",
            textSHA256: p["text_sha256"]?.stringValue ?? "?", baseline: bp, models: mp, environment: env,
            threshold: threshold,
            notes: (j["notes"]?.arrayValue ?? []).compactMap(\.stringValue))
    }
}
