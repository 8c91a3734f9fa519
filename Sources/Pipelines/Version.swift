import Foundation

/// The tool's version, written into every file it produces and every stage key.
public enum FireQVersion {
    public static let string = "0.1.0"
}

/// A one-sentence error of a pipeline (names the file or the setting and what is wrong).
public struct PipelineError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}
