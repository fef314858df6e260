import Synchronization

/// The passes of a forward-only estimate (`estimateLogLikelihood`, AIS):
/// `rows` rows cut into passes of `perPass` rows from row 0, handed out one
/// at a time, in order, to whichever worker asks next. A worker slowed by
/// other work on its core takes fewer passes instead of holding the others
/// up at the end; every pass holds the same rows whatever the worker count,
/// and each row draws from its own stream, so the result does not depend on
/// which worker computed a pass.
package final class PassQueue: Sendable {
    package let rows: Int
    package let perPass: Int
    /// The number of passes, ⌈rows / perPass⌉.
    package let count: Int
    private let taken = Atomic<Int>(0)
    private let finishedRows = Atomic<Int>(0)

    package init(rows: Int, perPass: Int) {
        precondition(rows >= 0 && perPass >= 1)
        self.rows = rows
        self.perPass = perPass
        count = (rows + perPass - 1) / perPass
    }

    /// Takes passes until none is left, computing each with `body(rows)`,
    /// and returns their results by pass; `progress` is called with the rows
    /// all takers have done. When `body` throws, no one takes another pass
    /// and the error's example (if it names one) is counted from row 0.
    package func takeEach<Result>(progress: ((Int) -> Void)?, _ body: (Range<Int>) throws -> Result) throws -> [Int: Result] {
        var results = [Int: Result]()
        while let (pass, rows) = next() {
            do { results[pass] = try body(rows) } catch {
                abandon()
                throw (error as? IWAEError)?.shifted(by: rows.lowerBound) ?? error
            }
            let finished = finishedRows.add(rows.count, ordering: .relaxed).newValue   // counted by every taker, reported by one
            progress?(finished)
        }
        return results
    }

    /// The results of every pass, in pass order, from what each taker
    /// returned (`takeEach`); every pass must have been taken.
    package func inPassOrder<Result>(_ taken: [[Int: Result]]) -> [Result] {
        var results = [Result?](repeating: nil, count: count)
        for (pass, result) in taken.joined() { results[pass] = result }
        return results.map { $0! }
    }

    /// The next pass no one has taken (its index and its rows), or nil when
    /// none is left.
    private func next() -> (index: Int, rows: Range<Int>)? {
        let index = taken.add(1, ordering: .relaxed).oldValue
        guard index < count else { return nil }
        return (index, index * perPass..<Swift.min(rows, (index + 1) * perPass))
    }

    /// Leaves the passes not yet taken to no one: a taker has failed, and
    /// the others stop after the pass they are computing.
    private func abandon() {
        taken.store(count, ordering: .relaxed)
    }

    /// The rows all takers have finished so far.
    package var finished: Int { finishedRows.load(ordering: .relaxed) }
}
