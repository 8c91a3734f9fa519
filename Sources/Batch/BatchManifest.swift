import Exports
import Foundation
import JSONSupport
import Pipelines
import Quantization
import TensorStore

/// One conversion of a batch: a manifest entry (Formats/batch-manifest.md).
public struct BatchEntry: Sendable {
    /// Position among the entries, from 0 (SLURM_ARRAY_TASK_ID).
    public var index: Int
    /// Line in the manifest file, from 1.
    public var line: Int
    public var id: String
    public var job: ConvertJob
    /// SHA-256 of the entry's canonical JSON (keys sorted, paths resolved) and the tool version.
    public var sha256: String
    /// Every path the entry writes: OUT, its work folder, its exports (canonical).
    var writes: [String]
}

/// A parsed batch manifest: its entries and every problem found (`MANIFEST:LINE: …`).
public struct BatchManifest: Sendable {
    public static let maxBytes = 64 << 20
    public static let maxLineBytes = 1 << 20
    public static let maxEntries = 100_000

    /// The manifest's path as given, its folder (absolute), and the hash of its bytes.
    public let path: String
    public let folder: String
    public let sha256: String
    public private(set) var entries: [BatchEntry] = []
    public private(set) var problems: [String] = []
    /// The file line (from 1) of every entry, valid or not, by index.
    public private(set) var entryLines: [Int] = []

    /// `MANIFEST.fireq-batch`: logs and status records.
    public var stateFolder: String { Self.absolute(path) + ".fireq-batch" }
    public func logPath(_ index: Int) -> String { stateFolder + "/logs/\(index).log" }
    public func statusPath(_ index: Int) -> String { stateFolder + "/status/\(index).json" }

    /// Reads and parses the manifest; structural problems (JSON, keys, types, ranges, duplicate
    /// outputs) land in `problems`. Throws only when the file itself cannot be used.
    public init(path: String) throws {
        self.path = path
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw PipelineError("\(path): cannot read the manifest (\(String(cString: strerror(errno)))).")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw PipelineError("\(path): the manifest is not a regular file.")
        }
        guard Int(st.st_size) <= Self.maxBytes else {
            throw PipelineError(
                "\(path): the manifest has \(st.st_size) bytes, more than the limit of \(Self.maxBytes).")
        }
        let bytes: [UInt8]
        do { bytes = try FileBytes.read(path, limit: Self.maxBytes) } catch {
            throw PipelineError("\(path): cannot read the manifest (\(error.reason)).")
        }
        sha256 = SHA256.hex(bytes)
        folder = parentFolder(Self.absolute(path))
        var lineNo = 0
        var seen: [String: Int] = [:]  // canonical written path → line
        var models: [String: Int] = [:]  // canonical model folder → line
        var start = 0
        while start <= bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
            if start == bytes.count { break }
            lineNo += 1
            let line = bytes[start..<end]
            start = end + 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            let at = "\(path):\(lineNo): "
            guard line.count <= Self.maxLineBytes else {
                problems.append(at + "the line has \(line.count) bytes, more than the limit of \(Self.maxLineBytes).");
                continue
            }
            guard entries.count < Self.maxEntries else {
                problems.append(at + "more than \(Self.maxEntries) entries."); break
            }
            var lineProblems: [String] = []
            entryLines.append(lineNo)
            if let e = parseEntry(line, line: lineNo, index: entryLines.count - 1, problems: &lineProblems) {
                var clashes: Set<Int> = []
                for w in e.writes {
                    if let other = seen[w] {
                        if clashes.insert(other).inserted {
                            lineProblems.append(
                                other == lineNo
                                    ? "writes \(w) twice (as its output, work folder or an export)."
                                    : "writes \(w), as line \(other) does.")
                        }
                    } else {
                        seen[w] = lineNo
                    }
                }
                models[canonicalPath(e.job.model)] = models[canonicalPath(e.job.model)] ?? lineNo
                entries.append(e)
            }
            problems += lineProblems.map { at + $0 }
        }
        // An output that is some entry's model folder.
        for e in entries {
            let o = canonicalPath(e.job.out)
            if let l = models[o] {
                problems.append("\(path):\(e.line): \"out\" \(e.job.out) is the model folder of line \(l).")
            }
        }
        problems = byLine(problems)
    }

    private func lineOf(_ p: String) -> Int {
        Int(p.dropFirst(path.count + 1).prefix { $0.isNumber }) ?? 0
    }

    /// Sorted by line, keeping the order within a line.
    private func byLine(_ p: [String]) -> [String] {
        p.enumerated().sorted { (lineOf($0.element), $0.offset) < (lineOf($1.element), $1.offset) }.map(\.element)
    }

    private static func absolute(_ p: String) -> String {
        p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p
    }

    private func resolve(_ p: String) -> String {
        p.hasPrefix("/") ? p : folder + "/" + p
    }

    static let pathKeys: Set = [
        "model", "out", "recipe", "text", "jsonl", "tokens", "eval_text", "gguf_metadata", "work"
    ]
    static let allKeys: [String] = [
        "id", "model", "out", "recipe", "text", "jsonl", "tokens", "generate", "temperature", "top_p",
        "samples", "seq_len", "shuffle", "seed", "eval_text", "eval_context", "eval_windows",
        "max_delta_ppl", "export", "gguf_metadata", "work", "keep_work", "force", "max_shard_size"
    ]

    private func parseEntry(_ bytes: ArraySlice<UInt8>, line: Int, index: Int, problems: inout [String]) -> BatchEntry?
    {
        let start = problems.count
        let value: JSONValue
        do { value = try JSONParser.parse(bytes) } catch {
            problems.append("not valid JSON (\(error)).")
            return nil
        }
        guard let o = value.objectValue else {
            problems.append("an entry must be a JSON object, not \(value.kindDescription).")
            return nil
        }
        let known = Set(Self.allKeys)
        for k in o.keys where !known.contains(k) {
            let near = JSONFields.nearest(k, in: Self.allKeys)
            problems.append("unknown key \"\(k)\"" + (near.map { " (did you mean \"\($0)\"?)" } ?? "") + ".")
        }
        // One strict reader (JSONFields, null refused); every problem of the entry is collected.
        let fields = JSONFields(o, nulls: .refused)
        func read<T>(_ body: () throws(JSONFieldError) -> T?) -> T? {
            do { return try body() } catch {
                problems.append("\"\(error.key)\" \(error.reason).")
                return nil
            }
        }
        func str(_ k: String) -> String? {
            read { () throws(JSONFieldError) in try fields.string(k, nonEmpty: true) }.map {
                Self.pathKeys.contains(k) ? resolve($0) : $0
            }
        }
        func int(_ k: String, min: Int) -> Int? {
            read { () throws(JSONFieldError) in try fields.int(k, in: min...Int.max) }
        }
        func num(_ k: String) -> Double? { read { () throws(JSONFieldError) in try fields.number(k) } }
        func bool(_ k: String) -> Bool? { read { () throws(JSONFieldError) in try fields.bool(k) } }
        let model = str("model"), out = str("out")
        if o["model"] == nil { problems.append("\"model\" is required (the HF checkpoint folder).") }
        if o["out"] == nil { problems.append("\"out\" is required (the output folder).") }
        var job = ConvertJob(model: model ?? "", out: out ?? "")
        job.threads = 1
        job.recipe = str("recipe")
        var c = CalibrationJob()
        c.text = str("text")
        c.jsonl = str("jsonl")
        c.tokens = str("tokens")
        c.generate = bool("generate") ?? false
        if let t = num("temperature") {
            c.temperature = Float(t)
            if !c.generate { problems.append("\"temperature\" applies to \"generate\" only.") }
        }
        if let p = num("top_p") {
            c.topP = Float(p)
            if !c.generate { problems.append("\"top_p\" applies to \"generate\" only.") }
        }
        c.samples = int("samples", min: 1) ?? c.samples
        c.seqLen = int("seq_len", min: 2) ?? c.seqLen
        c.shuffle = bool("shuffle") ?? false
        c.seed = UInt64(int("seed", min: 0) ?? 0)
        job.calibration = c
        job.evalText = str("eval_text")
        job.evalContext = int("eval_context", min: 4) ?? job.evalContext
        job.evalWindows = int("eval_windows", min: 1) ?? job.evalWindows
        if let d = num("max_delta_ppl") {
            if d > 0 { job.maxDeltaPPL = d } else { problems.append("\"max_delta_ppl\" must be positive, not \(d).") }
        }
        if let v = o["export"] {
            let names: [String]
            if let s = v.stringValue {
                names = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            } else if let a = v.arrayValue, a.allSatisfy({ $0.stringValue != nil }) {
                names = a.map { $0.stringValue! }
            } else {
                problems.append(
                    "\"export\" must be a string like \"gguf,mlx\" or an array of strings, not \(v.kindDescription).");
                names = []
            }
            for n in names {
                guard let f = ExportFormat(rawValue: n) else {
                    problems.append(
                        "\"export\": '\(n)' is not one of \(ExportFormat.allCases.map(\.rawValue).joined(separator: ", "))."
                    ); continue
                }
                if job.exports.contains(f) {
                    problems.append("\"export\" names \(n) twice.")
                } else {
                    job.exports.append(f)
                }
            }
        }
        job.ggufMetadata = str("gguf_metadata")
        job.work = str("work")
        job.keepWork = bool("keep_work") ?? false
        job.force = bool("force") ?? false
        if let v = o["max_shard_size"] {
            if let b = v.intValue ?? v.stringValue.flatMap(parseByteSize), b >= 1 << 20 {
                job.maxShardBytes = b
            } else {
                problems.append(
                    "\"max_shard_size\" must be a size of at least 1 MiB (\"5GB\", \"500MB\", \"2GiB\" or bytes), not \(v.show)."
                )
            }
        }
        if model != nil && out != nil {
            do { try job.validate(name: SettingNames.manifestKey) } catch { problems.append(String(describing: error)) }
        }
        guard problems.count == start, let out, model != nil else { return nil }
        let id = str("id") ?? (out as NSString).lastPathComponent

        var canon = JSONObject()
        for k in o.keys.sorted() {
            if Self.pathKeys.contains(k), let s = o[k]?.stringValue {
                canon[k] = .string(resolve(s))
            } else {
                canon[k] = o[k]!
            }
        }
        let text = FireQVersion.string + "\n" + JSONWriter.serialize(.object(canon), sortedKeys: true)
        func canonicalTarget(_ p: String) -> String {
            canonicalPath(parentFolder(p)) + "/" + (p as NSString).lastPathComponent
        }
        let writes = [job.out, job.workFolder] + job.exports.map { job.exportDestination($0) }
        return BatchEntry(
            index: index, line: line, id: id, job: job, sha256: SHA256.hex(Array(text.utf8)),
            writes: writes.map(canonicalTarget))
    }

    /// What the entry reads and writes, checked on disk: folders and files exist and are readable,
    /// the recipe and GGUF metadata parse, OUT can be created. Returns `MANIFEST:LINE: …` lines.
    public func fileProblems(_ e: BatchEntry) -> [String] {
        let fm = FileManager.default
        var p: [String] = []
        var isDir: ObjCBool = false
        let j = e.job
        if !fm.fileExists(atPath: j.model, isDirectory: &isDir) || !isDir.boolValue {
            p.append("\"model\" \(j.model) is not a folder.")
        } else if !fm.isReadableFile(atPath: j.model + "/config.json") {
            p.append("\"model\" \(j.model) has no readable config.json.")
        }
        let files: [(String, String?)] = [
            ("text", j.calibration.text), ("jsonl", j.calibration.jsonl), ("tokens", j.calibration.tokens),
            ("eval_text", j.evalText), ("recipe", j.recipe), ("gguf_metadata", j.ggufMetadata)
        ]
        for (k, f) in files {
            guard let f else { continue }
            if !fm.fileExists(atPath: f, isDirectory: &isDir) || isDir.boolValue {
                p.append("\"\(k)\" \(f) is not a file."); continue
            }
            if !fm.isReadableFile(atPath: f) { p.append("\"\(k)\" \(f) is not readable."); continue }
        }
        if let r = j.recipe, p.allSatisfy({ !$0.hasPrefix("\"recipe\"") }) {
            do { _ = try Recipe.load(r) } catch { p.append("\"recipe\": \(error)") }
        }
        if let g = j.ggufMetadata, p.allSatisfy({ !$0.hasPrefix("\"gguf_metadata\"") }) {
            do { _ = try Exporter.ggufMetadata(fromJSONFile: g) } catch { p.append("\"gguf_metadata\": \(error)") }
        }
        // OUT's nearest existing ancestor must be a writable folder (run-one creates the rest).
        var a = parentFolder(j.out)
        while !fm.fileExists(atPath: a, isDirectory: &isDir) && a != "/" && a != "." { a = parentFolder(a) }
        if !isDir.boolValue {
            p.append("\"out\" \(j.out) cannot be created: \(a) is not a folder.")
        } else if !fm.isWritableFile(atPath: a) {
            p.append("\"out\" \(j.out) cannot be created: \(a) is not writable.")
        }
        return p.map { "\(path):\(e.line): " + $0 }
    }

    /// Every problem of the manifest: structure and, for every entry, the files.
    public func allProblems() -> [String] {
        byLine(problems + entries.flatMap(fileProblems))
    }

    /// The number of entries (non-blank lines), parsed or not: entries that fail to parse still
    /// take an index, so indices are positions among the non-blank lines.
    public var entryCountIncludingInvalid: Int { entryLines.count }
}
