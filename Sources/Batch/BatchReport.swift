import Foundation
import JSONSupport
import PackedFormat
import Pipelines
import Reports

/// `fireq batch report`: one row per manifest entry, failures first.
public struct BatchReport: Sendable {
    public struct Row: Sendable {
        public var index: Int
        public var line: Int
        public var id: String
        public var status: String
        public var exitStatus: Int?
        public var message: String?
        public var model: String
        public var out: String
        public var recipe: String
        public var seconds: Double?
        public var stages: [StageTiming] = []
        public var attempt: Int?
        public var host: String?
        public var basePPLAll: Double?, basePPLLlamacpp: Double?
        public var pplAll: Double?, pplLlamacpp: Double?
        public var deltaAll: Double?, deltaLlamacpp: Double?
        public var klMean: Double?, top1: Double?
        public var sourceBytes: Int?, packedBytes: Int?
        public var packedSHA256: String?
        public var report: String?
        public var log: String?
    }

    public var manifest: String
    public var manifestSHA256: String
    public var rows: [Row]
    /// Lines of the manifest that do not parse (they have no row).
    public var problems: [String]

    /// Status order of the table: failures first.
    public static let order = ["failed", "interrupted", "failed-threshold", "running", "not-run", "passed"]

    public init(_ m: BatchManifest) {
        manifest = m.path
        manifestSHA256 = m.sha256
        problems = m.problems
        let fm = FileManager.default
        rows = m.entries.map { e in
            let j = e.job
            var r = Row(
                index: e.index, line: e.line, id: e.id, status: "not-run", model: j.model, out: j.out,
                recipe: j.recipe ?? "(built-in paper recipe)")
            r.sourceBytes = Self.safetensorsBytes(j.model)
            if let s = BatchStatus.read(m.statusPath(e.index)) {
                r.status = s.effectiveStatus
                r.exitStatus = s.exitStatus
                r.message = s.message
                r.seconds = s.seconds
                r.stages = s.stages
                r.attempt = s.attempt
                r.host = s.host
                r.report = s.report
                r.packedSHA256 = s.packedSHA256
                if s.entrySHA256 != e.sha256 {
                    r.message = (r.message.map { $0 + " " } ?? "") + "(recorded for an earlier version of this entry)"
                }
            } else if fm.fileExists(atPath: j.out + "/report.json") {
                r.report = j.out + "/report.json"
            }
            if fm.fileExists(atPath: m.logPath(e.index)) { r.log = m.logPath(e.index) }
            if let rep = r.report, let d = FileBytes.readIfPresent(rep, limit: FileBytes.smallJSONLimit),
                let v = try? JSONParser.parse(d), let mo = v["models"]?.arrayValue?.first
            {
                let b = v["baseline"]
                r.basePPLAll = b?["perplexity_all"]?.doubleValue
                r.basePPLLlamacpp = b?["perplexity_llamacpp"]?.doubleValue
                r.pplAll = mo["perplexity_all"]?.doubleValue
                r.pplLlamacpp = mo["perplexity_llamacpp"]?.doubleValue
                r.deltaAll = mo["delta_perplexity_all_percent"]?.doubleValue
                r.deltaLlamacpp = mo["delta_perplexity_llamacpp_percent"]?.doubleValue
                r.klMean = mo["kl_mean"]?.doubleValue
                r.top1 = mo["top1_agreement"]?.doubleValue
                r.packedSHA256 = r.packedSHA256 ?? mo["packed_file_sha256"]?.stringValue
                let packed = parentFolder(rep) + (r.status == "passed" ? "" : "/packed")
                let sizes = PackedModel.weightFileNames(in: packed).compactMap {
                    (try? fm.attributesOfItem(atPath: packed + "/" + $0))?[.size] as? Int
                }
                r.packedBytes = sizes.isEmpty ? nil : sizes.reduce(0, +)
            }
            return r
        }
        rows.sort { a, b in
            let ia = Self.order.firstIndex(of: a.status) ?? 0, ib = Self.order.firstIndex(of: b.status) ?? 0
            return (ia, a.index) < (ib, b.index)
        }
    }

    static func safetensorsBytes(_ dir: String) -> Int? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return nil }
        let sizes = names.filter { $0.hasSuffix(".safetensors") }.compactMap {
            (try? FileManager.default.attributesOfItem(atPath: dir + "/" + $0))?[.size] as? Int
        }
        return sizes.isEmpty ? nil : sizes.reduce(0, +)
    }

    public var counts: [(String, Int)] {
        Self.order.compactMap { s in
            let n = rows.filter { $0.status == s }.count
            return n > 0 ? (s, n) : nil
        }
    }

    // MARK: JSON

    public func json() -> JSONValue {
        func opt(_ k: String, _ v: Double?) -> [(String, JSONValue)] { v.map { [(k, .double($0))] } ?? [] }
        func opt(_ k: String, _ v: Int?) -> [(String, JSONValue)] { v.map { [(k, .int($0))] } ?? [] }
        func opt(_ k: String, _ v: String?) -> [(String, JSONValue)] { v.map { [(k, .string($0))] } ?? [] }
        let entries: [JSONValue] = rows.map { r in
            var o: [(String, JSONValue)] = [
                ("index", .int(r.index)), ("line", .int(r.line)), ("id", .string(r.id)), ("status", .string(r.status))
            ]
            o += opt("exit_status", r.exitStatus) + opt("message", r.message)
            o += [("model", .string(r.model)), ("out", .string(r.out)), ("recipe", .string(r.recipe))]
            o += opt("attempt", r.attempt) + opt("host", r.host) + opt("seconds", r.seconds)
            if !r.stages.isEmpty {
                o.append(("stages", StageTiming.jsonValue(r.stages)))
            }
            o += opt("baseline_perplexity_all", r.basePPLAll) + opt("baseline_perplexity_llamacpp", r.basePPLLlamacpp)
            o += opt("perplexity_all", r.pplAll) + opt("perplexity_llamacpp", r.pplLlamacpp)
            o +=
                opt("delta_perplexity_all_percent", r.deltaAll)
                + opt("delta_perplexity_llamacpp_percent", r.deltaLlamacpp)
            o += opt("kl_mean", r.klMean) + opt("top1_agreement", r.top1)
            o +=
                opt("source_bytes", r.sourceBytes) + opt("packed_bytes", r.packedBytes)
                + opt("packed_sha256", r.packedSHA256)
            o += opt("report", r.report) + opt("log", r.log)
            return .object(JSONObject(o))
        }
        return .object(
            JSONObject([
                ("report", .string("fireq-batch")), ("version", .int(1)), ("manifest", .string(manifest)),
                ("manifest_sha256", .string(manifestSHA256)), ("tool_version", .string(FireQVersion.string)),
                ("created", .string(isoNow())),
                ("counts", .object(JSONObject(counts.map { ($0.0, .int($0.1)) }))),
                ("problems", .array(problems.map { .string($0) })),
                ("entries", .array(entries))
            ]))
    }

    // MARK: Markdown and HTML

    static func mb(_ b: Int?) -> String { b.map { fmt(Double($0) / 1e6, 1) + " MB" } ?? "–" }
    static func ppl(_ a: Double?, _ b: Double?) -> String {
        guard let a, let b else { return "–" }
        return fmt(a, 3) + " → " + fmt(b, 3)
    }
    static func pct(_ v: Double?) -> String { v.map { signed($0, 2) + " %" } ?? "–" }
    static func time(_ r: Row) -> String {
        guard !r.stages.isEmpty else { return r.seconds.map { fmt($0, 0) + " s" } ?? "–" }
        return r.stages.map { "\($0.name) \(fmt($0.seconds, 0))\($0.skipped ? "*" : "")" }.joined(separator: ", ")
    }

    /// `target` relative to folder `from` (both made absolute), for links that survive moving the tree.
    static func relative(_ target: String, from: String) -> String {
        let t = canonicalPath(target).split(separator: "/"), f = canonicalPath(from).split(separator: "/")
        var i = 0
        while i < t.count && i < f.count && t[i] == f[i] { i += 1 }
        let up = Array(repeating: "..", count: f.count - i)
        return (up + t[i...].map(String.init)).joined(separator: "/")
    }

    static func htmlLink(_ r: Row) -> String? {
        r.report.map { parentFolder($0) + "/report.html" }
    }

    public func markdown(base: String) -> String {
        let dir = parentFolder(base)
        var s = "# fireq batch: \(manifest)\n\n"
        s += "Manifest sha256 `\(manifestSHA256)`, tool \(FireQVersion.string). "
        s += counts.map { "\($0.1) \($0.0)" }.joined(separator: ", ") + ".\n\n"
        s += "Perplexities: FP32 source → quantized, on each entry's held-out smoke windows; “all” scores every token, "
        s +=
            "“llama.cpp” the second half of each window. Times per stage in seconds (* = found up to date, time of the run that made it).\n\n"
        s +=
            "| # | id | status | Δppl all | Δppl llama.cpp | ppl all | ppl llama.cpp | KL mean | top-1 | size | time | report |\n"
        s += "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        for r in rows {
            let link = Self.htmlLink(r).map { "[report](\(Self.relative($0, from: dir)))" } ?? "–"
            let logLink = r.log.map { " · [log](\(Self.relative($0, from: dir)))" } ?? ""
            s +=
                "| \(r.index) | \(r.id) | \(r.status) | \(Self.pct(r.deltaAll)) | \(Self.pct(r.deltaLlamacpp)) | \(Self.ppl(r.basePPLAll, r.pplAll)) | "
            s +=
                "\(Self.ppl(r.basePPLLlamacpp, r.pplLlamacpp)) | \(r.klMean.map { fmt($0, 4) } ?? "–") | \(r.top1.map { fmt(100 * $0, 1) + " %" } ?? "–") | "
            s += "\(Self.mb(r.sourceBytes)) → \(Self.mb(r.packedBytes)) | \(Self.time(r)) | \(link)\(logLink) |\n"
        }
        let failures = rows.filter { $0.message != nil }
        if !failures.isEmpty {
            s += "\n## Messages\n\n"
            for r in failures { s += "* entry \(r.index) (line \(r.line), \(r.id)), \(r.status): \(r.message!)\n" }
        }
        if !problems.isEmpty {
            s += "\n## Manifest problems\n\n"
            for p in problems { s += "* \(p)\n" }
        }
        s += "\nEntries: model → out, recipe\n\n"
        for r in rows.sorted(by: { $0.index < $1.index }) {
            s +=
                "* \(r.index): \(r.model) → \(r.out), \(r.recipe)\(r.packedSHA256.map { ", packed sha256 `\($0)`" } ?? "")\n"
        }
        return s
    }

    public func html(base: String) -> String {
        let dir = parentFolder(base)
        var s = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><title>fireq batch: \(esc(manifest))</title>
            <style>
            body{font-family:system-ui,sans-serif;margin:2em;color:#222}
            table{border-collapse:collapse;font-size:14px}
            th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
            td.l,th.l{text-align:left}
            th{background:#f3f3f3;cursor:pointer}
            tr.failed td,tr.interrupted td{background:#fde2e2}
            tr.failed-threshold td{background:#fff1d6}
            tr.running td,tr.not-run td{background:#eef3fb}
            tr:target td{outline:2px solid #3465a4}
            .small{font-size:12px;color:#555}
            </style></head><body>
            <h1>fireq batch</h1>
            <p class="small">Manifest \(esc(manifest)), sha256 \(esc(manifestSHA256)); fireq \(FireQVersion.string).
            \(esc(counts.map { "\($0.1) \($0.0)" }.joined(separator: ", "))). Perplexities: FP32 source → quantized on each entry's
            held-out smoke windows (“all”: every token; “llama.cpp”: second half of each window). Click a column to sort;
            each row is addressable as #entry-INDEX.</p>
            <table id="t"><thead><tr>
            """
        let heads: [(String, Bool)] = [
            ("#", false), ("id", true), ("status", true), ("Δppl all", false), ("Δppl llama.cpp", false),
            ("ppl all", false), ("ppl llama.cpp", false), ("KL mean", false), ("top-1", false),
            ("source MB", false), ("packed MB", false), ("seconds", false), ("links", true), ("message", true)
        ]
        s += heads.map { "<th class=\"\($0.1 ? "l" : "")\">\(esc($0.0))</th>" }.joined() + "</tr></thead><tbody>\n"
        func num(_ v: Double?, _ text: String) -> String {
            "<td data-v=\"\(v.map { fmt($0, 6) } ?? "")\">\(esc(text))</td>"
        }
        for r in rows {
            var links: [String] = []
            if let h = Self.htmlLink(r) { links.append("<a href=\"\(esc(Self.relative(h, from: dir)))\">report</a>") }
            if let l = r.log { links.append("<a href=\"\(esc(Self.relative(l, from: dir)))\">log</a>") }
            s += "<tr id=\"entry-\(r.index)\" class=\"\(esc(r.status))\">"
            s +=
                num(Double(r.index), "\(r.index)")
                + "<td class=\"l\">\(esc(r.id))</td><td class=\"l\">\(esc(r.status))</td>"
            s += num(r.deltaAll, Self.pct(r.deltaAll)) + num(r.deltaLlamacpp, Self.pct(r.deltaLlamacpp))
            s +=
                num(r.pplAll, Self.ppl(r.basePPLAll, r.pplAll))
                + num(r.pplLlamacpp, Self.ppl(r.basePPLLlamacpp, r.pplLlamacpp))
            s +=
                num(r.klMean, r.klMean.map { fmt($0, 4) } ?? "–")
                + num(r.top1, r.top1.map { fmt(100 * $0, 1) + " %" } ?? "–")
            s += num(r.sourceBytes.map(Double.init), r.sourceBytes.map { fmt(Double($0) / 1e6, 1) } ?? "–")
            s += num(r.packedBytes.map(Double.init), r.packedBytes.map { fmt(Double($0) / 1e6, 1) } ?? "–")
            s +=
                "<td data-v=\"\(r.seconds.map { fmt($0, 3) } ?? "")\" title=\"\(esc(Self.time(r)))\">\(r.seconds.map { fmt($0, 0) } ?? "–")</td>"
            s +=
                "<td class=\"l\">\(links.joined(separator: " · "))</td><td class=\"l\">\(esc(r.message ?? ""))</td></tr>\n"
        }
        s += "</tbody></table>\n"
        if !problems.isEmpty {
            s += "<h2>Manifest problems</h2><ul>" + problems.map { "<li>\(esc($0))</li>" }.joined() + "</ul>\n"
        }
        s += """
            <script>
            document.querySelectorAll('#t th').forEach(function(th, c) {
              th.addEventListener('click', function() {
                var tb = document.querySelector('#t tbody'), rows = Array.from(tb.rows), up = th.dataset.dir !== 'up';
                th.dataset.dir = up ? 'up' : 'down';
                rows.sort(function(a, b) {
                  var x = a.cells[c], y = b.cells[c], vx = x.dataset.v, vy = y.dataset.v, r;
                  if (vx !== undefined && vy !== undefined) { r = (vx === '' ? Infinity : +vx) - (vy === '' ? Infinity : +vy); }
                  else { r = x.textContent.localeCompare(y.textContent); }
                  return up ? r : -r;
                });
                rows.forEach(function(r) { tb.appendChild(r); });
              });
            });
            </script>
            </body></html>

            """
        return s
    }

    /// Writes BASE.json, BASE.md and BASE.html, each atomically.
    public func write(base: String) throws {
        let dir = parentFolder(base)
        guard FileManager.default.isWritableFile(atPath: dir) else {
            throw PipelineError(
                "\(base): cannot write the report: the folder '\(dir)' does not exist or is not writable.")
        }
        for (path, text) in [
            (base + ".json", JSONWriter.pretty(json()) + "\n"), (base + ".md", markdown(base: base)),
            (base + ".html", html(base: base))
        ] {
            try writeAtomically(text, to: path)
        }
    }
}
