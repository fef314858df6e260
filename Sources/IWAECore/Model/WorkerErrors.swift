import Foundation

/// The errors of concurrent workers, by worker (recorded under a lock:
/// ThreadSanitizer caught two workers writing the same Swift arrays).
package final class WorkerErrors: @unchecked Sendable {
    private var slots: [Error?]
    private var offsets: [Int]
    private let lock = NSLock()

    package init(count: Int) {
        slots = [Error?](repeating: nil, count: count)
        offsets = [Int](repeating: 0, count: count)
    }

    package func record(_ error: Error, worker: Int, firstRow: Int) {
        lock.lock()
        defer { lock.unlock() }
        slots[worker] = error
        offsets[worker] = firstRow
    }

    /// The error `rethrow` throws, or nil.
    package var first: Error? {
        do { try rethrow(); return nil } catch { return error }
    }

    /// Rethrows the first worker's error, with an example index counted
    /// from the start of the whole batch.
    package func rethrow() throws {
        for (error, offset) in zip(slots, offsets) {
            guard let error else { continue }
            if let error = error as? IWAEError { throw error.shifted(by: offset) }
            throw error
        }
    }
}
