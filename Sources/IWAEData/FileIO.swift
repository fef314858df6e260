import RealModule
import Foundation
import IWAELinearAlgebra

/// The largest file the engine reads (data sets and checkpoints): 4 GiB.
package let maximumFileSize = 1 << 32

/// Reads a whole regular file of at most `limit` bytes, with a one-line error
/// naming it. Devices (`/dev/zero`), FIFOs and sockets are refused before a
/// byte is read: they could be endless or block forever.
package func readFile(_ path: String, limit: Int = maximumFileSize) throws -> [UInt8] {
    let (fd, info) = try openRegularFile(path)
    defer { close(fd) }
    guard info.st_size <= limit else {
        throw DataError.invalidData("\(path) has \(info.st_size) bytes, more than the \(limit) this reads")
    }
    _ = fcntl(fd, F_SETFL, 0)
    var bytes = [UInt8]()
    bytes.reserveCapacity(Int(info.st_size))
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw DataError.invalidData("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0..<n])
        // A file that grows while it is read is cut off at its size limit.
        if bytes.count > limit { throw DataError.invalidData("\(path) grew past \(limit) bytes while it was read") }
    }
    return bytes
}

/// Opens `path` for reading, with a one-line error naming it, and checks
/// that it is a regular file: devices (`/dev/zero`), FIFOs and sockets are
/// refused before a byte is read (they could be endless or block forever).
/// The caller closes the descriptor.
package func openRegularFile(_ path: String) throws -> (Int32, stat) {
    // O_NONBLOCK: opening a FIFO without a writer would otherwise wait forever.
    let fd = open(path, O_RDONLY | O_NONBLOCK)
    guard fd >= 0 else { throw DataError.invalidData("cannot read \(path): \(String(cString: strerror(errno)))") }
    var info = stat()
    guard fstat(fd, &info) == 0 else {
        close(fd)
        throw DataError.invalidData("cannot stat \(path): \(String(cString: strerror(errno)))")
    }
    let kind = info.st_mode & S_IFMT
    guard kind == S_IFREG else {
        close(fd)
        throw DataError.invalidData(kind == S_IFDIR ? "\(path) is a directory, not a file" : "\(path) is not a regular file")
    }
    return (fd, info)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it is
/// written, flushed to disk and renamed over `path`, so a crash leaves either
/// the old file or the new one, never a half-written one.
package func writeFileAtomically(_ bytes: [UInt8], to path: String) throws {
    let file = try AtomicFile(path)
    try file.append(bytes)
    try file.commit()
}

/// A file written in pieces that appears at `path` whole or not at all: the
/// pieces go to a temporary file beside it, `commit` flushes it to disk and
/// renames it over `path`; dropped without `commit` (an error, a signal),
/// the temporary file is removed and `path` is untouched.
package final class AtomicFile {
    package let path: String
    private let temporary: String
    private var fd: Int32
    private var committed = false

    package init(_ path: String) throws {
        self.path = path
        let (directory, name) = splitPath(path)
        temporary = (directory.isEmpty ? "." : directory) + "/.\(name).tmp-\(getpid())"
        fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw DataError.writeFailed("cannot write \(path): \(String(cString: strerror(errno)))") }
    }

    deinit {
        if !committed {
            if fd >= 0 { close(fd) }
            unlink(temporary)
        }
    }

    /// Appends `bytes`.
    package func append(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw DataError.writeFailed("cannot write \(path): \(String(cString: strerror(errno)))")
                }
                offset += n
            }
        }
    }

    /// Flushes the file to disk and puts it at `path`.
    package func commit() throws {
        var failure: String?
        if fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        if close(fd) != 0 && failure == nil { failure = String(cString: strerror(errno)) }
        fd = -1
        if failure == nil && rename(temporary, path) != 0 { failure = String(cString: strerror(errno)) }
        if let failure { throw DataError.writeFailed("cannot write \(path): \(failure)") }
        committed = true
        let directory = splitPath(path).directory
        let dirFD = open(directory.isEmpty ? "." : directory, O_RDONLY)
        if dirFD >= 0 { fsync(dirFD); close(dirFD) }
    }
}

/// The directory of `path` ("" for a bare name, "/" at the root) and its
/// last component, trailing slashes aside. (Foundation's
/// `deletingLastPathComponent` and `lastPathComponent` trap on a
/// one-character name such as `r` in Swift 6.3.1's corelibs.)
package func splitPath(_ path: String) -> (directory: String, name: String) {
    var trimmed = Substring(path)
    while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
    guard let slash = trimmed.lastIndex(of: "/") else { return ("", String(trimmed)) }
    var directory = trimmed[..<slash]
    while directory.count > 1, directory.hasSuffix("/") { directory = directory.dropLast() }
    return (directory.isEmpty ? "/" : String(directory), String(trimmed[trimmed.index(after: slash)...]))
}

/// Creates `path` (and its parents) if needed and checks that it is a
/// writable directory, with a one-line error otherwise. Returns true when
/// this call made `path` itself: by one `mkdir`, so that of two processes
/// racing to create it exactly one is told it did (the other sees `EEXIST`).
@discardableResult
package func prepareOutputDirectory(_ path: String) throws -> Bool {
    let parent = splitPath(path).directory
    if !parent.isEmpty && !FileManager.default.fileExists(atPath: parent) {
        do { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true) }
        catch { throw DataError.writeFailed("cannot create output directory \(path)") }
    }
    let created = mkdir(path, 0o755) == 0
    if !created && errno != EEXIST { throw DataError.writeFailed("cannot create output directory \(path) (\(String(cString: strerror(errno))))") }
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw DataError.writeFailed("output \(path) exists and is not a directory")
    }
    guard access(path, W_OK | X_OK) == 0 else {
        throw DataError.writeFailed("output directory \(path) is not writable")
    }
    return created
}
