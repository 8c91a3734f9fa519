import Foundation
import JSONSupport
import Kernels
import LlamaReference
import ModelDescription
import TensorStore

/// Streams calibration windows through the unmodified FP32 model one decoder layer at a time:
/// hidden states of all windows stay in memory, each layer is loaded from the mmap'd checkpoint,
/// run over every window (observed by a `StatisticsCollector`), handed to `onLayer`, and released.
/// Peak memory ≈ N·L·hidden floats + one layer + one window's workspace, independent of depth.
public struct Calibrator {
    public let directory: String
    public let config: ModelConfig
    public let checkpoint: Checkpoint
    public let threads: Int

    public init(directory: String, threads: Int) throws {
        self.directory = directory
        config = try ModelConfig(directory: directory)
        checkpoint = try Checkpoint(directory: directory)
        try TensorNames.validate(checkpoint, config: config)
        self.threads = threads
    }

    /// Model hash of Formats/calibration-stats.md.
    public func modelHash() throws -> String {
        let cfg: [UInt8]
        do { cfg = try FileBytes.read(directory + "/config.json", limit: FileBytes.smallJSONLimit) } catch {
            throw error.missing
                ? ModelError.missingFile(path: error.path)
                : ModelError.unreadable(path: error.path, reason: error.reason)
        }
        return try checkpoint.modelHash(configBytes: cfg)
    }

    /// Runs all layers; `onLayer` receives each finished layer's statistics (in order),
    /// `progress(done, total)` is called after each layer.
    /// With `keepWindowSums`, every tap's per-window partial sums come along (part files).
    /// `observer`, if given, sees every tap after the statistics collector (the covariance
    /// blocks `fireq convert` keeps for the quantizer).
    public func run(
        _ windows: [[Int32]], keepWindowSums: Bool = false, observer: ForwardObserver? = nil,
        onLayer: (LayerStatistics) throws -> Void, progress: ((Int, Int) -> Void)? = nil
    ) throws {
        let c = config
        guard let L = windows.first?.count, L > 0 else { return }
        precondition(windows.allSatisfy { $0.count == L })
        let H = c.hiddenSize
        let hidden = FloatBuffer(count: windows.count * L * H, zeroed: false)
        try checkpoint.readRows(TensorNames.embed, rows: windows.flatMap { $0.map { Int($0) } }, into: hidden.pointer)
        if c.embeddingScale != 1 {  // Gemma: rows × √hidden, as every engine's embedding lookup
            for j in 0..<hidden.count { hidden.pointer[j] *= c.embeddingScale }
        }
        if let (f, t) = try? checkpoint.file(for: TensorNames.embed) { f.releasePages(t) }
        let forward = LlamaForward(config: c, threads: threads)
        let workspace = LlamaForward.Workspace(config: c, rows: L, seqLen: L, threads: threads)
        let collector = StatisticsCollector(config: c, threads: threads)
        collector.keepsWindowSums = keepWindowSums
        let observing: ForwardObserver = observer.map { Tee(collector, $0) } ?? collector
        for i in 0..<c.layerCount {
            let layer = try LlamaLayerWeights.load(checkpoint, layer: i, config: c)
            for s in 0..<windows.count {
                forward.layer(
                    layer, hidden: hidden.pointer + s * L * H, batch: 1, seqLen: L, workspace: workspace,
                    observer: observing)
            }
            try onLayer(collector.take(layer: i)!)
            progress?(i + 1, c.layerCount)
        }
    }
}

/// Two observers, called in order.
private final class Tee: ForwardObserver {
    let first: ForwardObserver, second: ForwardObserver
    init(_ first: ForwardObserver, _ second: ForwardObserver) { (self.first, self.second) = (first, second) }
    func observe(_ tap: Tap, layer: Int, _ view: ActivationView) {
        first.observe(tap, layer: layer, view)
        second.observe(tap, layer: layer, view)
    }
}
