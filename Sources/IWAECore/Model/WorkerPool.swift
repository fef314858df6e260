import Foundation
import IWAELinearAlgebra

/// The worker threads of one process within a group of ranks: how the rows
/// of a batch are split among them, and running one closure per busy worker
/// at once.
///
/// Workers are numbered globally: rank r of R, with W workers each, holds
/// workers r·W ..< (r+1)·W. A batch of n rows is cut into min(R·W, n)
/// contiguous blocks of ⌈n / blocks⌉ rows, global worker g taking block g:
/// the same rows as worker g of one process with R·W workers.
package struct WorkerPool: Sendable {
    /// This process's workers (W).
    package let count: Int
    /// The global index of this process's first worker.
    package let first: Int
    /// Workers over all ranks (R·W).
    package let total: Int

    package init(count: Int, rank: Int, ranks: Int) {
        self.count = count
        first = rank * count
        total = ranks * count
    }

    /// Block `w` of `n` rows cut into `workers` blocks.
    package static func block(_ w: Int, of n: Int, workers: Int) -> Range<Int> {
        let size = (n + workers - 1) / workers
        return Swift.min(n, w * size)..<Swift.min(n, (w + 1) * size)
    }

    /// The rows of a batch of `n` that local worker `j` takes (empty when
    /// the batch has fewer rows than workers before it).
    package func rows(ofLocal j: Int, in n: Int) -> Range<Int> {
        let active = Swift.min(total, n)
        let g = first + j
        return g < active ? WorkerPool.block(g, of: n, workers: active) : n..<n
    }

    /// How many local workers have rows in a batch of `n` (a prefix of them).
    package func busyWorkers(in n: Int) -> Int {
        var busy = 0
        while busy < count && !rows(ofLocal: busy, in: n).isEmpty { busy += 1 }
        return busy
    }

    /// The rows of `n` the busy local workers take, first to last.
    package func rowsOfThisProcess(in n: Int) -> Range<Int> {
        let busy = busyWorkers(in: n)
        return busy == 0 ? n..<n : rows(ofLocal: 0, in: n).lowerBound..<rows(ofLocal: busy - 1, in: n).upperBound
    }

    /// Runs `body(j)` for local workers 0 ..< `workers` at once (inline for
    /// one; with `inTurn`, one after the other on the calling thread), each
    /// with subnormals flushed to zero (`SubnormalFlushing`), and returns
    /// their errors, each recorded with `firstRow(j)` so that an example
    /// index in it counts from the start of the batch.
    package static func run(_ workers: Int, inTurn: Bool = false, firstRow: (Int) -> Int,
                            _ body: (Int) throws -> Void) -> WorkerErrors {
        let count = Swift.max(workers, 1)
        let errors = WorkerErrors(count: count)
        func work(_ j: Int) {
            let flushing = SubnormalFlushing.begin()
            defer { flushing.end() }
            do { try body(j) } catch { errors.record(error, worker: j, firstRow: firstRow(j)) }
        }
        if inTurn {
            for j in 0..<count { work(j) }
        } else {
            concurrently(count) { work($0) }
        }
        return errors
    }
}
