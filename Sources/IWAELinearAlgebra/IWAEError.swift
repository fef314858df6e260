import RealModule
/// Every error the engine reports to a user: one line that names the problem.
public enum IWAEError: Error, CustomStringConvertible, Equatable {
    /// A value given by the user is out of range or inconsistent.
    case invalidArgument(String)
    /// A data file is missing, unreadable or malformed.
    case invalidData(String)
    /// A checkpoint is missing, unreadable, corrupt or of another model.
    case invalidCheckpoint(String)
    /// A file could not be written.
    case writeFailed(String)
    /// Training produced a non-finite value.
    case numerical(String)
    /// Training was stopped by a signal after saving a checkpoint.
    case interrupted(String)

    public var description: String {
        switch self {
        case .invalidArgument(let m), .invalidData(let m), .invalidCheckpoint(let m),
             .writeFailed(let m), .numerical(let m), .interrupted(let m):
            return m
        }
    }
}
