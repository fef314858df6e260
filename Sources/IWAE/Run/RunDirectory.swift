import Foundation

/// What a training run keeps in its output directory besides the checkpoint
/// and metrics: an exclusive lock for the whole run, and the clean-up of
/// what killed runs left behind.
package enum RunDirectory {
    static let lockName = ".iwae-train.lock"
    /// Descriptors of the locks this process holds (kept open until exit).
    nonisolated(unsafe) static var held: [String: Int32] = [:]

    /// Creates `directory` for a new run, or finds it; returns whether this
    /// process created it (`mkdir`, so that of two racing runs one only
    /// does). Either way the run then takes its lock.
    package static func create(_ directory: String) throws -> Bool {
        do { return try prepareOutputDirectory(directory) }
        catch let error as DataError { throw IWAEError.writeFailed(error.description) }
    }

    /// Takes the run directory's exclusive lock (flock), held until the
    /// process exits; a second run on the same directory fails at once.
    package static func lock(_ directory: String) throws {
        if held[directory] != nil { return }
        let fd = open(directory + "/" + lockName, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw IWAEError.writeFailed("cannot lock \(directory): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw IWAEError.invalidArgument("another iwae train is running in \(directory) (it holds \(directory)/\(lockName))")
        }
        held[directory] = fd
    }

    /// Whether this process holds `directory`'s lock.
    package static func holdsLock(_ directory: String) -> Bool { held[directory] != nil }

    /// Removes temporary checkpoint files (`.model.safetensors.tmp-PID`)
    /// whose writer is no longer alive, as a SIGKILL leaves them.
    static func removeOrphanedTemporaries(in directory: String) {
        let prefix = "." + Checkpoint.fileName + ".tmp-"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(directory + "/" + name) }
        }
    }

    /// Removes a directory this process created and locked, if the run
    /// failed before it wrote anything there (only the lock). A directory
    /// another process made, or whose lock it holds, is left alone.
    package static func removeIfUnused(_ directory: String, created: Bool) {
        guard created && holdsLock(directory) else { return }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? ["?"]
        guard names.allSatisfy({ $0 == lockName }) else { return }
        unlink(directory + "/" + lockName)
        rmdir(directory)
    }

    /// Appends one line to a file and flushes it to disk.
    static func appendLine(_ line: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard fd >= 0 else { throw IWAEError.writeFailed("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array((line + "\n").utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(fd) == 0 else {
            throw IWAEError.writeFailed("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
