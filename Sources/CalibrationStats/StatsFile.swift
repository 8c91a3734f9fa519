import Foundation
import LlamaReference

/// The calibration statistics file (Formats/calibration-stats.md): streaming writer and reader.
public enum StatsFile {
    public static let format = "fireq-calibration-stats"
    public static let version = "1"

    /// Writes layers as they finish into `NAME.tmp-…`, renamed to `NAME` by `finish()`.
    public final class Writer {
        public let path: String
        let tempPath: String
        let file: HDF5File
        let config: LlamaConfig
        private var finished = false

        public init(path: String, config: LlamaConfig, attributes: [String: String]) throws(CalibrationError) {
            self.path = path
            self.config = config
            tempPath = "\(path).tmp-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
            do { file = try HDF5File.create(tempPath) } catch {
                throw .hdf5(path: path, operation: "creating the output file")
            }
            do {
                var attrs = attributes
                attrs["format"] = StatsFile.format
                attrs["format_version"] = StatsFile.version
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
                try file.writeFloat32(g + "/k_pre_rope_pair_norm_max", s.kPreRopePairNormMax, shape: [c.kvHeadCount, c.headDim / 2])
                try file.writeFloat32(g + "/k_post_rope_absmax", s.kPostRopeAbsmax, shape: [c.kvHeadCount, c.headDim])
                try file.writeFloat32(g + "/q_post_rope_absmax", s.qPostRopeAbsmax, shape: [c.headCount, c.headDim])
                try file.writeFloat32(g + "/v_absmax", s.vAbsmax, shape: [c.kvDim])
                for tap in InputTap.allCases {
                    let st = s.inputs[tap]!, tg = g + "/inputs/" + tap.rawValue
                    try file.createGroups(tg)
                    try file.writeFloat32(tg + "/absmax", st.absmax, shape: [st.absmax.count])
                    try file.writeFloat32(tg + "/mean_abs", st.meanAbs, shape: [st.absmax.count])
                    try file.writeFloat32(tg + "/mean_sq", st.meanSq, shape: [st.absmax.count])
                    try file.setInt64(tg, "token_count", Int64(st.count))
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
            file.close()
            finished = true
            if rename(tempPath, path) != 0 {
                unlink(tempPath)
                throw .hdf5(path: path, operation: "renaming the finished file into place (\(String(cString: strerror(errno))))")
            }
        }

        /// Closes and deletes the temporary file (on error or interruption).
        public func abandon() {
            if !finished { file.close(); finished = true }
            unlink(tempPath)
        }

        deinit { if !finished { abandon() } }
    }

    /// A statistics file read back: its root attributes and every layer's statistics.
    public struct Contents: Sendable {
        public let attributes: [String: String]
        public let layers: [LayerStatistics]
        /// The calibration windows, when the file stores them (files from before 2026-12-03 do not).
        public var tokens: [[Int32]]? = nil
    }

    public static let attributeNames = ["format", "format_version", "tool_version", "model_sha256", "model_path", "source_kind",
                                        "source_path", "source_sha256", "samples", "seq_len", "selection", "seed", "tokens",
                                        "layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size"]

    /// Reads a statistics file written for a model of shape `config`, checking format and shapes.
    public static func read(_ path: String, config c: LlamaConfig) throws(CalibrationError) -> Contents {
        let f = try HDF5File.open(path)
        defer { f.close() }
        var attrs: [String: String] = [:]
        for name in attributeNames { attrs[name] = try f.string("/", name) }
        guard attrs["format"] == format else { throw .wrongDataset(path: path, name: "/", reason: "is not a \(format) file (format '\(attrs["format"]!)')") }
        guard attrs["format_version"] == version else { throw .wrongDataset(path: path, name: "/", reason: "has format version \(attrs["format_version"]!), this tool reads \(version)") }
        guard attrs["layers"] == String(c.layerCount), attrs["hidden_size"] == String(c.hiddenSize) else {
            throw .modelMismatch(path: path, reason: "the statistics are for a model with \(attrs["layers"]!) layers and hidden size \(attrs["hidden_size"]!), not \(c.layerCount) and \(c.hiddenSize)")
        }
        var layers: [LayerStatistics] = []
        for i in 0..<c.layerCount {
            let g = "layers/\(i)"
            var s = LayerStatistics(layer: i, config: c)
            s.kPreRopePairNormMax = try f.readFloat32(g + "/k_pre_rope_pair_norm_max", shape: [c.kvHeadCount, c.headDim / 2])
            s.kPostRopeAbsmax = try f.readFloat32(g + "/k_post_rope_absmax", shape: [c.kvHeadCount, c.headDim])
            s.qPostRopeAbsmax = try f.readFloat32(g + "/q_post_rope_absmax", shape: [c.headCount, c.headDim])
            s.vAbsmax = try f.readFloat32(g + "/v_absmax", shape: [c.kvDim])
            for tap in InputTap.allCases {
                let tg = g + "/inputs/" + tap.rawValue
                let n = s.inputs[tap]!.absmax.count
                var st = InputStatistics(channels: n)
                st.count = Int(try f.int64(tg, "token_count"))
                st.absmax = try f.readFloat32(tg + "/absmax", shape: [n])
                st.sumAbs = try f.readFloat32(tg + "/mean_abs", shape: [n]).map { Double($0) * Double(st.count) }
                st.sumSq = try f.readFloat32(tg + "/mean_sq", shape: [n]).map { Double($0) * Double(st.count) }
                s.inputs[tap] = st
            }
            layers.append(s)
        }
        var contents = Contents(attributes: attrs, layers: layers)
        if f.exists("tokens") {
            let info = try f.datasetInfo("tokens")
            let n = Int(attrs["samples"] ?? "") ?? -1, L = Int(attrs["seq_len"] ?? "") ?? -1
            guard info.isInteger, info.shape == [n, L] else {
                throw .wrongDataset(path: path, name: "tokens", reason: "must be integers of shape [\(n), \(L)] (samples, seq_len), found \(info.shape)")
            }
            let flat = try f.readInt32("tokens", count: n * L)
            guard flat.allSatisfy({ $0 >= 0 && Int($0) < c.vocabSize }) else {
                throw .wrongDataset(path: path, name: "tokens", reason: "holds a token id outside the model's vocabulary (0 ..< \(c.vocabSize))")
            }
            contents.tokens = (0..<n).map { Array(flat[($0 * L)..<(($0 + 1) * L)]) }
        }
        return contents
    }
}
