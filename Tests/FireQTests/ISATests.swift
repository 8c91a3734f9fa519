import CFireQKernels
import CalibrationStats
import Foundation
import LlamaReference
import ModelDescription
import TensorStore
import Testing

/// The same results whichever kernel path runs (FIREQ_ISA=portable|avx2|avx512): every path the
/// machine has calibrates, quantizes, exports and evaluates the default model, and the statistics,
/// the packed and exported files and every perplexity digit agree (small sizes: the portable path computes each
/// fused multiply-add in software). Paths above the CPU's are refused.
@Suite(.serialized) struct ISATests {
    static let names = ["portable", "avx2", "avx512"]
    /// The paths this machine can run (the test names them in its output).
    static var paths: [String] { Array(names.prefix(Int(fq_cpu_isa_level()) + 1)) }

    @Test func everyPathGivesTheSameResults() throws {
        try TestPaths.requireModel()
        let d = TestPaths.tempDir()
        let text = TestPaths.sharedData + "/tinyshakespeare.txt",
            wiki = TestPaths.sharedData + "/wikitext-2-raw-test.raw"
        var stats: [String: [LayerStatistics]] = [:], tensors: [String: [String: [UInt8]]] = [:],
            ppl: [String: [String]] = [:]
        var files: [String: (stats: Data, packed: Data, gguf: Data)] = [:]
        let config = try ModelConfig(directory: TestPaths.model)
        print(
            "kernel paths on this CPU: \(Self.paths.joined(separator: ", "))"
                + (fq_cpu_has_avx512bf16() == 1
                    ? " (avx512 with BF16: vdpbf16ps INT4×FP8 kernels)"
                    : fq_cpu_isa_level() >= 2 ? " (avx512 without BF16: FP32 INT4×FP8 kernels)" : ""))
        for isa in Self.paths {
            // OpenBLAS picks its kernels per CPU, not by FIREQ_ISA: pin it to a different core type
            // per path too, so any numerics still going through BLAS would show up here.
            let env = [
                "FIREQ_ISA": isa,
                "OPENBLAS_CORETYPE": ["portable": "Prescott", "avx2": "Haswell", "avx512": "SkylakeX"][isa]!
            ]
            // One folder per path, same names inside (the GGUF's general.name is the packed folder's name).
            let dir = d + "/" + isa
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let s = dir + "/stats.h5", p = dir + "/packed"
            let c = try CLI.run(
                [
                    "calibrate", "--model", TestPaths.model, "--text", text, "--samples", "2", "--seq-len", "32",
                    "--out", s
                ], environment: env)
            #expect(c.status == 0, "\(isa): \(c.stderr)")
            stats[isa] = try StatsFile.read(s, config: config).layers
            let q = try CLI.run(
                [
                    "quantize", "--model", TestPaths.model, "--stats", s, "--recipe",
                    QuantizeTests.recipes + "/fireq.json", "--out", p
                ], environment: env)
            #expect(q.status == 0, "\(isa): \(q.stderr)")
            let e = try CLI.run(["export", p, "--format", "gguf", "--out", p + ".gguf"], environment: env)
            #expect(e.status == 0, "\(isa): \(e.stderr)")
            files[isa] = (TestPaths.read(s), TestPaths.read(p + "/model.safetensors"), TestPaths.read(p + ".gguf"))
            let f = try SafetensorsFile(path: p + "/model.safetensors")
            tensors[isa] = Dictionary(uniqueKeysWithValues: f.tensors.map { ($0.name, Array(f.rawBytes($0))) })
            var digits: [String] = []
            for (model, numerics) in [(TestPaths.model, nil), (p, "fireq"), (p, "weights-only")] as [(String, String?)]
            {
                let args =
                    ["eval", "--model", model, "--text", wiki, "--context", "24", "--windows", "1", "--json"]
                    + (numerics.map { ["--numerics", $0] } ?? [])
                let r = try CLI.run(args, environment: env)
                #expect(r.status == 0, "\(isa): \(r.stderr)")
                let j = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
                digits.append("\(j["mean_nll"]!)")
            }
            ppl[isa] = digits
        }
        let first = Self.paths[0]
        for isa in Self.paths.dropFirst() {
            #expect(stats[isa] == stats[first], "statistics differ between \(first) and \(isa)")
            #expect(tensors[isa] == tensors[first], "packed tensors differ between \(first) and \(isa)")
            // Whole files too: no time stamps, so the statistics file and its hash in the packed metadata repeat.
            #expect(
                files[isa]!.stats == files[first]!.stats, "statistics file bytes differ between \(first) and \(isa)")
            #expect(files[isa]!.packed == files[first]!.packed, "packed file bytes differ between \(first) and \(isa)")
            #expect(files[isa]!.gguf == files[first]!.gguf, "GGUF exports differ between \(first) and \(isa)")
            #expect(
                ppl[isa] == ppl[first],
                "perplexities differ between \(first) and \(isa): \(ppl[first]!) vs \(ppl[isa]!)")
        }
    }

    @Test func unknownOrUnavailablePathIsRefused() throws {
        try TestPaths.requireModel()
        let r = try CLI.run(
            ["tokenize", "--model", TestPaths.model, "--text", TestPaths.sharedData + "/tinyshakespeare.txt"],
            environment: ["FIREQ_ISA": "neon"])
        #expect(r.status != 0 && r.stderr.contains("FIREQ_ISA='neon' is not a kernel path"), "\(r.stderr)")
        if fq_cpu_isa_level() < 2 {
            let a = try CLI.run(["tokenize", "--model", TestPaths.model], environment: ["FIREQ_ISA": "avx512"])
            #expect(a.status != 0 && a.stderr.contains("this CPU lacks"), "\(a.stderr)")
        }
    }
}
