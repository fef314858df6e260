import RealModule
import IWAELinearAlgebra

/// An array read from an IDX file (the MNIST format of LeCun et al.):
/// big-endian, `00 00 TT NN` magic (TT = 0x08 for unsigned bytes, NN = number
/// of dimensions), NN big-endian UInt32 extents, then the values row-major.
package struct IDXArray: Equatable, Sendable {
    package var shape: [Int]
    package var values: [UInt8]

    package init(shape: [Int], values: [UInt8]) {
        self.shape = shape
        self.values = values
    }

    /// Parses IDX bytes (unsigned-byte data only). `name` labels errors.
    package init(parsing bytes: [UInt8], name: String) throws {
        guard bytes.count >= 4 else { throw DataError.invalidData("\(name): truncated IDX header (\(bytes.count) bytes)") }
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw DataError.invalidData("\(name): not an IDX file (magic number \(hex(bytes[0..<4])))")
        }
        guard bytes[2] == 0x08 else {
            throw DataError.invalidData("\(name): unsupported IDX element type 0x\(String(bytes[2], radix: 16)) (only unsigned bytes, 0x08)")
        }
        let dimensions = Int(bytes[3])
        guard dimensions >= 1 else { throw DataError.invalidData("\(name): IDX file with 0 dimensions") }
        let headerSize = 4 + 4 * dimensions
        guard bytes.count >= headerSize else { throw DataError.invalidData("\(name): truncated IDX header") }
        let shape = (0..<dimensions).map { i -> Int in
            let o = 4 + 4 * i
            return Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3])
        }
        guard let total = CheckedSize.product(shape), total <= Int(Int32.max) else {
            throw DataError.invalidData("\(name): IDX dimensions \(shape) overflow")
        }
        let available = bytes.count - headerSize
        guard available >= total else {
            throw DataError.invalidData("\(name): truncated IDX data (header says \(total) values, file has \(available))")
        }
        guard available == total else {
            throw DataError.invalidData("\(name): \(available - total) unexpected bytes after IDX data")
        }
        self.shape = shape
        values = Array(bytes[headerSize...])
    }

    /// Reads an IDX file, gunzipping it first when it is gzip-compressed.
    package init(contentsOf path: String) throws {
        var bytes = try readFile(path)
        if isGzip(bytes) { bytes = try gunzip(bytes, name: path, expectedSize: IDXArray.announcedSize) }
        try self.init(parsing: bytes, name: path)
    }

    /// The file size an IDX header announces (header + one byte per value),
    /// once `prefix` holds the whole header; nil before, or when it overflows
    /// (the parser then reports the header).
    static func announcedSize(_ prefix: [UInt8]) -> Int? {
        guard prefix.count >= 4 else { return nil }
        let dimensions = Int(prefix[3]), header = 4 + 4 * dimensions
        guard prefix.count >= header else { return nil }
        let shape = (0..<dimensions).map { i -> Int in
            let o = 4 + 4 * i
            return Int(prefix[o]) << 24 | Int(prefix[o + 1]) << 16 | Int(prefix[o + 2]) << 8 | Int(prefix[o + 3])
        }
        return CheckedSize.product(shape).flatMap { CheckedSize.sum([header, $0]) }
    }

    /// The IDX encoding of this array.
    package var encoded: [UInt8] {
        var bytes: [UInt8] = [0, 0, 0x08, UInt8(shape.count)]
        for extent in shape {
            bytes += [UInt8(truncatingIfNeeded: extent >> 24), UInt8(truncatingIfNeeded: extent >> 16),
                      UInt8(truncatingIfNeeded: extent >> 8), UInt8(truncatingIfNeeded: extent)]
        }
        return bytes + values
    }
}

private func hex(_ bytes: ArraySlice<UInt8>) -> String {
    bytes.map { String(format: "%02x", $0) }.joined(separator: " ")
}

private extension String {
    init(format: String, _ byte: UInt8) {
        let digits = String(byte, radix: 16)
        self = digits.count == 1 ? "0" + digits : digits
    }
}
