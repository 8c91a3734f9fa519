// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "FireQ",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "fireq", targets: ["fireq"]),
        .library(name: "FireQCore", targets: ["JSONSupport", "LowPrecision", "Kernels", "Runtime", "TensorStore", "Tokenizer", "ModelDescription", "LlamaReference", "CalibrationStats", "Quantization", "PackedFormat", "Evaluation", "Reports", "Exports", "Pipelines", "Batch"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // SHA-256 of checkpoints, packed files and calibration data (BoringSSL's, with SHA-NI).
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // System OpenBLAS (Debian libopenblas-dev): cblas_sgemm for the FP32 reference.
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS",
                       providers: [.apt(["libopenblas-dev"])]),
        // System libhdf5 (Debian libhdf5-dev): the calibration statistics file.
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5-serial",
                       providers: [.apt(["libhdf5-dev"])]),
        // System zlib (Debian zlib1g-dev): crc32 of packed tensors.
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        // Hot loops in C with per-function target attributes and run-time dispatch.
        .target(name: "CFireQKernels", path: "Sources/CFireQKernels"),
        .target(name: "JSONSupport"),
        .target(name: "LowPrecision", dependencies: ["CFireQKernels"]),
        .target(name: "TensorStore", dependencies: ["LowPrecision", "JSONSupport", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "Tokenizer", dependencies: ["JSONSupport"]),
        .target(name: "Kernels", dependencies: ["CFireQKernels", "COpenBLAS"]),
        // What a model is: config.json (both conventions), the tensor-name map, one file per family.
        .target(name: "ModelDescription", dependencies: ["TensorStore", "JSONSupport"]),
        // The FP32 reference forward pass.
        .target(name: "LlamaReference", dependencies: ["ModelDescription", "Kernels", "TensorStore", "CFireQKernels"]),
        .target(name: "CalibrationStats", dependencies: ["ModelDescription", "Kernels", "LlamaReference", "Tokenizer", "TensorStore", "JSONSupport", "CHDF5"]),
        .target(name: "Quantization", dependencies: ["ModelDescription", "PackedFormat", "Runtime", "CalibrationStats", "LlamaReference", "Kernels", "LowPrecision", "TensorStore", "JSONSupport", "CFireQKernels"]),
        .target(name: "PackedFormat", dependencies: ["TensorStore", "LowPrecision", "JSONSupport", "CZlib"]),
        // The INT4-FP8 runtime: never imports calibration or quantization code.
        .target(name: "Runtime", dependencies: ["ModelDescription", "Kernels", "LlamaReference", "PackedFormat", "TensorStore", "LowPrecision", "CFireQKernels"]),
        // Re-expressions of packed folders for other runtimes (Formats/exports.md).
        .target(name: "Exports", dependencies: ["ModelDescription", "Tokenizer", "PackedFormat", "LlamaReference", "TensorStore", "LowPrecision", "JSONSupport"]),
        .target(name: "Evaluation", dependencies: ["LlamaReference", "Kernels", "CFireQKernels"]),
        .target(name: "Reports", dependencies: ["Evaluation", "JSONSupport", "TensorStore", "CFireQKernels"]),
        // What the CLI, the tests and the batch runner share: convert's and calibration's stages,
        // the Slurm scripts' pieces, generation, the kernel benchmarks, progress reporting
        // (libraries do not print).
        .target(name: "Pipelines", dependencies: ["ModelDescription", "Evaluation", "Reports", "Exports", "CalibrationStats", "Quantization", "PackedFormat", "Runtime", "LlamaReference", "Kernels", "Tokenizer", "TensorStore", "JSONSupport", "CFireQKernels"]),
        // Many conversions from one manifest: parsing, the runner, the Slurm array script, the summary.
        .target(name: "Batch", dependencies: ["Pipelines", "Exports", "PackedFormat", "Quantization", "Reports", "TensorStore", "JSONSupport"]),
        .executableTarget(name: "fireq", dependencies: [
            "Batch", "Pipelines", "ModelDescription", "Evaluation", "Reports", "Exports", "CalibrationStats", "Quantization", "PackedFormat", "Runtime", "LlamaReference", "Tokenizer", "TensorStore", "CFireQKernels", "JSONSupport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], plugins: ["BuildInfo"]),
        // `fireq --version`'s commit, generated before each build.
        .plugin(name: "BuildInfo", capability: .buildTool()),
        .testTarget(name: "FireQTests", dependencies: [
            "JSONSupport", "LowPrecision", "Kernels", "TensorStore", "Tokenizer", "ModelDescription", "LlamaReference", "Evaluation", "CFireQKernels", "Runtime", "CalibrationStats", "Quantization", "PackedFormat", "Exports", "Pipelines", "Batch",
        ]),
    ],
    swiftLanguageModes: [.v6]
)
