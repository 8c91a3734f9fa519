import Foundation
import JSONSupport
import LlamaReference
import ModelDescription
import TensorStore

/// The calibration statistics file (Formats/calibration-stats.md): streaming writer and reader.
public enum StatsFile {
    public static let format = "fireq-calibration-stats"
    /// The format of a part file (`fireq calibrate --part I/P`; Formats/calibration-stats.md).
    public static let partFormat = "fireq-calibration-part"
    /// The root attributes only a part file has.
    public static let partAttributeNames = ["part", "first_window", "window_count"]

    /// Which windows of a run a part file covers.
    public struct Part: Sendable, Equatable {
        public let index: Int, count: Int
        /// Part `index` (1-based) of `count` over `windows` windows: ⌊(I−1)·N/P⌋ ..< ⌊I·N/P⌋.
        public init(index: Int, count: Int) { self.index = index; self.count = count }
        public func range(windows n: Int) -> Range<Int> { ((index - 1) * n / count)..<(index * n / count) }
    }
    public static let version = "1"
    /// The integrity block before the HDF5 content (Formats/calibration-stats.md).
    public static let sealBytes = 512
    static let sealPrefix = Array("fireq-calibration-stats sha256 ".utf8)
    /// Largest statistics file read (an 8B model's are ~10 MB).
    public static let maxFileBytes = 4 << 30

    /// Stores the SHA-256 of bytes 512… in the (empty) user block of a file image.
    static func seal(_ bytes: inout [UInt8], path: String) throws(CalibrationError) {
        guard bytes.count > sealBytes, bytes[0..<sealBytes].allSatisfy({ $0 == 0 }) else {
            throw .hdf5(path: path, operation: "sealing the file (its user block is missing or not empty)")
        }
        var block = sealPrefix + Array(SHA256.hex(bytes[sealBytes...]).utf8) + [0x0A]
        block += [UInt8](repeating: 0, count: sealBytes - block.count)
        bytes.replaceSubrange(0..<sealBytes, with: block)
    }

    /// `seal` for the fuzzers' stats-unsealed target (Fuzz/), which must reach libhdf5 with any bytes.
    public static func sealForFuzzing(_ bytes: inout [UInt8]) throws(CalibrationError) {
        try seal(&bytes, path: "fuzz input")
    }

    /// Checks the integrity block before libhdf5 reads the file; returns the whole file's SHA-256.
    public static func verifySeal(_ path: String) throws(CalibrationError) -> String {
        let bytes: [UInt8]
        do { bytes = try FileBytes.read(path, limit: maxFileBytes) } catch {
            throw .damaged(path: path, reason: error.missing ? "the statistics file does not exist" : error.reason)
        }
        guard bytes.count > sealBytes, bytes.starts(with: sealPrefix) else {
            throw .damaged(
                path: path,
                reason:
                    "has no fireq integrity block (written by fireq before 2026-12-03, or not by fireq): rerun fireq calibrate"
            )
        }
        let hex = bytes[sealPrefix.count..<min(sealPrefix.count + 64, bytes.count)]
        guard hex.count == 64, bytes[sealPrefix.count + 64] == 0x0A,
            String(decoding: hex, as: UTF8.self) == SHA256.hex(bytes[sealBytes...])
        else {
            throw .damaged(
                path: path,
                reason:
                    "is damaged or was edited after it was written (its SHA-256 does not match the one it records): rerun fireq calibrate"
            )
        }
        return SHA256.hex(bytes)
    }

    /// Collects layers as they finish in an in-memory HDF5 file; `finish()` seals its image and
    /// writes it to `NAME.tmp-…`, synced, then renamed to `NAME` (Formats/calibration-stats.md).
    public final class Writer {
        public let path: String
        let file: HDF5File
        let config: ModelConfig
        private var finished = false

        let part: Part?

        /// A statistics file, or with `part` (and `firstWindow` / `windowCount`) a part file.
        public init(
            path: String, config: ModelConfig, attributes: [String: String], part: Part? = nil,
            firstWindow: Int = 0, windowCount: Int = 0
        ) throws(CalibrationError) {
            self.path = path
            self.config = config
            self.part = part
            // The file is written at finish(); fail now, not after the calibration, when its folder
            // cannot take a file.
            let probe = "\(path).tmp-\(ProcessInfo.processInfo.processIdentifier)-probe"
            let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                let dir = (path as NSString).deletingLastPathComponent
                throw .writeFailed(
                    path: path,
                    reason: "cannot create a file in '\(dir.isEmpty ? "." : dir)' (\(String(cString: strerror(errno))))"
                )
            }
            close(fd)
            unlink(probe)
            do { file = try HDF5File.create(path, userBlock: StatsFile.sealBytes, inMemory: true) } catch {
                throw .hdf5(path: path, operation: "creating the output file")
            }
            do {
                var attrs = attributes
                attrs["format"] = part == nil ? StatsFile.format : StatsFile.partFormat
                attrs["format_version"] = StatsFile.version
                if let part {
                    attrs["part"] = "\(part.index)/\(part.count)"
                    attrs["first_window"] = String(firstWindow)
                    attrs["window_count"] = String(windowCount)
                }
                attrs["layers"] = String(config.layerCount)
                attrs["hidden_size"] = String(config.hiddenSize)
                attrs["num_heads"] = String(config.headCount)
                attrs["num_kv_heads"] = String(config.kvHeadCount)
                attrs["head_dim"] = String(config.headDim)
                attrs["intermediate_size"] = String(config.intermediateSize)
                for k in attrs.keys.sorted() { try file.setString("/", k, attrs[k]!) }
                try file.createGroups("layers")
            } catch {
                abandon()
                throw error
            }
        }

        public func write(_ s: LayerStatistics) throws(CalibrationError) {
            let c = config, g = "layers/\(s.layer)"
            do {
                try file.createGroups(g + "/inputs")
                try file.writeFloat32(
                    g + "/k_pre_rope_pair_norm_max", s.kPreRopePairNormMax, shape: [c.kvHeadCount, c.headDim / 2])
                try file.writeFloat32(g + "/k_post_rope_absmax", s.kPostRopeAbsmax, shape: [c.kvHeadCount, c.headDim])
                try file.writeFloat32(g + "/q_post_rope_absmax", s.qPostRopeAbsmax, shape: [c.headCount, c.headDim])
                try file.writeFloat32(g + "/v_absmax", s.vAbsmax, shape: [c.kvDim])
                if let m = s.kPreRopePairNormMaxUnbiased {
                    try file.writeFloat32(
                        g + "/k_pre_rope_pair_norm_max_unbiased", m, shape: [c.kvHeadCount, c.headDim / 2])
                }
                if let m = s.kPostRopeAbsmaxUnbiased {
                    try file.writeFloat32(g + "/k_post_rope_absmax_unbiased", m, shape: [c.kvHeadCount, c.headDim])
                }
                for tap in InputTap.allCases {
                    let st = s.inputs[tap]!, tg = g + "/inputs/" + tap.rawValue
                    try file.createGroups(tg)
                    try file.writeFloat32(tg + "/absmax", st.absmax, shape: [st.absmax.count])
                    try file.writeFloat32(tg + "/mean_abs", st.meanAbs, shape: [st.absmax.count])
                    try file.writeFloat32(tg + "/mean_sq", st.meanSq, shape: [st.absmax.count])
                    try file.setInt64(tg, "token_count", Int64(st.count))
                    if part != nil {
                        let w = st.windows ?? [], n = st.absmax.count
                        try file.writeFloat64(tg + "/window_sum_abs", w.flatMap(\.sumAbs), shape: [w.count, n])
                        try file.writeFloat64(tg + "/window_sum_sq", w.flatMap(\.sumSq), shape: [w.count, n])
                    }
                }
            } catch {
                abandon()
                throw error
            }
        }

        /// Stores the calibration windows (dataset `tokens`, int32 [N, L]): what GPTQ streams
        /// through the model again at quantization time.
        public func writeTokens(_ windows: [[Int32]]) throws(CalibrationError) {
            guard let L = windows.first?.count, windows.allSatisfy({ $0.count == L }) else { return }
            do { try file.writeInt32("tokens", windows.flatMap { $0 }, shape: [windows.count, L]) } catch {
                abandon()
                throw error
            }
        }

        /// Closes the file and moves it under its final name.
        public func finish() throws(CalibrationError) {
            var bytes: [UInt8]
            do { bytes = try file.image() } catch {
                abandon()
                throw error
            }
            // libhdf5's image of an in-memory file starts at the superblock, whose base address
            // already accounts for the user block: the block goes in front.
            bytes = [UInt8](repeating: 0, count: StatsFile.sealBytes) + bytes
            file.close()
            finished = true
            try StatsFile.seal(&bytes, path: path)
            do {
                try AtomicFile.write(to: path) { (h) throws(TensorStoreError) in try h.write(Data(bytes), path: path) }
            } catch {
                if case .writeFailed(_, let r) = error { throw .writeFailed(path: path, reason: r) }
                throw .writeFailed(path: path, reason: error.description)
            }
        }

        /// Drops the in-memory file (on error or interruption); nothing was written.
        public func abandon() {
            if !finished { file.close(); finished = true }
        }

        deinit { if !finished { abandon() } }
    }

    /// A statistics file read back: its root attributes and every layer's statistics.
    public struct Contents: Sendable {
        public let attributes: [String: String]
        public let layers: [LayerStatistics]
        /// The calibration windows, when the file stores them (files from before 2026-12-03 do not).
        public var tokens: [[Int32]]? = nil
        /// SHA-256 of the whole file (what packed files record as fireq.stats_sha256).
        public var fileSHA256 = ""
    }

    public static let attributeNames = [
        "format", "format_version", "tool_version", "model_sha256", "model_path", "source_kind",
        "source_path", "source_sha256", "samples", "seq_len", "selection", "seed", "tokens",
        "layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size"
    ]

    /// Reads a statistics file written for a model of shape `config`, checking format and shapes.
    public static func read(_ path: String, config c: ModelConfig) throws(CalibrationError) -> Contents {
        try read(path, config: c, part: false)
    }

    /// Reads a part file (`fireq calibrate --part`): its attributes (the part ones included), its
    /// windows' tokens, and per tap the per-window partial sums in `InputStatistics.windows`.
    public static func readPart(_ path: String, config c: ModelConfig) throws(CalibrationError) -> Contents {
        try read(path, config: c, part: true)
    }

    static func read(_ path: String, config c: ModelConfig, part: Bool) throws(CalibrationError) -> Contents {
        let sha = try verifySeal(path)
        let f = try HDF5File.open(path)
        defer { f.close() }
        var attrs: [String: String] = [:]
        for name in attributeNames { attrs[name] = try f.string("/", name) }
        let want = part ? partFormat : format
        guard attrs["format"] == want else {
            let hint =
                attrs["format"] == partFormat
                ? " (a part of a calibration: merge the parts with fireq calibrate-merge)"
                : attrs["format"] == format ? " (a whole calibration's statistics, not a part)" : ""
            throw .wrongDataset(
                path: path, name: "/", reason: "is not a \(want) file (format '\(attrs["format"]!)')\(hint)")
        }
        var windowCount = Int(attrs["samples"] ?? "") ?? -1
        if part {
            for name in partAttributeNames { attrs[name] = try f.string("/", name) }
            windowCount = Int(attrs["window_count"]!) ?? -1
        }
        guard attrs["format_version"] == version else {
            throw .wrongDataset(
                path: path, name: "/",
                reason: "has format version \(attrs["format_version"]!), this tool reads \(version)")
        }
        guard attrs["layers"] == String(c.layerCount), attrs["hidden_size"] == String(c.hiddenSize) else {
            throw .modelMismatch(
                path: path,
                reason:
                    "the statistics are for a model with \(attrs["layers"]!) layers and hidden size \(attrs["hidden_size"]!), not \(c.layerCount) and \(c.hiddenSize)"
            )
        }
        var layers: [LayerStatistics] = []
        for i in 0..<c.layerCount {
            let g = "layers/\(i)"
            var s = LayerStatistics(layer: i, config: c)
            s.kPreRopePairNormMax = try f.readFloat32(
                g + "/k_pre_rope_pair_norm_max", shape: [c.kvHeadCount, c.headDim / 2])
            s.kPostRopeAbsmax = try f.readFloat32(g + "/k_post_rope_absmax", shape: [c.kvHeadCount, c.headDim])
            s.qPostRopeAbsmax = try f.readFloat32(g + "/q_post_rope_absmax", shape: [c.headCount, c.headDim])
            s.vAbsmax = try f.readFloat32(g + "/v_absmax", shape: [c.kvDim])
            if f.exists(g + "/k_pre_rope_pair_norm_max_unbiased") {
                s.kPreRopePairNormMaxUnbiased = try f.readFloat32(
                    g + "/k_pre_rope_pair_norm_max_unbiased", shape: [c.kvHeadCount, c.headDim / 2])
            }
            if f.exists(g + "/k_post_rope_absmax_unbiased") {
                s.kPostRopeAbsmaxUnbiased = try f.readFloat32(
                    g + "/k_post_rope_absmax_unbiased", shape: [c.kvHeadCount, c.headDim])
            }
            for tap in InputTap.allCases {
                let tg = g + "/inputs/" + tap.rawValue
                let n = s.inputs[tap]!.absmax.count
                var st = InputStatistics(channels: n)
                st.count = Int(try f.int64(tg, "token_count"))
                st.absmax = try f.readFloat32(tg + "/absmax", shape: [n])
                st.sumAbs = try f.readFloat32(tg + "/mean_abs", shape: [n]).map { Double($0) * Double(st.count) }
                st.sumSq = try f.readFloat32(tg + "/mean_sq", shape: [n]).map { Double($0) * Double(st.count) }
                if part {
                    guard windowCount >= 0 else {
                        throw .wrongDataset(path: path, name: "/", reason: "has a window_count that is not a number")
                    }
                    let sa = try f.readFloat64(tg + "/window_sum_abs", shape: [windowCount, n])
                    let sq = try f.readFloat64(tg + "/window_sum_sq", shape: [windowCount, n])
                    let L = Int(attrs["seq_len"] ?? "") ?? 0
                    st.windows = (0..<windowCount).map {
                        InputStatistics.WindowSums(
                            sumAbs: Array(sa[($0 * n)..<(($0 + 1) * n)]), sumSq: Array(sq[($0 * n)..<(($0 + 1) * n)]),
                            count: L)
                    }
                }
                s.inputs[tap] = st
            }
            layers.append(s)
        }
        var contents = Contents(attributes: attrs, layers: layers)
        contents.fileSHA256 = sha
        if f.exists("tokens") {
            let info = try f.datasetInfo("tokens")
            let n = windowCount, L = Int(attrs["seq_len"] ?? "") ?? -1
            guard info.isInteger, info.shape == [n, L] else {
                throw .wrongDataset(
                    path: path, name: "tokens",
                    reason:
                        "must be integers of shape [\(n), \(L)] (\(part ? "window_count" : "samples"), seq_len), found \(info.shape)"
                )
            }
            let flat = try f.readInt32("tokens", count: n * L)
            guard flat.allSatisfy({ $0 >= 0 && Int($0) < c.vocabSize }) else {
                throw .wrongDataset(
                    path: path, name: "tokens",
                    reason: "holds a token id outside the model's vocabulary (0 ..< \(c.vocabSize))")
            }
            contents.tokens = (0..<n).map { Array(flat[($0 * L)..<(($0 + 1) * L)]) }
        }
        return contents
    }
}
