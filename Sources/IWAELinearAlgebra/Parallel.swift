import CIWAEKernels
import Foundation
import Synchronization

/// Runs `body(i)` for i in 0 ..< `count` at once: i = 0 on the calling
/// thread, the others on the process's helper threads (`HelperThreads`),
/// thread i always running index i. Returns when all have returned. Called
/// while the helpers are taken (from inside `body`, or from another thread
/// at the same time), it runs on libdispatch's `concurrentPerform` instead.
///
/// Why not `concurrentPerform` always: a training step hands its workers
/// work twice (the gradient, then Adam's update) within a millisecond, and
/// libdispatch wakes its sleeping threads for each; the second core joined
/// 30–90 µs late, a tenth of a small step.
package func concurrently(_ count: Int, _ body: (Int) -> Void) {
    if count <= 1 {
        if count == 1 { body(0) }
        return
    }
    if !HelperThreads.shared.run(count, body) { DispatchQueue.concurrentPerform(iterations: count, execute: body) }
}

/// Runs `body` over `count` items on `cores` threads (nil: all active
/// cores; one call on the calling thread when `count` is below
/// `minimumPerCore` per core). The items are cut into pieces of
/// `pieceSize` (the last shorter), which the threads take in turn as each
/// finishes its last, so that a core slowed by colder memory or a
/// neighbour does not hold the other waiting at the end. For memory-bound
/// flat loops whose items are independent (optimizer updates, gradient
/// sums): which thread computes a piece never changes a result. Each piece
/// runs with subnormals flushed (`withSubnormalsFlushed`).
///
/// `meanwhile` runs first on the calling thread (before any
/// piece there, without flushing) while the other threads start on the
/// pieces: other work of the caller's that the loop's end need not wait for.
package func forEachChunk(count: Int, cores: Int? = nil, minimumPerCore: Int = 65536, meanwhile: () -> Void = {},
                          _ body: (Range<Int>) -> Void) {
    let cores = cores ?? ProcessInfo.processInfo.activeProcessorCount
    let threads = Swift.max(1, Swift.min(cores, count / Swift.max(minimumPerCore, 1)))
    if threads == 1 {
        meanwhile()
        if count > 0 { withSubnormalsFlushed { body(0..<count) } }
        return
    }
    let pieces = (count + pieceSize - 1) / pieceSize
    let taken = Atomic<Int>(0)
    concurrently(threads) { thread in
        if thread == 0 { meanwhile() }
        withSubnormalsFlushed {
            while case let piece = taken.wrappingAdd(1, ordering: .relaxed).oldValue, piece < pieces {
                body(piece * pieceSize..<Swift.min(count, (piece + 1) * pieceSize))
            }
        }
    }
}

/// `forEachChunk`'s piece: 16384 items (64 KB of Float), long enough for
/// the prefetchers, short enough that the threads end within a few
/// microseconds of each other.
private let pieceSize = 16384

/// The threads that `concurrently` hands work to, started when first
/// needed (one per index above 0) and kept. Between jobs each spins on the
/// published job for `spinNanoseconds`, yielding its core now and then to
/// any other thread that wants it, and then sleeps until the next job.
///
/// A job is published as one word, its sequence number and its count, so
/// that a thread reads both at once; the caller waits until the count's
/// threads have finished before it returns (and before the next job).
final class HelperThreads: @unchecked Sendable {
    static let shared = HelperThreads()

    /// How long a helper spins for the next job before it sleeps: longer
    /// than the gaps within and between training steps, short enough that
    /// an idle process leaves its cores alone.
    static let spinNanoseconds: UInt64 = 200_000

    /// Whether a caller holds the helpers.
    private let taken = Atomic<Bool>(false)
    /// The current job: sequence number · 2¹⁶ + count.
    private let published = Atomic<Int>(0)
    /// Helpers of the current job that have not finished.
    private let unfinished = Atomic<Int>(0)
    /// The current job's body (set by the holder before it publishes).
    private var body: ((Int) -> Void)?
    /// Helpers started: indices 1 ... started (read and written by the holder only).
    private var started = 0
    /// Sleeping helpers wait on it. A helper reads the job word under its
    /// lock before it waits, and the holder takes the lock after publishing
    /// to broadcast: no job goes unseen.
    private let wakeUp = NSCondition()

    /// Runs the job on the caller and `count − 1` helpers; false, having
    /// run nothing, when another caller holds the helpers.
    func run(_ count: Int, _ job: (Int) -> Void) -> Bool {
        precondition(count < 1 << 16, "\(count) concurrent jobs")
        guard taken.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { taken.store(false, ordering: .releasing) }
        let last = published.load(ordering: .relaxed)
        while started < count - 1 {
            started += 1
            let index = started
            let thread = Thread { HelperThreads.shared.serve(index, after: last) }
            thread.name = "iwae helper \(index)"
            thread.start()
        }
        withoutActuallyEscaping(job) { job in
            body = job
            unfinished.store(count - 1, ordering: .relaxed)
            published.store(((last >> 16) + 1) << 16 | count, ordering: .releasing)
            wakeUp.lock()
            wakeUp.broadcast()
            wakeUp.unlock()
            job(0)
            var spins = 0
            while unfinished.load(ordering: .acquiring) != 0 { HelperThreads.pause(&spins) }
            body = nil
        }
        return true
    }

    /// Helper `index`'s loop: each job published after `seen` whose count
    /// includes it, run, then counted as finished.
    private func serve(_ index: Int, after seen: Int) {
        var seen = seen
        while true {
            seen = next(after: seen)
            if index < seen & 0xFFFF {
                call(index)
                unfinished.subtract(1, ordering: .releasing)
            }
        }
    }

    /// Runs the current body (its reference released before returning, so
    /// that the holder's `withoutActuallyEscaping` ends with it unshared).
    @inline(never)
    private func call(_ index: Int) { body!(index) }

    /// The next job word after `seen`: spun for, then slept for.
    private func next(after seen: Int) -> Int {
        let deadline = DispatchTime.now().uptimeNanoseconds + HelperThreads.spinNanoseconds
        var spins = 0
        while true {
            let word = published.load(ordering: .acquiring)
            if word != seen { return word }
            HelperThreads.pause(&spins)
            if spins & 255 == 0 && DispatchTime.now().uptimeNanoseconds > deadline { break }
        }
        wakeUp.lock()
        defer { wakeUp.unlock() }
        while true {
            let word = published.load(ordering: .acquiring)
            if word != seen { return word }
            wakeUp.wait()
        }
    }

    /// One turn of a spin: the CPU's pause, and every 64th turn the core
    /// offered to another runnable thread (an OpenMP or OpenBLAS thread of the
    /// caller's products, or another process).
    @inline(__always)
    private static func pause(_ spins: inout Int) {
        spins &+= 1
        if spins & 63 == 0 { sched_yield() } else { iwae_spin_pause() }
    }
}
