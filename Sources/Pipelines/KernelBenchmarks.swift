import CFireQKernels
import Foundation
import JSONSupport
import Kernels
import PackedFormat
import Quantization
import Runtime
import TensorStore

/// `fireq bench`: our kernels against a baseline measured in the same run, at the default
/// model's shapes (Benchmarks/README.md). Each timing is the median of `repeats` runs after one
/// warm-up; the CLI prints `lines` or `json`.
public enum KernelBenchmarks {
    /// One shape's two timings as GFLOP/s (2·m·n·k per run) and ours ÷ baseline in speed.
    public struct Row: Sendable, Equatable {
        public let m: Int, n: Int, k: Int
        public let ours: Double, baseline: Double
        public var ratio: Double { ours / baseline }
    }

    public struct Report: Sendable {
        public let threads: Int, isaLevel: Int
        /// The packed FP32 GEMM vs OpenBLAS SGEMM: qkv, o, gate∥up, down, lm_head of
        /// SmolLM2-135M at context 512.
        public var gemm: [Row] = []
        /// The INT4×FP8 linear (FP8 activation quantization + GEMM + epilogue) vs OpenBLAS SGEMM.
        public var int4fp8: [Row] = []
        /// The INT8 lm_head (ours) vs the 16-bit table (baseline), a perplexity block and one row.
        public var lmHead: [Row] = []

        public var lines: [String] {
            gemm.map {
                String(
                    format: "%5d x %5d x %4d  packed %6.1f GFLOP/s  openblas %6.1f GFLOP/s  ratio %.2f", $0.m, $0.n,
                    $0.k, $0.ours, $0.baseline, $0.ratio)
            }
                + int4fp8.map {
                    String(
                        format: "int4xfp8 %4d x %5d x %4d  %6.1f GFLOP/s  openblas sgemm %6.1f GFLOP/s  ratio %.2f",
                        $0.m, $0.n, $0.k, $0.ours, $0.baseline, $0.ratio)
                }
                + lmHead.map {
                    String(
                        format: "lm_head %4d x %5d x %4d  16-bit %6.1f GFLOP/s  int8 %6.1f GFLOP/s  ratio %.2f", $0.m,
                        $0.n, $0.k, $0.baseline, $0.ours, $0.ratio)
                }
        }

        /// Keys as Benchmarks/README.md documents them.
        public var json: JSONValue {
            func rows(_ rs: [Row], ours: String, baseline: String) -> JSONValue {
                .array(
                    rs.map {
                        .object(
                            JSONObject([
                                ("m", .int($0.m)), ("n", .int($0.n)), ("k", .int($0.k)), (ours, .double($0.ours)),
                                (baseline, .double($0.baseline)), ("ratio", .double($0.ratio))
                            ]))
                    })
            }
            return .object(
                JSONObject([
                    ("threads", .int(threads)), ("isa_level", .int(isaLevel)),
                    ("gemm", rows(gemm, ours: "packed_gflops", baseline: "openblas_gflops")),
                    ("int4fp8", rows(int4fp8, ours: "int4fp8_gflops", baseline: "openblas_gflops")),
                    ("lm_head", rows(lmHead, ours: "int8_gflops", baseline: "f16_gflops"))
                ]))
        }
    }

    static func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }

    /// Median seconds of `repeats` runs of `body` after one warm-up run.
    static func time(repeats: Int, _ body: () -> Void) -> Double {
        body()
        return median(
            (0..<repeats).map { _ in
                let t = Date()
                body()
                return Date().timeIntervalSince(t)
            })
    }

    static func random(_ count: Int, in range: ClosedRange<Float>) -> [Float] {
        var rng = SystemRandomNumberGenerator()
        return (0..<count).map { _ in Float.random(in: range, using: &rng) }
    }

    static func openblasSeconds(m: Int, n: Int, k: Int, x: [Float], w: [Float], threads: Int, repeats: Int) -> Double {
        var y = [Float](repeating: 0, count: m * n)
        return x.withUnsafeBufferPointer { xp in
            w.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    time(repeats: repeats) {
                        LinearAlgebra.openblasSGEMM(
                            x: xp.baseAddress!, w: wp.baseAddress!, y: yp.baseAddress!, m: m, n: n, k: k,
                            threads: threads)
                    }
                }
            }
        }
    }

    /// Runs the three kernel comparisons on random data (weights in the models' ranges).
    public static func run(repeats: Int, threads: Int) throws -> Report {
        precondition(repeats >= 1 && threads >= 1)
        var report = Report(threads: threads, isaLevel: Int(fq_isa_level()))
        func gflops(_ m: Int, _ n: Int, _ k: Int, _ seconds: Double) -> Double {
            2.0 * Double(m * n * k) / seconds / 1e9
        }
        for (m, n, k) in [(512, 960, 576), (512, 576, 576), (512, 3072, 576), (512, 576, 1536), (512, 49152, 576)] {
            let x = random(m * k, in: -1...1), w = random(n * k, in: -1...1)
            var y = [Float](repeating: 0, count: m * n)
            let packed = w.withUnsafeBufferPointer { PackedMatrix(rowMajor: $0.baseAddress!, rows: n, cols: k) }
            let mine = x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    time(repeats: repeats) {
                        LinearAlgebra.linear(
                            x: xp.baseAddress!, ldx: k, m: m, w: packed, y: yp.baseAddress!, ldy: n, threads: threads)
                    }
                }
            }
            let blas = openblasSeconds(m: m, n: n, k: k, x: x, w: w, threads: threads, repeats: repeats)
            report.gemm.append(Row(m: m, n: n, k: k, ours: gflops(m, n, k, mine), baseline: gflops(m, n, k, blas)))
        }
        for (m, n, k) in [(512, 1536, 576), (512, 576, 1536)] {
            let w = random(n * k, in: -0.05...0.05), x = random(m * k, in: -1...1)
            let qw = Int4Groups.quantize(w, rows: n, k: k, groupSize: 64)
            let layer = try Int4FP8Linear(
                PackedLinear(
                    name: "b", n: n, k: k, groupSize: 64, q: qw.q, scales: qw.scales, scaleFormat: "fp8_e4m3",
                    perTensorScaleInv: 1),
                fp8Rerounding: true)
            var y = [Float](repeating: 0, count: m * n), scratch = [Float](repeating: 0, count: m * k), acc = y
            let mine = x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    scratch.withUnsafeMutableBufferPointer { sp in
                        acc.withUnsafeMutableBufferPointer { ap in
                            time(repeats: repeats) {
                                layer.forward(
                                    x: xp.baseAddress!, rows: m, y: yp.baseAddress!, scratch: sp.baseAddress!,
                                    acc: ap.baseAddress!, threads: threads)
                            }
                        }
                    }
                }
            }
            let blas = openblasSeconds(m: m, n: n, k: k, x: x, w: w, threads: threads, repeats: repeats)
            report.int4fp8.append(Row(m: m, n: n, k: k, ours: gflops(m, n, k, mine), baseline: gflops(m, n, k, blas)))
        }
        for m in [256, 1] {
            let (n, k) = (49152, 576)
            let w = random(n * k, in: -0.05...0.05).map { Float(Float16($0)) }, x = random(m * k, in: -1...1)
            let table = w.withUnsafeBufferPointer { PackedMatrix(rowMajor: $0.baseAddress!, rows: n, cols: k) }
            let head = w.withUnsafeBufferPointer { Int8Head(rowMajor: $0.baseAddress!, rows: n, cols: k) }
            var y = [Float](repeating: 0, count: m * n)
            let (t16, t8) = x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    (
                        time(repeats: repeats) {
                            LinearAlgebra.linear(
                                x: xp.baseAddress!, ldx: k, m: m, w: table, y: yp.baseAddress!, ldy: n, threads: threads
                            )
                        },
                        time(repeats: repeats) {
                            head.logits(
                                hidden: xp.baseAddress!, count: m, out: yp.baseAddress!, ldo: n, threads: threads)
                        }
                    )
                }
            }
            report.lmHead.append(Row(m: m, n: n, k: k, ours: gflops(m, n, k, t8), baseline: gflops(m, n, k, t16)))
        }
        return report
    }

    /// The model hash's median time (SHA-256 over config.json and every tensor,
    /// Formats/calibration-stats.md); the pages stay cached after the warm-up, so this measures
    /// the hash, not the disk.
    public struct HashTiming: Sendable {
        public let folder: String, sha256: String, bytes: Int, seconds: Double, repeats: Int
        public var gbPerSecond: Double { Double(bytes) / seconds / 1e9 }
        public var json: JSONValue {
            .object(
                JSONObject([
                    ("sha256", .string(sha256)), ("bytes", .int(bytes)), ("seconds", .double(seconds)),
                    ("gb_per_s", .double(gbPerSecond))
                ]))
        }
        public var line: String {
            String(
                format: "model hash of %@: %.2f GB in %.2f s (%.2f GB/s, median of %d) %@", folder,
                Double(bytes) / 1e9, seconds, gbPerSecond, repeats, sha256)
        }
    }

    public static func modelHash(of folder: String, repeats: Int) throws -> HashTiming {
        let ckpt = try Checkpoint(directory: folder)
        let config = try FileBytes.read(folder + "/config.json", limit: FileBytes.smallJSONLimit)
        let bytes = ckpt.tensorNames.reduce(0) { $0 + (ckpt.info($1)?.byteCount ?? 0) }
        var hex = ""
        var failure: Error? = nil
        let seconds = time(repeats: repeats) {
            do { hex = try ckpt.modelHash(configBytes: config) } catch { failure = error }
        }
        if let failure { throw failure }
        return HashTiming(folder: folder, sha256: hex, bytes: bytes, seconds: seconds, repeats: repeats)
    }
}
