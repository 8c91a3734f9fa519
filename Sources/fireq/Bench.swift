import ArgumentParser
import CFireQKernels
import COpenBLAS
import Foundation
import JSONSupport
import Kernels
import LlamaReference
import PackedFormat
import Pipelines
import Quantization
import Runtime
import TensorStore

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Kernel benchmarks: the packed FP32 GEMM against OpenBLAS SGEMM at the model's shapes, in one run.",
        discussion: "Prints one line per shape (median of --repeats timings each) and, with --json, one JSON object.")

    @Option(
        name: .long, parsing: .unconditional, help: "Timed repetitions per kernel and shape (the median is reported).")
    var repeats: Int = 7
    /// --threads: both kernels (OpenBLAS gets the same number).
    @OptionGroup var compute: ComputeOptions
    var threads: Int { compute.threads }
    @Flag(name: .long, help: "Print one JSON object.")
    var json = false
    @Option(
        name: .long,
        help:
            "Instead of the kernels: time the model hash (SHA-256 over config.json and every tensor, Formats/calibration-stats.md) of this HF folder, --repeats times."
    )
    var sha256: String?

    func validate() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1.") }
    }

    /// `--sha256 DIR`: the model hash's median time and throughput (the file pages stay cached
    /// after the first run, so this measures the hash, not the disk).
    func hashBench(_ dir: String) throws {
        let ckpt = try Checkpoint(directory: dir)
        let config = try FileBytes.read(dir + "/config.json", limit: FileBytes.smallJSONLimit)
        let bytes = ckpt.tensorNames.reduce(0) { $0 + (ckpt.info($1)?.byteCount ?? 0) }
        var hex = ""
        let seconds = time { hex = (try? ckpt.modelHash(configBytes: config)) ?? "" }
        let gbps = Double(bytes) / seconds / 1e9
        if json {
            print("{\"sha256\": \"\(hex)\", \"bytes\": \(bytes), \"seconds\": \(seconds), \"gb_per_s\": \(gbps)}")
        } else {
            print(
                String(
                    format: "model hash of %@: %.2f GB in %.2f s (%.2f GB/s, median of %d) %@", dir,
                    Double(bytes) / 1e9, seconds, gbps, repeats, hex))
        }
    }

    static func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }

    /// Median seconds of `repeats` runs of `body` after one warm-up run.
    func time(_ body: () -> Void) -> Double {
        body()
        return Self.median(
            (0..<repeats).map { _ in
                let t = Date(); body(); return Date().timeIntervalSince(t)
            })
    }

    /// The baseline: OpenBLAS SGEMM y[m, n] = x[m, k] · w[n, k]ᵀ on `threads` threads.
    func openblasSeconds(m: Int, n: Int, k: Int, x: [Float], w: [Float]) -> Double {
        var y = [Float](repeating: 0, count: m * n)
        openblas_set_num_threads(Int32(threads))
        defer { LinearAlgebra.configureBLAS() }
        return x.withUnsafeBufferPointer { xp in
            w.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    time {
                        cblas_sgemm(
                            CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1, xp.baseAddress!,
                            Int32(k),
                            wp.baseAddress!, Int32(k), 0, yp.baseAddress!, Int32(n))
                    }
                }
            }
        }
    }

    func run() throws {
        if let sha256 { return try hashBench(sha256) }
        // (m, n, k): tokens × outputs × inputs — qkv, o, gate∥up, down, lm_head (its F16 values widened exactly to FP32) of SmolLM2-135M at context 512.
        let shapes = [(512, 960, 576), (512, 576, 576), (512, 3072, 576), (512, 576, 1536), (512, 49152, 576)]
        var rows: [String] = []
        for (m, n, k) in shapes {
            var rng = SystemRandomNumberGenerator()
            let x = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &rng) }
            let w = (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &rng) }
            var y = [Float](repeating: 0, count: m * n)
            let packed = w.withUnsafeBufferPointer { PackedMatrix(rowMajor: $0.baseAddress!, rows: n, cols: k) }
            let mine = x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    time {
                        LinearAlgebra.linear(
                            x: xp.baseAddress!, ldx: k, m: m, w: packed, y: yp.baseAddress!, ldy: n, threads: threads)
                    }
                }
            }
            let blas = openblasSeconds(m: m, n: n, k: k, x: x, w: w)
            let flop = 2.0 * Double(m * n * k)
            let line = String(
                format: "%5d x %5d x %4d  packed %6.1f GFLOP/s  openblas %6.1f GFLOP/s  ratio %.2f",
                m, n, k, flop / mine / 1e9, flop / blas / 1e9, blas / mine)
            if !json { print(line) }
            rows.append(
                "{\"m\": \(m), \"n\": \(n), \"k\": \(k), \"packed_gflops\": \(flop / mine / 1e9), \"openblas_gflops\": \(flop / blas / 1e9), \"ratio\": \(blas / mine)}"
            )
        }
        // INT4×FP8 linear (FP8 activation quantization + GEMM on FP8 weight values + epilogue)
        // against OpenBLAS SGEMM on the same shapes, in the same run.
        var int4Rows: [String] = []
        for (m, n, k) in [(512, 1536, 576), (512, 576, 1536)] {
            var rng = SystemRandomNumberGenerator()
            let w = (0..<(n * k)).map { _ in Float.random(in: -0.05...0.05, using: &rng) }
            let x = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &rng) }
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
                            time {
                                layer.forward(
                                    x: xp.baseAddress!, rows: m, y: yp.baseAddress!, scratch: sp.baseAddress!,
                                    acc: ap.baseAddress!, threads: threads)
                            }
                        }
                    }
                }
            }
            let blas = openblasSeconds(m: m, n: n, k: k, x: x, w: w)
            let flop = 2.0 * Double(m * n * k)
            if !json {
                print(
                    String(
                        format: "int4xfp8 %4d x %5d x %4d  %6.1f GFLOP/s  openblas sgemm %6.1f GFLOP/s  ratio %.2f",
                        m, n, k, flop / mine / 1e9, flop / blas / 1e9, blas / mine))
            }
            int4Rows.append(
                "{\"m\": \(m), \"n\": \(n), \"k\": \(k), \"int4fp8_gflops\": \(flop / mine / 1e9), \"openblas_gflops\": \(flop / blas / 1e9), \"ratio\": \(blas / mine)}"
            )
        }
        // lm_head: the INT8 head (recipe lm_head.format "int8") against the 16-bit table (F16 panels
        // widened, FP32 FMA) at one perplexity block of rows and at one row (decode), same run.
        var headRows: [String] = []
        for m in [256, 1] {
            let (n, k) = (49152, 576)
            var rng = SystemRandomNumberGenerator()
            let w = (0..<(n * k)).map { _ in Float(Float16(Float.random(in: -0.05...0.05, using: &rng))) }
            let x = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &rng) }
            let table = w.withUnsafeBufferPointer { PackedMatrix(rowMajor: $0.baseAddress!, rows: n, cols: k) }
            let head = w.withUnsafeBufferPointer { Int8Head(rowMajor: $0.baseAddress!, rows: n, cols: k) }
            var y = [Float](repeating: 0, count: m * n)
            let (t16, t8) = x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    (
                        time {
                            LinearAlgebra.linear(
                                x: xp.baseAddress!, ldx: k, m: m, w: table, y: yp.baseAddress!, ldy: n, threads: threads
                            )
                        },
                        time {
                            head.logits(
                                hidden: xp.baseAddress!, count: m, out: yp.baseAddress!, ldo: n, threads: threads)
                        }
                    )
                }
            }
            let flop = 2.0 * Double(m * n * k)
            if !json {
                print(
                    String(
                        format: "lm_head %4d x %5d x %4d  16-bit %6.1f GFLOP/s  int8 %6.1f GFLOP/s  ratio %.2f",
                        m, n, k, flop / t16 / 1e9, flop / t8 / 1e9, t16 / t8))
            }
            headRows.append(
                "{\"m\": \(m), \"n\": \(n), \"k\": \(k), \"f16_gflops\": \(flop / t16 / 1e9), \"int8_gflops\": \(flop / t8 / 1e9), \"ratio\": \(t16 / t8)}"
            )
        }
        if json {
            print(
                "{\"threads\": \(threads), \"isa_level\": \(fq_isa_level()), \"gemm\": [" + rows.joined(separator: ", ")
                    + "], \"int4fp8\": [" + int4Rows.joined(separator: ", ") + "], \"lm_head\": ["
                    + headRows.joined(separator: ", ") + "]}")
        }
    }
}
