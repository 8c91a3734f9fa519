import Foundation
import JSONSupport
import LlamaReference
import TensorStore
import Tokenizer

/// Where calibration tokens come from (Calibration/README.md).
public enum CalibrationSource: Sendable, Equatable {
    /// A UTF-8 text file, its bytes as stored, tokenized once without BOS.
    case text(String)
    /// JSON Lines, one object per line with a string `text`; documents joined with "\n\n".
    case jsonl(String)
    /// Pre-tokenized windows: HDF5 dataset `tokens`, int32 [N, L].
    case tokens(String)
    /// Data-free: N sequences sampled from the model itself (BOS, then L−1 sampled tokens).
    case generate(temperature: Float, topP: Float)

    public var path: String {
        switch self {
        case .text(let p), .jsonl(let p), .tokens(let p): return p
        case .generate(let t, let p): return "model samples (temperature \(t), top-p \(p))"
        }
    }
    public var kind: String {
        switch self {
        case .text: return "text";
        case .jsonl: return "jsonl";
        case .tokens: return "tokens";
        case .generate: return "generate"
        }
    }
}

/// N calibration windows of L tokens, with their provenance.
public struct CalibrationWindows: Sendable {
    public let windows: [[Int32]]
    public let source: CalibrationSource
    public let sourceSHA256: String
    /// Index of each chosen window among the source's non-overlapping windows.
    public let windowIndices: [Int]
    public let shuffled: Bool
    public let seed: UInt64

    /// Loads and cuts the calibration data. In order: windows 0 ..< N from token 0. Shuffled:
    /// a seeded permutation (SplitMix64, Fisher–Yates) of all available windows, first N kept.
    /// Samples N sequences of L tokens from the model (batched KV-cached decoding, seeded):
    /// each starts with BOS, then L−1 tokens drawn with temperature / top-p. The source hash is
    /// the SHA-256 of the tokens as little-endian uint32.
    public static func generate(
        model: LlamaModel, samples: Int, seqLen: Int, temperature: Float, topP: Float, seed: UInt64,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> CalibrationWindows {
        guard let bos = model.config.bosTokenID else {
            throw CalibrationError.invalidText(
                path: "config.json", reason: "data-free calibration needs a bos_token_id")
        }
        let decoder = LlamaDecoder(model: model, batch: samples, capacity: seqLen)
        var rng = SplitMix64(seed: seed)
        var seqs = [[Int32]](repeating: [Int32(bos)], count: samples)
        let V = model.config.vocabSize
        for t in 0..<(seqLen - 1) {
            let logits = decoder.step(seqs.map { $0[t] })
            logits.withUnsafeBufferPointer { b in
                for s in 0..<samples {
                    let row = UnsafeBufferPointer(rebasing: b[(s * V)..<((s + 1) * V)])
                    seqs[s].append(Sampler.sample(row, temperature: temperature, topP: topP, using: &rng))
                }
            }
            progress?(t + 1, seqLen - 1)
        }
        var bytes: [UInt8] = []
        for s in seqs { for id in s { withUnsafeBytes(of: UInt32(bitPattern: id).littleEndian) { bytes += $0 } } }
        return CalibrationWindows(
            windows: seqs, source: .generate(temperature: temperature, topP: topP), sourceSHA256: SHA256.hex(bytes),
            windowIndices: Array(0..<samples), shuffled: false, seed: seed)
    }

    public static func load(
        _ source: CalibrationSource, tokenizer: Tokenizer, vocabSize: Int, samples: Int, seqLen: Int,
        shuffle: Bool = false, seed: UInt64 = 0
    ) throws -> CalibrationWindows {
        let path = source.path
        let data: [UInt8]
        do { data = try FileBytes.read(path, limit: FileBytes.textLimit) } catch {
            throw CalibrationError.invalidText(path: path, reason: "cannot read the file (\(error.reason))")
        }
        let sha = SHA256.hex(data)
        var rows: [[Int32]]
        switch source {
        case .text:
            let tokens = tokenizer.encodeParallel(try utf8(data, path: path))
            rows = cut(tokens, seqLen: seqLen)
            if rows.count < samples {
                throw CalibrationError.notEnoughTokens(
                    path: path, found: tokens.count, needed: samples * seqLen, samples: samples, seqLen: seqLen)
            }
        case .jsonl:
            let text = try utf8(data, path: path)
            var docs: [String] = []
            for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
                if trimmed.isEmpty { continue }
                let v: JSONValue
                do { v = try JSONParser.parse(trimmed) } catch {
                    throw CalibrationError.invalidJSONLines(path: path, line: i + 1, reason: error.description)
                }
                guard let t = v["text"]?.stringValue else {
                    throw CalibrationError.invalidJSONLines(
                        path: path, line: i + 1, reason: "the object has no string field 'text'")
                }
                docs.append(t)
            }
            let tokens = tokenizer.encodeParallel(docs.joined(separator: "\n\n"))
            rows = cut(tokens, seqLen: seqLen)
            if rows.count < samples {
                throw CalibrationError.notEnoughTokens(
                    path: path, found: tokens.count, needed: samples * seqLen, samples: samples, seqLen: seqLen)
            }
        case .tokens:
            let f = try HDF5File.open(path)
            defer { f.close() }
            let info = try f.datasetInfo("tokens")
            guard info.isInteger && info.size == 4 else {
                throw CalibrationError.wrongDataset(
                    path: path, name: "tokens",
                    reason: "must be int32, found \(info.isFloat ? "float" : "integer") of \(info.size) bytes")
            }
            guard info.shape.count == 2 else {
                throw CalibrationError.wrongDataset(
                    path: path, name: "tokens", reason: "must be 2-D [N, L], found shape \(info.shape)")
            }
            guard info.shape[1] == seqLen else {
                throw CalibrationError.wrongDataset(
                    path: path, name: "tokens",
                    reason: "has windows of \(info.shape[1]) tokens but --seq-len is \(seqLen)")
            }
            guard info.shape[0] <= Self.maxTokens / max(1, info.shape[1]) else {
                throw CalibrationError.wrongDataset(
                    path: path, name: "tokens",
                    reason:
                        "has \(info.shape[0]) windows of \(info.shape[1]) tokens, more than the limit of \(Self.maxTokens) tokens"
                )
            }
            guard info.shape[0] >= samples else {
                throw CalibrationError.notEnoughTokens(
                    path: path, found: info.shape[0] * info.shape[1], needed: samples * seqLen, samples: samples,
                    seqLen: seqLen)
            }
            let flat = try f.readInt32("tokens", count: info.shape[0] * info.shape[1])
            if let bad = flat.first(where: { $0 < 0 || Int($0) >= vocabSize }) {
                throw CalibrationError.wrongDataset(
                    path: path, name: "tokens",
                    reason: "holds token id \(bad), outside the model's vocabulary of \(vocabSize)")
            }
            rows = (0..<info.shape[0]).map { Array(flat[($0 * seqLen)..<(($0 + 1) * seqLen)]) }
        case .generate:
            preconditionFailure("use CalibrationWindows.generate for data-free calibration")
        }
        var order = Array(rows.indices)
        if shuffle {
            var rng = SplitMix64(seed: seed)
            for i in stride(from: order.count - 1, to: 0, by: -1) {
                let j = Int(rng.next() % UInt64(i + 1))
                order.swapAt(i, j)
            }
        }
        let chosen = Array(order.prefix(samples))
        return CalibrationWindows(
            windows: chosen.map { rows[$0] }, source: source, sourceSHA256: sha,
            windowIndices: chosen, shuffled: shuffle, seed: shuffle ? seed : 0)
    }

    static func cut(_ tokens: [Int32], seqLen: Int) -> [[Int32]] {
        (0..<(tokens.count / seqLen)).map { Array(tokens[($0 * seqLen)..<(($0 + 1) * seqLen)]) }
    }

    /// Most tokens a --tokens file may hold (checked from its shape before anything is read).
    public static let maxTokens = 1 << 28

    static func utf8(_ data: [UInt8], path: String) throws -> String {
        if let s = String(validating: data, as: UTF8.self) { return s }
        // Find the first invalid byte for the message.
        var offset = 0
        let bytes = data
        var it = bytes.makeIterator()
        var decoder = UTF8()
        loop: while true {
            switch decoder.decode(&it) {
            case .scalarValue(let s): offset += String(s).utf8.count
            case .emptyInput: break loop
            case .error: break loop
            }
        }
        throw CalibrationError.invalidText(
            path: path, reason: "the file is not valid UTF-8 (first invalid byte near offset \(offset))")
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): the seeded generator behind `--shuffle --seed`.
public struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
}
