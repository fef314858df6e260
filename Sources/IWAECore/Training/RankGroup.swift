/// The processes that train one model together (MPI ranks), as the engine
/// sees them: who this process is, and the three exchanges a data-parallel
/// step needs. `SingleRank` is the one-process group; the `MPI` package
/// trait adds `MPIRanks` (module IWAEMPI).
///
/// Every rank calls the same exchanges in the same order, with buffers of the
/// same length: they are collective operations.
package protocol RankGroup: AnyObject {
    /// This process's index, 0 ..< `count`.
    var rank: Int { get }
    /// R, the number of ranks.
    var count: Int { get }

    /// Sums `values` over the ranks, in place; afterwards every rank holds
    /// the same bits. The default reducer adds in rank order,
    /// ((g₀ + g₁) + g₂) + …, the order in which one process adds its
    /// workers' gradients.
    func sum(_ values: inout MutableSpan<Float>)

    /// Bitwise OR over the ranks, in place. For words that are non-zero on
    /// at most one rank (each rank fills its own slots), every rank ends up
    /// with all of them: an exact all-gather of floats, flags and generator
    /// states by their bit patterns.
    func merge(_ words: inout MutableSpan<UInt64>)
}

package extension RankGroup {
    /// `sum` over a buffer the package owns.
    func sum(_ values: UnsafeMutableBufferPointer<Float>) {
        var span = values.mutableSpan
        sum(&span)
    }

    /// `merge` over a buffer the package owns.
    func merge(_ words: UnsafeMutableBufferPointer<UInt64>) {
        var span = words.mutableSpan
        merge(&span)
    }
}

extension RankGroup {
    /// True on every rank when `flag` is true on any rank.
    package func anyRank(_ flag: Bool) -> Bool {
        if count == 1 { return flag }
        return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 1) { word in
            word[0] = flag ? 1 : 0
            merge(word)
            return word[0] != 0
        }
    }

    /// Makes a failure on some ranks a failure on all, so that no rank waits
    /// in an exchange for one that has left. Every rank calls it at the same
    /// point with its own outcome (`failure` nil on success).
    ///
    /// With no failure anywhere it returns. Otherwise the lowest failing rank
    /// L sends its error's text to all; rank 0 then throws
    /// `IWAEError.rankFailed(rank: L, …)` and the others
    /// `IWAEError.stoppedWithOtherRanks`, which the command line does not
    /// print: the user reads one line. (One rank alone rethrows `failure`.)
    package func agree(_ failure: Error?) throws {
        if count == 1 {
            if let failure { throw failure }
            return
        }
        let messageWords = 64   // 512 bytes of the message
        let failing: Int? = withUnsafeTemporaryAllocation(of: UInt64.self, capacity: count) { flags in
            for r in 0..<count { flags[r] = 0 }
            if failure != nil { flags[rank] = 1 }
            merge(flags)
            return (0..<count).first { flags[$0] != 0 }
        }
        guard let failing else { return }
        let message = withUnsafeTemporaryAllocation(of: UInt64.self, capacity: messageWords) { words in
            for i in 0..<messageWords { words[i] = 0 }
            if rank == failing, let failure {
                let bytes = Array(String(describing: failure).utf8.prefix(messageWords * 8 - 1))
                UnsafeMutableRawBufferPointer(words).copyBytes(from: bytes)
            }
            merge(words)
            let raw = UnsafeRawBufferPointer(words)
            return String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if rank == 0 { throw IWAEError.rankFailed(rank: failing, message: message) }
        throw IWAEError.stoppedWithOtherRanks
    }

    /// Stops every rank with `error`, which every rank met at this same point
    /// (a value they all computed from exchanged data).
    package func failTogether(_ error: Error) throws -> Never {
        try agree(error)
        throw error   // one rank alone: agree rethrew it already
    }

    /// Runs `body` on every rank and agrees on its outcome (see `agree`).
    /// An error that all ranks already agreed on inside `body` (see
    /// `IWAEError.isAgreedAcrossRanks`) passes through as it is.
    package func together<T>(_ body: () throws -> T) throws -> T {
        do {
            let value = try body()
            try agree(nil)
            return value
        } catch let error as IWAEError where count > 1 && error.isAgreedAcrossRanks {
            throw error
        } catch {
            try agree(error)
            throw error   // not reached: agree throws on every rank when one failed
        }
    }
}

/// The group of one process: every exchange is the identity.
package final class SingleRank: RankGroup {
    package init() {}
    package var rank: Int { 0 }
    package var count: Int { 1 }
    package func sum(_ values: inout MutableSpan<Float>) {}
    package func merge(_ words: inout MutableSpan<UInt64>) {}
}
