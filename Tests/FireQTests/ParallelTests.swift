import Foundation
import Kernels
import Testing

/// The persistent pool behind `Parallel`: every chunk runs exactly once, on a worker index below
/// the thread count; nested and concurrent loops (which fall back to Dispatch) finish too.
@Suite struct ParallelTests {
    final class Counts: @unchecked Sendable {
        let lock = NSLock()
        var hits: [Int]
        var workers = Set<Int>()
        init(_ n: Int) { hits = [Int](repeating: 0, count: n) }
        func add(_ r: Range<Int>, _ w: Int) {
            lock.lock(); for i in r { hits[i] += 1 }; workers.insert(w); lock.unlock()
        }
    }

    @Test(arguments: [1, 2, 3, 5]) func everyChunkOnce(threads: Int) {
        for (count, chunk) in [(1, 1), (7, 1), (100, 3), (1000, 16), (5, 10)] {
            for _ in 0..<50 {  // back-to-back jobs: the spinning workers take each one exactly once
                let c = Counts(count)
                Parallel.forEachChunkWithWorker(count, chunk: chunk, threads: threads) { r, w in c.add(r, w) }
                #expect(c.hits.allSatisfy { $0 == 1 }, "count \(count) chunk \(chunk) threads \(threads)")
                #expect(c.workers.allSatisfy { $0 >= 0 && $0 < threads })
            }
        }
    }

    @Test func nestedAndConcurrentLoopsFinish() {
        let outer = Counts(8)
        let inner = Counts(8 * 64)
        Parallel.forEachChunkWithWorker(8, chunk: 1, threads: 2) { r, w in
            outer.add(r, w)
            Parallel.forEachChunk(64, chunk: 4, threads: 2) { s in
                inner.add((r.lowerBound * 64 + s.lowerBound)..<(r.lowerBound * 64 + s.upperBound), 0)
            }
        }
        #expect(outer.hits.allSatisfy { $0 == 1 } && inner.hits.allSatisfy { $0 == 1 })
        let many = Counts(4 * 200)
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            for j in 0..<20 {
                Parallel.forEachChunk(10, chunk: 1, threads: 2) { r in
                    many.add((t * 200 + j * 10 + r.lowerBound)..<(t * 200 + j * 10 + r.upperBound), 0)
                }
            }
        }
        #expect(many.hits.allSatisfy { $0 == 1 })
    }
}
