import Foundation
import IWAE

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

extension String {
    /// The string right-aligned in `width` columns (spaces before it), for tables.
    public func leftPadded(_ width: Int) -> String { String(repeating: " ", count: Swift.max(0, width - count)) + self }
}

/// `x` with `digits` decimals.
/// Checks, before any work, that a file can be written at `path` (its
/// directory exists and is writable, the path is not a directory), with a
/// one-line error naming `option` otherwise: a long run must not end in a
/// write that fails.
public func checkWritableFile(_ path: String, option: String) throws {
    let directory = splitPath(path).directory
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
        throw IWAEError.invalidArgument("\(option) \(path) is a directory")
    }
    guard access(directory.isEmpty ? "." : directory, W_OK) == 0 else {
        throw IWAEError.invalidArgument("\(option) \(path): cannot write in \(directory.isEmpty ? "." : directory) (\(String(cString: strerror(errno))))")
    }
}

public func formatted(_ x: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", x) }

/// A value of the tools' JSON output (`jsonLine`).
public protocol JSONField {
    /// The value as JSON text.
    var jsonText: String { get }
}

extension Double: JSONField {
    /// Swift's shortest text that reads back as the same Double (as
    /// `JSONEncoder` writes it); NaN and infinities as null.
    public var jsonText: String { isFinite ? "\(self)" : "null" }
}

extension Int: JSONField {
    public var jsonText: String { String(self) }
}

extension Bool: JSONField {
    public var jsonText: String { self ? "true" : "false" }
}

extension String: JSONField {
    /// A string literal: quotes, backslashes and control characters escaped.
    public var jsonText: String {
        var out = "\""
        for scalar in unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

extension Array: JSONField where Element: JSONField {
    public var jsonText: String { "[" + map(\.jsonText).joined(separator: ", ") + "]" }
}

extension Optional: JSONField where Wrapped: JSONField {
    public var jsonText: String { map(\.jsonText) ?? "null" }
}

/// One JSON object on one line, its keys in the order given: the one writer
/// of every JSON row `iwae` and `iwae-bench` print (`--json`).
public func jsonLine(_ fields: [(String, any JSONField)]) -> String {
    "{" + fields.map { "\($0.0.jsonText): \($0.1.jsonText)" }.joined(separator: ", ") + "}"
}
