import RealModule
import CZlib
import IWAELinearAlgebra

/// True when `bytes` start with the gzip magic number 1f 8b.
package func isGzip(_ bytes: [UInt8]) -> Bool { bytes.count >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b }

/// Decompresses a gzip stream (all members) with zlib.
///
/// Fails with a one-line error on corrupt or truncated input, or when the
/// output would exceed `limit` bytes (a guard against decompression bombs).
/// `expectedSize`, when given, is asked after each chunk for the total size
/// the output so far announces (an IDX header does): from then on the output
/// may not pass it, so a bomb is stopped within one chunk.
package func gunzip(_ bytes: [UInt8], name: String, limit: Int = 1 << 32,
                   expectedSize: (([UInt8]) -> Int?)? = nil) throws -> [UInt8] {
    var limit = limit
    var announced = false
    var stream = z_stream()
    guard inflateInit2_(&stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
        throw DataError.invalidData("\(name): cannot start gzip decoder")
    }
    defer { inflateEnd(&stream) }
    var output = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    var consumed = 0
    try bytes.withUnsafeBufferPointer { input in
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
        stream.avail_in = UInt32(input.count)
        while true {
            let status: Int32 = chunk.withUnsafeMutableBufferPointer { out in
                stream.next_out = out.baseAddress
                stream.avail_out = UInt32(out.count)
                return inflate(&stream, Z_NO_FLUSH)
            }
            let produced = chunk.count - Int(stream.avail_out)
            output.append(contentsOf: chunk[0..<produced])
            if !announced, let expectedSize, let size = expectedSize(output) {
                announced = true
                limit = Swift.min(limit, size)
            }
            if output.count > limit {
                throw DataError.invalidData("\(name): decompressed data exceeds \(announced ? "the \(limit) bytes its header announces" : "\(limit) bytes")")
            }
            switch status {
            case Z_STREAM_END:
                consumed = input.count - Int(stream.avail_in)
                if stream.avail_in == 0 { return }
                // Another gzip member may follow (gzip allows concatenation).
                guard input[consumed] == 0x1f else { return }
                guard inflateReset(&stream) == Z_OK else { throw DataError.invalidData("\(name): corrupt gzip data") }
            case Z_OK:
                continue
            case Z_BUF_ERROR:
                if stream.avail_in == 0 { throw DataError.invalidData("\(name): truncated gzip data") }
                continue
            default:
                throw DataError.invalidData("\(name): corrupt gzip data")
            }
        }
    }
    return output
}

/// DEFLATE-compresses `bytes` into a zlib stream (for PNG).
package func zlibCompress(_ bytes: [UInt8], level: Int32 = 6) throws -> [UInt8] {
    var length = compressBound(uLong(bytes.count))
    var output = [UInt8](repeating: 0, count: Int(length))
    let status = output.withUnsafeMutableBufferPointer { out in
        bytes.withUnsafeBufferPointer { input in
            compress2(out.baseAddress, &length, input.baseAddress, uLong(input.count), level)
        }
    }
    guard status == Z_OK else { throw DataError.writeFailed("zlib compression failed (\(status))") }
    output.removeSubrange(Int(length)...)
    return output
}

/// CRC-32 as used by PNG and gzip.
package func crc32Checksum(_ bytes: ArraySlice<UInt8>) -> UInt32 {
    bytes.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, uInt($0.count))) }
}

/// Continues a CRC-32 over more bytes.
package func crc32Continue(_ crc: UInt32, _ bytes: UnsafeBufferPointer<UInt8>) -> UInt32 {
    UInt32(crc32(uLong(crc), bytes.baseAddress, uInt(bytes.count)))
}

/// Compresses `bytes` into a gzip stream (one member), e.g. to write `.gz` IDX files.
package func gzipCompress(_ bytes: [UInt8]) throws -> [UInt8] {
    var stream = z_stream()
    guard deflateInit2_(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY,
                        ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
        throw DataError.writeFailed("cannot start gzip encoder")
    }
    defer { deflateEnd(&stream) }
    var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(bytes.count))) + 32)
    let status: Int32 = output.withUnsafeMutableBufferPointer { out in
        bytes.withUnsafeBufferPointer { input in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
            stream.avail_in = UInt32(input.count)
            stream.next_out = out.baseAddress
            stream.avail_out = UInt32(out.count)
            return deflate(&stream, Z_FINISH)
        }
    }
    guard status == Z_STREAM_END else { throw DataError.writeFailed("gzip compression failed (\(status))") }
    output.removeSubrange(Int(stream.total_out)...)
    return output
}
