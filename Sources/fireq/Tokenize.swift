import ArgumentParser
import Foundation
import JSONSupport
import Pipelines
import Tokenizer

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of a text as a JSON array (no BOS added).")

    @Option(name: .long, help: "Model folder holding tokenizer.json.")
    var model: String
    @Option(name: .long, help: "Text file to tokenize (default: standard input).")
    var text: String?
    @Flag(name: .long, help: "Print an object with ids and count instead of the bare array.")
    var json = false

    func run() throws {
        do {
            let tok = try Tokenizer(directory: model)
            let input: String
            if let text {
                input = try readText(text)
            } else {
                let data = FileHandle.standardInput.readDataToEndOfFile()
                guard let s = String(validating: data, as: UTF8.self) else {
                    throw CLIError("standard input is not valid UTF-8 text.")
                }
                input = s
            }
            let ids = tok.encodeParallel(input)
            let array = JSONValue.array(ids.map { .int(Int($0)) })
            if json {
                print(JSONWriter.serialize(.object(JSONObject([("count", .int(ids.count)), ("ids", array)]))))
            } else {
                print(JSONWriter.serialize(array))
            }
        } catch { fail(error) }
    }
}
