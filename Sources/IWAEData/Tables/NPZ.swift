import CZlib
import IWAELinearAlgebra

/// NumPy's `.npz`: a zip archive of `.npy` members (`numpy.savez` stores
/// them, `savez_compressed` deflates them; both write zip64 fields). A
/// stored member is read in place from the mapped file; a deflated one is
/// inflated once into memory of exactly its announced size.
enum NPZ {
    struct Member {
        var name: String
        var method: Int
        var compressedSize: Int
        var size: Int
        var localHeaderOffset: Int
    }

    /// The members of the archive in `file`, by the central directory.
    static func members(_ file: MappedFile) throws -> [Member] {
        let name = file.path
        func fail(_ why: String) -> DataError { .invalidData("\(name): \(why)") }
        guard let base = file.bytes, file.count >= 22 else { throw fail(file.count == 0 ? "the file is empty" : "not a zip archive (too short for .npz)") }
        func u16(_ at: Int) -> Int { Int(base.loadUnaligned(fromByteOffset: at, as: UInt16.self).littleEndian) }
        func u32(_ at: Int) -> Int { Int(base.loadUnaligned(fromByteOffset: at, as: UInt32.self).littleEndian) }
        func u64(_ at: Int) throws -> Int {
            let v = base.loadUnaligned(fromByteOffset: at, as: UInt64.self).littleEndian
            guard v <= UInt64(Int.max) else { throw fail("a zip64 size or offset overflows") }
            return Int(v)
        }
        // The end-of-central-directory record: in the last 64 KiB + 22 bytes.
        var end = -1
        var at = file.count - 22
        while at >= Swift.max(0, file.count - 22 - 65_535) {
            if u32(at) == 0x0605_4b50 { end = at; break }
            at -= 1
        }
        guard end >= 0 else {
            if file.count >= 6, u32(0) == 0x4D55_4E93 { throw fail("a .npy file named .npz: rename it to .npy") }
            throw fail("not a zip archive (no end-of-central-directory record): is it an .npz?")
        }
        var count = u16(end + 10), directorySize = u32(end + 12), directoryOffset = u32(end + 16)
        if (count == 0xffff || directorySize == 0xffff_ffff || directoryOffset == 0xffff_ffff), end >= 20, u32(end - 20) == 0x0706_4b50 {
            let record = try u64(end - 12)
            guard record >= 0, record <= file.count - 56, u32(record) == 0x0606_4b50 else { throw fail("a damaged zip64 end record") }
            count = try u64(record + 32)
            directorySize = try u64(record + 40)
            directoryOffset = try u64(record + 48)
        }
        guard directoryOffset <= file.count, directorySize <= file.count - directoryOffset, count <= directorySize / 46 + 1 else {
            throw fail("the zip directory lies outside the file (truncated?)")
        }
        var members = [Member]()
        var p = directoryOffset
        for _ in 0..<count {
            guard p + 46 <= directoryOffset + directorySize, u32(p) == 0x0201_4b50 else { throw fail("a damaged zip directory entry") }
            let method = u16(p + 10), flags = u16(p + 8)
            var compressed = u32(p + 20), size = u32(p + 24)
            let nameLength = u16(p + 28), extraLength = u16(p + 30), commentLength = u16(p + 32)
            var offset = u32(p + 42)
            let next = p + 46 + nameLength + extraLength + commentLength
            guard next <= directoryOffset + directorySize else { throw fail("a damaged zip directory entry") }
            let memberName = String(decoding: file.copy(p + 46..<p + 46 + nameLength), as: UTF8.self)
            // zip64: the fields at 0xffffffff follow in the extra field 0x0001, in this order.
            var e = p + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = u16(e), length = u16(e + 2)
                guard e + 4 + length <= extraEnd else { break }
                if id == 0x0001 {
                    var q = e + 4
                    func take(_ field: inout Int) throws {
                        guard field == 0xffff_ffff else { return }
                        guard q + 8 <= e + 4 + length else { throw fail("a damaged zip64 field of \(memberName)") }
                        field = try u64(q); q += 8
                    }
                    try take(&size); try take(&compressed); try take(&offset)
                }
                e += 4 + length
            }
            guard flags & 1 == 0 else { throw fail("member \(memberName) is encrypted") }
            members.append(Member(name: memberName, method: method, compressedSize: compressed, size: size, localHeaderOffset: offset))
            p = next
        }
        return members
    }

    /// The array `key` (with or without `.npy`) of the archive; without a key,
    /// the only array, or an error listing them.
    static func table(_ file: MappedFile, key: String?) throws -> RawTable {
        let all = try members(file)
        func fail(_ why: String) -> DataError { .invalidData("\(file.path): \(why)") }
        let arrays = all.filter { $0.name.hasSuffix(".npy") }
        let names = arrays.map { String($0.name.dropLast(4)) }
        let listed = names.isEmpty ? "none" : names.prefix(20).joined(separator: ", ") + (names.count > 20 ? ", …" : "")
        let member: Member
        if let key {
            guard let found = arrays.first(where: { $0.name == key + ".npy" || $0.name == key }) else {
                throw fail("has no array '\(key)' (it holds: \(listed))")
            }
            member = found
        } else {
            guard arrays.count == 1 else {
                throw fail(arrays.isEmpty ? "holds no arrays" : "holds \(arrays.count) arrays (\(listed)): say which with --data-key")
            }
            member = arrays[0]
        }
        let name = "\(file.path):\(member.name.hasSuffix(".npy") ? String(member.name.dropLast(4)) : member.name)"
        guard let base = file.bytes, member.localHeaderOffset <= file.count - 30,
              base.loadUnaligned(fromByteOffset: member.localHeaderOffset, as: UInt32.self).littleEndian == 0x0403_4b50 else {
            throw fail("member \(member.name) has no local header where the directory says (damaged archive)")
        }
        let local = member.localHeaderOffset
        let skip = Int(base.loadUnaligned(fromByteOffset: local + 26, as: UInt16.self).littleEndian)
            + Int(base.loadUnaligned(fromByteOffset: local + 28, as: UInt16.self).littleEndian)
        let start = local + 30 + skip
        guard start <= file.count, member.compressedSize <= file.count - start else {
            throw fail("member \(member.name) runs past the end of the file (truncated?)")
        }
        switch member.method {
        case 0:
            guard member.size == member.compressedSize else { throw fail("member \(member.name) is stored with two sizes") }
            return try NPY.table(.mapped(file, offset: start), count: member.size, name: name)
        case 8:
            let owner = try inflateRaw(base + start, count: member.compressedSize, size: member.size, name: name)
            return try NPY.table(.owned(owner, offset: 0), count: member.size, name: name)
        default:
            throw fail("member \(member.name) uses zip compression method \(member.method) (stored and deflate are read)")
        }
    }

    /// Inflates raw deflate data into memory of exactly `size` bytes; more,
    /// less or corrupt data is an error.
    static func inflateRaw(_ source: UnsafeRawPointer, count: Int, size: Int, name: String) throws -> UnsafeMutableRawBufferPointer.Owner {
        func fail(_ why: String) -> DataError { .invalidData("\(name): \(why)") }
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw fail("cannot start the deflate decoder")
        }
        defer { inflateEnd(&stream) }
        // Deflate expands at most about 1,032 times; and the memory must be there.
        guard size <= 1032 * count + 1024 else { throw fail("announces \(size) bytes from \(count) compressed: not a deflate stream") }
        guard size < MemoryBudget.available else {
            throw fail("inflates to \(size) bytes, more memory than this process has (save it with numpy.savez, uncompressed, to read it in place)")
        }
        let owner = UnsafeMutableRawBufferPointer.Owner(byteCount: size + 1)
        var consumed = 0, produced = 0
        let chunk = 1 << 30
        while true {
            stream.next_in = UnsafeMutablePointer(mutating: source.assumingMemoryBound(to: UInt8.self) + consumed)
            let inNow = Swift.min(chunk, count - consumed)
            stream.avail_in = UInt32(inNow)
            stream.next_out = owner.buffer.baseAddress!.assumingMemoryBound(to: UInt8.self) + produced
            let outNow = Swift.min(chunk, size + 1 - produced)
            stream.avail_out = UInt32(outNow)
            let status = inflate(&stream, Z_NO_FLUSH)
            consumed += inNow - Int(stream.avail_in)
            produced += outNow - Int(stream.avail_out)
            if produced > size { throw fail("inflates to more than the \(size) bytes the archive announces") }
            switch status {
            case Z_STREAM_END:
                guard produced == size else { throw fail("inflates to \(produced) bytes, not the \(size) the archive announces") }
                return owner
            case Z_OK: continue
            case Z_BUF_ERROR:
                if consumed >= count { throw fail("truncated deflate data") }
                continue
            default: throw fail("corrupt deflate data")
            }
        }
    }
}
