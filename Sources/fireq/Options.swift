import ArgumentParser
import Foundation

struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Hugging Face model folder (config.json, *.safetensors, tokenizer.json).")
    var model: String

    func validate() throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: model, isDirectory: &isDir), isDir.boolValue else {
            throw ValidationError("--model '\(model)' is not a folder.")
        }
    }
}

struct ComputeOptions: ParsableArguments {
    @Option(name: .long, help: "Worker threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    func validate() throws {
        guard threads >= 1 && threads <= 1024 else { throw ValidationError("--threads must be between 1 and 1024.") }
    }
}

/// Prints an error as one line on stderr and exits with status 1 (data errors are not usage errors).
func fail(_ error: Error) -> Never {
    let text = String(describing: error)
    FileHandle.standardError.write(Data(("error: " + text + "\n").utf8))
    Foundation.exit(1)
}

/// Reads a whole file as UTF-8 text, with a one-sentence error when it cannot.
func readText(_ path: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw CLIError("\(path): cannot read the file (missing or not readable).")
    }
    guard let s = String(validating: data, as: UTF8.self) else {
        throw CLIError("\(path): the file is not valid UTF-8 text.")
    }
    return s
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

func printJSON(_ pairs: [(String, String)]) {
    print("{" + pairs.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
}
