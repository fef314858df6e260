import Foundation

/// Progress of long runs for a person watching: on a terminal a one-line bar
/// on stderr, redrawn in place; off a terminal (a pipe, a log file) a plain
/// line on stderr at most every `plainInterval` seconds, so a log shows the
/// run is alive without filling up.
public enum ProgressBar {
    static let isTerminal = isatty(2) == 1
    /// Seconds between plain progress lines off a terminal.
    public static let plainInterval = 15.0
    nonisolated(unsafe) static var drawn = false
    nonisolated(unsafe) static var lastPlainLine = Date()
    /// True on MPI ranks other than 0: only rank 0 shows progress and logs.
    nonisolated(unsafe) public static var silenced = false

    public static func draw(_ label: String, done: Int, total: Int, detail: String) {
        if silenced { return }
        guard isTerminal else {
            let now = Date()
            guard now.timeIntervalSince(lastPlainLine) >= plainInterval else { return }
            lastPlainLine = now
            FileHandle.standardError.write(Data("\(label) \(done)/\(total)  \(detail)\n".utf8))
            return
        }
        let width = 30
        let filled = total > 0 ? Swift.min(width, done * width / total) : width
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        FileHandle.standardError.write(Data("\r\u{1B}[2K\(label) \(bar) \(done)/\(total)  \(detail)".utf8))
        drawn = true
    }

    /// Ends a drawn bar so the next output starts on a fresh line.
    public static func finishLine() {
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8)) }
        drawn = false
    }

    /// A line of the run's log, on stdout (stderr carries only progress and errors).
    public static func log(_ line: String) {
        if silenced { return }
        finishLine()
        print(line)
    }
}

/// Makes standard output line-buffered, so that every log line, table row and
/// JSON row reaches a pipe or a file when it is printed, not when the
/// process exits. Call first thing in `main`.
public func lineBufferStandardOutput() {
    setvbuf(stdout, nil, _IOLBF, 0)
}

/// `x` with `digits` decimals.
public func formatted(_ x: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", x) }

/// A JSON string literal, escaped.
public func jsonString(_ s: String) -> String {
    String(decoding: (try? JSONEncoder().encode(s)) ?? Data("\"\"".utf8), as: UTF8.self)
}

/// A JSON number, or null for NaN and infinities.
public func jsonNumber(_ x: Double) -> String { x.isFinite ? String(format: "%.6f", x) : "null" }
