import Foundation
import Pipelines

/// Terminal progress: a redrawn bar with ETA and resident memory on a TTY, plain lines otherwise.
/// Writes to stderr so stdout stays machine-readable.
final class TerminalProgress: ProgressReporter {
    let tty = isatty(2) == 1

    func line(_ s: String) {
        FileHandle.standardError.write(Data((s + "\n").utf8))
    }

    func progress(done: Int, total: Int, started: Date, label: String) {
        let elapsed = Date().timeIntervalSince(started)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let rss = ProcessMemory.residentMiB()
        if tty {
            let width = 30, filled = total > 0 ? width * done / total : width
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            let s = String(
                format: "\r%@ %d/%d %@  %.0fs elapsed, ETA %.0fs, RSS %d MiB", bar, done, total, label, elapsed, eta,
                rss)
            FileHandle.standardError.write(Data((s + (done == total ? "\n" : "")).utf8))
        } else {
            line(
                String(
                    format: "%d/%d %@ done, %.1fs elapsed, ETA %.0fs, RSS %d MiB", done, total, label, elapsed, eta, rss
                ))
        }
    }
}
