import Batch
import CalibrationStats
import Exports
// One libFuzzer binary, one target per parser of untrusted input (issue #13), chosen by the
// environment variable FIREQ_FUZZ_TARGET (Scripts/fuzz.sh sets it). A target must never crash,
// hang, leak or allocate without bound, whatever the bytes: every parser either accepts the input
// or throws its one-sentence error. Where a parser has a checkable property (a round trip), a
// violation is a crash too (`check`).
import Foundation
import JSONSupport
import LlamaReference
import ModelDescription
import PackedFormat
import Pipelines
import Quantization
import Runtime
import TensorStore
import Tokenizer

/// A property of the parser under test that failed: a finding, like a crash.
func check(_ ok: Bool, _ what: @autoclosure () -> String) {
    if !ok { fatalError("property violated: \(what())") }
}

/// A fresh folder per process under FIREQ_FUZZ_WORK (Scripts/fuzz.sh: a folder in /dev/shm it
/// removes afterwards), else TMPDIR: inputs that parsers take as files are written there, each run
/// overwriting the last.
let workFolder: String = {
    let env = ProcessInfo.processInfo.environment
    let base = env["FIREQ_FUZZ_WORK"] ?? env["TMPDIR"] ?? "/tmp"
    var template = Array("\(base)/fireq-fuzz-XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { fatalError("cannot create a work folder under \(base)") }
    return String(cString: p)
}()

func write(_ bytes: UnsafeBufferPointer<UInt8>, to path: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(fd >= 0, "cannot write \(path)")
    var off = 0
    while off < bytes.count {
        let n = Foundation.write(fd, bytes.baseAddress! + off, bytes.count - off)
        precondition(n > 0, "cannot write \(path)")
        off += n
    }
    close(fd)
}

/// Where the fixed inputs of some targets live (the tiny model's files in Fuzz/fixtures).
let fixtures: String = ProcessInfo.processInfo.environment["FIREQ_FUZZ_FIXTURES"] ?? "Fuzz/fixtures"

func fixture(_ name: String) -> String {
    let p = fixtures + "/" + name
    guard FileManager.default.fileExists(atPath: p) else {
        fatalError("fixture \(p) is missing (set FIREQ_FUZZ_FIXTURES to the repository's Fuzz/fixtures)")
    }
    return p
}

let tinyConfig: ModelConfig = {
    do { return try ModelConfig(directory: fixtures + "/tiny-packed") } catch { fatalError("\(error)") }
}()

// MARK: - Targets

/// JSON: strict parse; whatever parses re-serialises to text that parses to the same value.
func fuzzJSON(_ b: UnsafeBufferPointer<UInt8>) {
    guard let v = try? JSONParser.parse(b) else { return }
    let text = JSONWriter.serialize(v)
    guard let again = try? JSONParser.parse(text) else {
        fatalError("property violated: serialised JSON does not parse: \(text.prefix(200))")
    }
    check(again == v, "JSON round trip changed the value")
    _ = JSONWriter.pretty(v)
}

/// safetensors: header + profile checks, then every floating-point tensor widened.
func fuzzSafetensors(_ b: UnsafeBufferPointer<UInt8>) {
    let path = workFolder + "/model.safetensors"
    write(b, to: path)
    guard let f = try? SafetensorsFile(path: path) else { return }
    var buffer = [Float]()
    for t in f.tensors {
        check(
            t.begin >= 0 && t.end >= t.begin && f.dataOffset + t.end <= Int(b.count),
            "tensor \(t.name) lies outside the file")
        check(
            t.byteCount == t.elementCount * t.dtype.byteSize,
            "tensor \(t.name): byte count differs from shape × dtype size")
        buffer = [Float](repeating: 0, count: t.elementCount)
        _ = try? buffer.withUnsafeMutableBufferPointer { (p) throws(TensorStoreError) in
            if let base = p.baseAddress { try f.readFloat32(t, into: base) }
        }
    }
}

/// A sharded checkpoint's model.safetensors.index.json, next to the tiny model's one shard.
func fuzzShardIndex(_ b: UnsafeBufferPointer<UInt8>) {
    let dir = workFolder + "/sharded"
    if !FileManager.default.fileExists(atPath: dir + "/model-00001-of-00001.safetensors") {
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try! FileManager.default.copyItem(
            atPath: fixture("tiny-model/model-00001-of-00001.safetensors"),
            toPath: dir + "/model-00001-of-00001.safetensors")
    }
    write(b, to: dir + "/model.safetensors.index.json")
    guard let c = try? Checkpoint(directory: dir) else { return }
    for n in c.tensorNames { check(c.info(n) != nil, "listed tensor \(n) has no location") }
}

/// config.json → ModelConfig (every field checked, RoPE scaling variants, families).
func fuzzConfig(_ b: UnsafeBufferPointer<UInt8>) {
    guard let j = try? JSONParser.parse(b), let c = try? ModelConfig(json: j, path: "config.json") else { return }
    check(
        c.hiddenSize > 0 && c.layerCount > 0 && c.headCount > 0 && c.kvHeadCount > 0 && c.headDim > 0
            && c.vocabSize > 0,
        "an accepted config has a non-positive dimension")
    check(c.headCount % c.kvHeadCount == 0, "an accepted config's heads are not a multiple of its KV heads")
    _ = Rope(config: c)
}

/// tokenizer.json loading; a loaded tokenizer encodes a fixed text and decodes ids it owns.
let probeText = "Hello world! 123 456 — ünïcödé 日本語 <|im_start|>user\n\tthe  end  \r\n\u{0}\u{FFFD}"
func fuzzTokenizer(_ b: UnsafeBufferPointer<UInt8>) {
    let path = workFolder + "/tokenizer.json"
    write(b, to: path)
    guard let t = try? Tokenizer(path: path) else { return }
    let ids = t.encode(probeText)
    for id in ids {
        check(
            id >= 0 && Int(id) < t.vocabularySize,
            "encode produced id \(id) outside the vocabulary (\(t.vocabularySize))")
    }
    _ = t.decode(ids)
    _ = t.decode([0, 1, -1, Int32.max, Int32.min])
}

/// The default model's real tokenizer on arbitrary bytes: ids inside the vocabulary, and the
/// byte-level round trip decode(encode(text)) == text whenever every byte of the text has its
/// byte-level symbol in the vocabulary (SmolLM2's lacks a few control bytes such as 0x13; HF
/// tokenizers then drops them too, so the round trip holds only for texts without them).
let realTokenizer: Tokenizer = {
    let path =
        ProcessInfo.processInfo.environment["FIREQ_FUZZ_TOKENIZER"]
        ?? ".cache/models/smollm2-135m-instruct/tokenizer.json"
    do { return try Tokenizer(path: path) } catch {
        fatalError(
            "the tokenize target needs the default model's tokenizer: \(error) (run Scripts/fetch-default-model.sh or set FIREQ_FUZZ_TOKENIZER)"
        )
    }
}()
/// Bytes whose GPT-2 byte-level symbol is not a token of the real tokenizer's vocabulary.
let bytesWithoutToken: Set<UInt8> = {
    let printable = Array(33...126) + Array(161...172) + Array(174...255)
    var symbol = [Int](repeating: 0, count: 256), extra = 0
    for b in 0..<256 {
        if printable.contains(b) { symbol[b] = b } else { symbol[b] = 256 + extra; extra += 1 }
    }
    return Set(
        (0..<256).filter { realTokenizer.id(of: String(Character(Unicode.Scalar(UInt32(symbol[$0]))!))) == nil }.map {
            UInt8($0)
        })
}()
func fuzzTokenize(_ b: UnsafeBufferPointer<UInt8>) {
    let text = String(decoding: b, as: UTF8.self)
    let ids = realTokenizer.encode(text)
    for id in ids {
        check(id >= 0 && Int(id) < realTokenizer.vocabularySize, "encode produced id \(id) outside the vocabulary")
    }
    let back = realTokenizer.decode(ids)
    if !text.utf8.contains(where: { bytesWithoutToken.contains($0) }) {
        check(back == text, "decode(encode(text)) != text for \(Array(text.utf8).prefix(64))")
    }
}

/// Recipes: whatever parses has a canonical form that parses to the same canonical form.
func fuzzRecipe(_ b: UnsafeBufferPointer<UInt8>) {
    guard let r = try? Recipe.parse(Data(b), path: "recipe.json") else { return }
    let canonical = r.canonicalJSON
    guard let again = try? Recipe.parse(Data(canonical.utf8), path: "canonical") else {
        fatalError("property violated: the canonical JSON of an accepted recipe is refused: \(canonical)")
    }
    check(again.canonicalJSON == canonical, "recipe canonical JSON is not a fixed point")
    _ = try? r.groupSize(layer: 0, name: "probe", k: 64)
}

/// A packed folder's model.safetensors (metadata, crc32s, recipe, linears) beside the tiny
/// model's config.json: the packed reader, its verify, the runtime's loader and the exports'
/// reader (all three export formats) whenever the earlier stages accept the file.
func fuzzPacked(_ b: UnsafeBufferPointer<UInt8>) {
    let dir = workFolder + "/packed"
    if !FileManager.default.fileExists(atPath: dir + "/config.json") {
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            try! FileManager.default.copyItem(atPath: fixture("tiny-packed/" + f), toPath: dir + "/" + f)
        }
    }
    write(b, to: dir + "/model.safetensors")
    guard let p = try? PackedModel(directory: dir) else { return }
    _ = p.fp8Rerounding
    for i in 0..<4 { for n in TensorNames.linearNames(layer: i) { _ = try? p.linear(n) } }
    guard (try? p.verify()) != nil else { return }
    guard let m = try? QuantizedModel(directory: dir, threads: 1) else { return }
    _ = m.config
    for format in ExportFormat.allCases {
        _ = try? Exporter.export(
            packedDir: dir, format: format, out: workFolder + "/export-\(format.rawValue)", force: true,
            toolVersion: "fuzz")
    }
}

/// Calibration statistics (HDF5) for the tiny model's shape, as a reader meets them: a mutated
/// file is refused by its integrity block before libhdf5 parses it.
func fuzzStats(_ b: UnsafeBufferPointer<UInt8>) {
    let path = workFolder + "/stats.h5"
    write(b, to: path)
    guard let s = try? StatsFile.read(path, config: tinyConfig) else { return }
    check(s.layers.count == tinyConfig.layerCount, "accepted statistics have \(s.layers.count) layers")
}

/// The same, with every input re-sealed first, so that mutations reach libhdf5 itself (not in
/// `all`: Debian's libhdf5 1.10 crashes on such files inside its own code; Formats/calibration-stats.md).
func fuzzStatsUnsealed(_ b: UnsafeBufferPointer<UInt8>) {
    guard b.count > StatsFile.sealBytes else { return }
    var bytes = Array(b)
    for i in 0..<StatsFile.sealBytes { bytes[i] = 0 }
    guard (try? StatsFile.sealForFuzzing(&bytes)) != nil else { return }
    let path = workFolder + "/stats.h5"
    bytes.withUnsafeBufferPointer { write($0, to: path) }
    _ = try? StatsFile.read(path, config: tinyConfig)
}

/// Batch manifests (JSON lines), and every problem report of an accepted one.
func fuzzManifest(_ b: UnsafeBufferPointer<UInt8>) {
    let path = workFolder + "/manifest.jsonl"
    write(b, to: path)
    guard let m = try? BatchManifest(path: path) else { return }
    _ = m.allProblems()
}

/// Sizes ("5GB", "2GiB", ...) of --max-shard-size and manifests.
func fuzzByteSize(_ b: UnsafeBufferPointer<UInt8>) {
    let s = String(decoding: b, as: UTF8.self)
    if let n = parseByteSize(s) { check(n > 0, "parseByteSize('\(s)') = \(n)") }
}

/// The GGUF export's --metadata file (general.* overrides).
func fuzzGGUFMetadata(_ b: UnsafeBufferPointer<UInt8>) {
    let path = workFolder + "/general.json"
    write(b, to: path)
    _ = try? Exporter.ggufMetadata(fromJSONFile: path)
}

let targets: [String: @Sendable (UnsafeBufferPointer<UInt8>) -> Void] = [
    "json": fuzzJSON, "safetensors": fuzzSafetensors, "shard-index": fuzzShardIndex, "config": fuzzConfig,
    "tokenizer": fuzzTokenizer, "tokenize": fuzzTokenize, "recipe": fuzzRecipe, "packed": fuzzPacked,
    "stats": fuzzStats, "stats-unsealed": fuzzStatsUnsealed, "manifest": fuzzManifest, "byte-size": fuzzByteSize,
    "gguf-metadata": fuzzGGUFMetadata
]

nonisolated(unsafe) var selected: (@Sendable (UnsafeBufferPointer<UInt8>) -> Void)? = nil

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> CInt {
    let name = ProcessInfo.processInfo.environment["FIREQ_FUZZ_TARGET"] ?? ""
    guard let t = targets[name] else {
        fatalError("set FIREQ_FUZZ_TARGET to one of: \(targets.keys.sorted().joined(separator: ", ")) (got '\(name)')")
    }
    selected = t
    _ = workFolder
    if name == "tokenize" { _ = realTokenizer.vocabularySize }
    if name.hasPrefix("stats") { _ = tinyConfig }
    if name == "tokenize" { _ = bytesWithoutToken }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    selected!(UnsafeBufferPointer(start: size == 0 ? nil : data, count: size))
    return 0
}
