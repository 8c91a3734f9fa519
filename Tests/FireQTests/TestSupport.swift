import Foundation
import Testing

/// Locations of test inputs. The package root is found from this file's path; the default model
/// is built by Scripts/fetch-default-model.sh (CI runs it first); shared data sits beside the repo.
enum TestPaths {
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
    static var model: String {
        ProcessInfo.processInfo.environment["FIREQ_TEST_MODEL"] ?? root + "/.cache/models/smollm2-135m-instruct"
    }
    static let sharedData = root + "/../shared/data"
    static let golden = sharedData + "/golden/smollm2-135m"
    static let codecGolden = root + "/.cache/golden/codecs.bin"

    /// Fails the calling test with a clear message when a prerequisite file is missing.
    static func require(_ path: String, hint: String) throws {
        if !FileManager.default.fileExists(atPath: path) {
            Issue.record("missing \(path): \(hint)")
            throw TestSetupError(path: path)
        }
    }
    static func requireModel() throws {
        try require(model + "/model.safetensors", hint: "run Scripts/fetch-default-model.sh first")
    }

    /// A fresh temporary folder.
    static func tempDir() -> String {
        let d = NSTemporaryDirectory() + "fireq-test-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    static func read(_ path: String) -> Data { FileManager.default.contents(atPath: path)! }

    static func jsonObject(_ path: String) throws -> Any {
        try JSONSerialization.jsonObject(with: read(path))
    }
}

struct TestSetupError: Error { let path: String }

/// Runs the built `fireq` executable (next to the test bundle) and captures its output.
enum CLI {
    static var binary: String {
        // The test bundle lives in .build/<triple>/<config>/; the executable beside it.
        let bundle = Bundle.main.bundlePath
        var candidates = [
            URL(fileURLWithPath: bundle).deletingLastPathComponent().appendingPathComponent("fireq").path,
            URL(fileURLWithPath: bundle).appendingPathComponent("fireq").path
        ]
        for arg in CommandLine.arguments.prefix(1) {
            candidates.append(
                URL(fileURLWithPath: arg).deletingLastPathComponent().appendingPathComponent("fireq").path)
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }

    struct Result { let status: Int32; let stdout: String; let stderr: String }

    /// Runs `bash -c script` with $0, $1, … = `args` (for limits such as `ulimit -f`).
    static func shell(_ script: String, _ args: [String]) throws -> Result {
        try run(["-c", script] + args, executable: "/bin/bash")
    }

    static func run(
        _ args: [String], stdin: String? = nil, executable: String? = nil, environment: [String: String] = [:],
        cwd: String? = nil
    ) throws -> Result {
        let p = Process()
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        p.executableURL = URL(fileURLWithPath: executable ?? binary)
        p.arguments = args
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let inPipe = Pipe()
        p.standardInput = inPipe
        try p.run()
        if let stdin { inPipe.fileHandleForWriting.write(Data(stdin.utf8)) }
        try inPipe.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(
            status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
            stderr: String(decoding: e, as: UTF8.self))
    }
}
