/// Every error the engine reports to a user: one line that names the problem.
public enum IWAEError: Error, CustomStringConvertible, Equatable {
    /// A value given by the user is out of range or inconsistent.
    case invalidArgument(String)
    /// Data handed to the engine cannot be used (empty, non-finite, wrong size).
    case invalidData(String)
    /// A checkpoint is missing, unreadable, corrupt or of another model.
    case invalidCheckpoint(String)
    /// A file could not be written.
    case writeFailed(String)
    /// The covariance of example `example` of a batch is not positive definite
    /// (LAPACK potrf returned `info`).
    case notPositiveDefinite(example: Int, info: Int)
    /// Training or evaluation produced a non-finite value.
    case numerical(String)
    /// Training was stopped by a signal after saving a checkpoint.
    case interrupted(String)
    /// Rank `rank` of a multi-process run failed with `message` (rank 0 reports it).
    case rankFailed(rank: Int, message: String)
    /// Another rank failed and rank 0 reports it: this rank stops without a message.
    case stoppedWithOtherRanks

    public var description: String {
        switch self {
        case .invalidArgument(let m), .invalidData(let m), .invalidCheckpoint(let m),
             .writeFailed(let m), .numerical(let m), .interrupted(let m):
            return m
        case .notPositiveDefinite(let example, let info):
            return "the encoder covariance of example \(example) in the batch is not positive definite (LAPACK potrf info \(info))"
        case .rankFailed(let rank, let message):
            return rank == 0 ? message : "rank \(rank): \(message)"
        case .stoppedWithOtherRanks:
            return "stopped because another rank failed"
        }
    }

    /// True for the errors that every rank throws at the same point after an
    /// agreement (`RankGroup.agree`, or a stop all ranks agreed on): they end
    /// a multi-rank run cleanly.
    public var isAgreedAcrossRanks: Bool {
        switch self {
        case .rankFailed, .stoppedWithOtherRanks, .interrupted: return true
        default: return false
        }
    }

    /// The same error with an example index counted from `offset` (a
    /// worker's block of a larger batch).
    func shifted(by offset: Int) -> IWAEError {
        if case .notPositiveDefinite(let example, let info) = self { return .notPositiveDefinite(example: example + offset, info: info) }
        return self
    }
}
