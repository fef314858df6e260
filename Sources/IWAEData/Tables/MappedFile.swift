import Foundation

/// A regular file mapped read-only into memory: its pages are read from
/// disk as they are touched and can be dropped again by the kernel, so a
/// data file larger than memory can still be read row by row. Devices,
/// FIFOs and directories are refused before anything is read.
package final class MappedFile: @unchecked Sendable {
    package let path: String
    /// The first byte (nil for an empty file).
    package let bytes: UnsafeRawPointer?
    package let count: Int

    package init(_ path: String) throws {
        self.path = path
        let (fd, info) = try openRegularFile(path)
        defer { close(fd) }
        count = Int(info.st_size)
        guard count > 0 else { bytes = nil; return }
        let mapped = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let mapped, mapped != MAP_FAILED else {
            throw DataError.invalidData("cannot map \(path): \(String(cString: strerror(errno)))")
        }
        bytes = UnsafeRawPointer(mapped)
    }

    deinit { if let bytes { munmap(UnsafeMutableRawPointer(mutating: bytes), count) } }

    /// Bytes `range` as an array (headers, small members).
    package func copy(_ range: Range<Int>) -> [UInt8] {
        precondition(range.lowerBound >= 0 && range.upperBound <= count)
        guard let bytes, !range.isEmpty else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes + range.lowerBound, count: range.count))
    }

    /// A cheap fingerprint of the contents: "bytes-crc", the CRC-32 of 64
    /// blocks of 64 KiB spread evenly over the file (all of a file up to
    /// 4 MiB). It tells a file that was replaced, truncated, appended to or
    /// rewritten from one that was not; a change confined to bytes between
    /// the blocks of a larger file can escape it.
    package var fingerprint: String {
        guard let bytes else { return "0-0" }
        let block = 1 << 16, blocks = 64
        var crc: UInt32 = 0
        let base = bytes.assumingMemoryBound(to: UInt8.self)
        if count <= block * blocks {
            crc = crc32Continue(crc, UnsafeBufferPointer(start: base, count: count))
        } else {
            for i in 0..<blocks {
                let start = (count - block) / (blocks - 1) * i
                crc = crc32Continue(crc, UnsafeBufferPointer(start: base + start, count: block))
            }
        }
        return "\(count)-\(crc)"
    }

    /// Tells the kernel the pages will be read in order (training epochs read rows in shuffled order: left alone).
    package func adviseSequential() { if let bytes { madvise(UnsafeMutableRawPointer(mutating: bytes), count, MADV_SEQUENTIAL) } }
}

/// Where a table's bytes live: a mapped file (read in place) or memory the
/// reader filled (a deflated `.npz` member, parsed CSV).
package enum TableBytes: @unchecked Sendable {
    case mapped(MappedFile, offset: Int)
    case owned(UnsafeMutableRawBufferPointer.Owner, offset: Int)

    package var base: UnsafeRawPointer? {
        switch self {
        case .mapped(let file, let offset): return file.bytes.map { $0 + offset }
        case .owned(let owner, let offset): return UnsafeRawPointer(owner.buffer.baseAddress!) + offset
        }
    }
}

extension UnsafeMutableRawBufferPointer {
    /// Memory a table owns, freed with the last table that holds it.
    package final class Owner: @unchecked Sendable {
        package let buffer: UnsafeMutableRawBufferPointer
        package init(byteCount: Int) {
            buffer = .allocate(byteCount: Swift.max(byteCount, 1), alignment: 16)
        }
        deinit { buffer.deallocate() }
    }
}
