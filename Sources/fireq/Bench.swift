import ArgumentParser
import CFireQKernels
import COpenBLAS
import Foundation
import LlamaReference

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Kernel benchmarks: the packed FP32 GEMM against OpenBLAS SGEMM at the model's shapes, in one run.",
        discussion: "Prints one line per shape (median of --repeats timings each) and, with --json, one JSON object.")

    @Option(name: .long, help: "Timed repetitions per kernel and shape (the median is reported).")
    var repeats: Int = 7
    @Option(name: .long, help: "Threads for both kernels (OpenBLAS gets the same number).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1.") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1.") }
    }

    static func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }

    func run() throws {
        // (m, n, k): tokens × outputs × inputs — qkv, o, gate∥up, down, lm_head of SmolLM2-135M at context 512.
        let shapes = [(512, 960, 576), (512, 576, 576), (512, 3072, 576), (512, 576, 1536), (256, 49152, 576)]
        var rows: [String] = []
        for (m, n, k) in shapes {
            var rng = SystemRandomNumberGenerator()
            let x = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &rng) }
            let w = (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &rng) }
            var y = [Float](repeating: 0, count: m * n)
            let packed = w.withUnsafeBufferPointer { PackedMatrix(rowMajor: $0.baseAddress!, rows: n, cols: k) }
            func time(_ body: () -> Void) -> Double {
                body()
                return Self.median((0..<repeats).map { _ in let t = Date(); body(); return Date().timeIntervalSince(t) })
            }
            let mine = x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                time { LinearAlgebra.linear(x: xp.baseAddress!, ldx: k, m: m, w: packed, y: yp.baseAddress!, ldy: n, threads: threads) }
            } }
            openblas_set_num_threads(Int32(threads))
            let blas = x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
                time { cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1, xp.baseAddress!, Int32(k),
                                   wp.baseAddress!, Int32(k), 0, yp.baseAddress!, Int32(n)) }
            } } }
            LinearAlgebra.configureBLAS()
            let flop = 2.0 * Double(m * n * k)
            let line = String(format: "%5d x %5d x %4d  packed %6.1f GFLOP/s  openblas %6.1f GFLOP/s  ratio %.2f",
                              m, n, k, flop / mine / 1e9, flop / blas / 1e9, blas / mine)
            if !json { print(line) }
            rows.append("{\"m\": \(m), \"n\": \(n), \"k\": \(k), \"packed_gflops\": \(flop / mine / 1e9), \"openblas_gflops\": \(flop / blas / 1e9), \"ratio\": \(blas / mine)}")
        }
        if json { print("{\"threads\": \(threads), \"isa_level\": \(fq_isa_level()), \"gemm\": [" + rows.joined(separator: ", ") + "]}") }
    }
}
