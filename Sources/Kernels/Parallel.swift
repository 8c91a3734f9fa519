import CFireQKernels
import Foundation

/// Data-parallel loops whose results do not depend on the thread count: work is cut into
/// fixed-size chunks, and every output element is computed by exactly one chunk.
public enum Parallel {
    /// Runs `body(range)` over `0..<count` in chunks of `chunk`, on up to `threads` threads.
    public static func forEachChunk(_ count: Int, chunk: Int, threads: Int, _ body: (Range<Int>) -> Void) {
        forEachChunkWithWorker(count, chunk: chunk, threads: threads) { r, _ in body(r) }
    }

    /// Like `forEachChunk`, also passing the worker's index in `0..<threads` (for per-worker scratch).
    public static func forEachChunkWithWorker(_ count: Int, chunk: Int, threads: Int, _ body: (Range<Int>, Int) -> Void)
    {
        let chunks = (count + chunk - 1) / chunk
        if chunks <= 1 || threads <= 1 {
            var s = 0
            while s < count { body(s..<min(count, s + chunk), 0); s += chunk }
            return
        }
        let usePool = Self.poolEnabled
        withoutActuallyEscaping(body) { body in
            let box = UnsafeWorkerBody(body)
            if usePool {
                let job = PoolJob(body: box.body, count: count, chunk: chunk)
                let ran = withExtendedLifetime(job) {
                    fq_pool_run(
                        Int32(threads), chunks,
                        { ctx, c, worker in
                            let job = Unmanaged<PoolJob>.fromOpaque(ctx!).takeUnretainedValue()
                            job.body((c * job.chunk)..<min(job.count, (c + 1) * job.chunk), Int(worker))
                        }, Unmanaged.passUnretained(job).toOpaque())
                }
                if ran == 1 { return }
            }
            let workers = min(threads, chunks)
            let next = AtomicCounter()
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                while true {
                    let c = next.increment()
                    if c >= chunks { break }
                    box.body((c * chunk)..<min(count, (c + 1) * chunk), w)
                }
            }
        }
    }

    /// `FIREQ_POOL=0` uses Dispatch's concurrentPerform for every loop (the previous behaviour).
    static let poolEnabled = ProcessInfo.processInfo.environment["FIREQ_POOL"] != "0"

    private final class PoolJob {
        let body: (Range<Int>, Int) -> Void, count: Int, chunk: Int
        init(body: @escaping (Range<Int>, Int) -> Void, count: Int, chunk: Int) {
            self.body = body; self.count = count; self.chunk = chunk
        }
    }

    private struct UnsafeWorkerBody: @unchecked Sendable {
        let body: (Range<Int>, Int) -> Void
        init(_ b: @escaping (Range<Int>, Int) -> Void) { body = b }
    }
}

/// A lock-protected counter handing out work items.
final class AtomicCounter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func increment() -> Int { lock.lock(); defer { lock.unlock() }; let v = value; value += 1; return v }
}
