/// Every error of reading and writing data: one line that names the file
/// and the problem.
public enum DataError: Error, CustomStringConvertible, Equatable {
    /// A data file is missing, unreadable or malformed.
    case invalidData(String)
    /// A data-set setting is out of range.
    case invalidArgument(String)
    /// A file could not be written.
    case writeFailed(String)

    public var description: String {
        switch self {
        case .invalidData(let m), .invalidArgument(let m), .writeFailed(let m): return m
        }
    }
}
