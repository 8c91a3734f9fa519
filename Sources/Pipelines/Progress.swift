import Foundation

/// Where a pipeline reports what it is doing. Libraries do not print: the CLI implements this
/// for the terminal (`fireq`'s TerminalProgress), tests and embedders pass `SilentProgress` or
/// their own.
public protocol ProgressReporter: AnyObject, Sendable {
    /// One line of what happens (a stage starting, a result).
    func line(_ s: String)
    /// `done` of `total` units (`label`: "layers", "windows", …) since `started`.
    func progress(done: Int, total: Int, started: Date, label: String)
}

/// Reports nothing.
public final class SilentProgress: ProgressReporter {
    public init() {}
    public func line(_ s: String) {}
    public func progress(done: Int, total: Int, started: Date, label: String) {}
}

/// This process's memory, as progress lines and reports quote it.
public enum ProcessMemory {
    /// Current resident set size in bytes from /proc/self/statm (0 where unavailable).
    public static func residentBytes() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let parts = s.split(separator: " ")
        guard parts.count > 1, let pages = Int(parts[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Current resident set size from /proc/self/statm (0 where unavailable).
    public static func residentMiB() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let parts = s.split(separator: " ")
        guard parts.count > 1, let pages = Int(parts[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE))) / (1 << 20)
    }

    /// Peak resident set size (VmHWM) from /proc/self/status.
    public static func peakRSSMiB() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for l in s.split(separator: "\n") where l.hasPrefix("VmHWM:") {
            return (Int(l.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
        }
        return 0
    }
}
