import Foundation

/// What every Slurm script of the tool takes from the command line (`fireq batch slurm`,
/// `fireq calibrate-slurm`).
public struct SlurmOptions: Sendable {
    public var partition: String?
    public var time: String?
    public var cpusPerTask = 2
    public var maxParallel = 4
    public var mem: String?
    public var jobName = "fireq-batch"
    public init() {}
}

/// Pieces the Slurm scripts share.
public enum SlurmScript {
    /// Single-quoted for bash.
    public static func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
}
