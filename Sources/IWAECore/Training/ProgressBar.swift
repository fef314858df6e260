import Foundation

/// A one-line progress bar on stderr, redrawn in place on a terminal and
/// silent otherwise (logs get the per-epoch lines instead).
public enum ProgressBar {
    static let isTerminal = isatty(2) == 1
    nonisolated(unsafe) static var drawn = false

    public static func draw(_ label: String, done: Int, total: Int, detail: String) {
        guard isTerminal else { return }
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

    /// A line of the run's log, on stdout (stderr carries only the bar and errors).
    public static func log(_ line: String) {
        finishLine()
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}

public func formatted(_ x: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", x) }
