import Foundation

/// Runs `body` over `count` items split into one contiguous range per core
/// (a single call when `count` is below `minimumPerCore` per core).
/// For memory-bound flat loops (optimizer updates, gradient sums); each
/// chunk runs with subnormals flushed (`withSubnormalsFlushed`).
package func forEachChunk(count: Int, minimumPerCore: Int = 65536, _ body: (Range<Int>) -> Void) {
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let chunks = Swift.max(1, Swift.min(cores, count / Swift.max(minimumPerCore, 1)))
    if chunks == 1 { withSubnormalsFlushed { body(0..<count) }; return }
    let size = (count + chunks - 1) / chunks
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
        let range = Swift.min(count, c * size)..<Swift.min(count, (c + 1) * size)
        if !range.isEmpty { withSubnormalsFlushed { body(range) } }
    }
}
