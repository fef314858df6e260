import Foundation
import IWAE
import XCTest

// Writers of users' file formats for the tests, independent of the readers:
// `.npy` headers and element bytes by hand, zip archives as `numpy.savez`
// writes them (zip64 local fields included), safetensors by its encoder.

/// The bytes of `value` as element type `code` (NumPy's kind and size, such
/// as "f4"), little-endian or, with `bigEndian`, swapped.
func npyElementBytes(_ value: Double, _ code: String, bigEndian: Bool) -> [UInt8] {
    var bytes: [UInt8]
    func raw<T>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
    switch code {
    case "b1": bytes = [value != 0 ? 1 : 0]
    case "u1": bytes = [UInt8(value)]
    case "i1": bytes = raw(Int8(value))
    case "u2": bytes = raw(UInt16(value))
    case "i2": bytes = raw(Int16(value))
    case "u4": bytes = raw(UInt32(value))
    case "i4": bytes = raw(Int32(value))
    case "u8": bytes = raw(UInt64(value))
    case "i8": bytes = raw(Int64(value))
    case "f2": bytes = raw(halfBits(Float(value)))
    case "f4": bytes = raw(Float(value))
    case "f8": bytes = raw(value)
    default: fatalError("no element type \(code)")
    }
    return bigEndian ? bytes.reversed() : bytes
}

/// IEEE binary16 bits of a value that binary16 holds exactly (normal numbers and zero).
func halfBits(_ x: Float) -> UInt16 {
    if x == 0 { return x.sign == .minus ? 0x8000 : 0 }
    let bits = x.bitPattern
    let sign = UInt16(bits >> 31) << 15
    let exponent = Int((bits >> 23) & 0xff) - 127 + 15
    precondition(exponent > 0 && exponent < 31 && bits & 0x1fff == 0, "\(x) is not exactly a normal binary16")
    return sign | UInt16(exponent) << 10 | UInt16((bits >> 13) & 0x3ff)
}

/// A `.npy` file's bytes: version 1.0 header for `descr`, `shape` and the
/// layout, then `values` (given in C order) laid out in that order.
func npyBytes(descr: String, shape: [Int], fortran: Bool = false, values: [Double], version: UInt8 = 1) -> [UInt8] {
    let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var header = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(dims), }"
    let prefix = version == 1 ? 10 : 12
    while (prefix + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    let n = header.utf8.count
    var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version, 0]
    out += version == 1 ? [UInt8(n & 0xff), UInt8(n >> 8)] : [UInt8(n & 0xff), UInt8(n >> 8 & 0xff), UInt8(n >> 16 & 0xff), 0]
    out += Array(header.utf8)
    let code = String(descr.dropFirst()), big = descr.hasPrefix(">")
    // Element order of the file: C order, or for Fortran order the first index fastest.
    let order: [Int]
    if fortran && shape.count > 1 {
        var strides = [Int](repeating: 1, count: shape.count)
        for a in stride(from: shape.count - 2, through: 0, by: -1) { strides[a] = strides[a + 1] * shape[a + 1] }
        let total = shape.reduce(1, *)
        order = (0..<total).map { f in
            var rest = f, cIndex = 0
            for a in shape.indices {   // Fortran: axis 0 varies fastest
                cIndex += (rest % shape[a]) * strides[a]
                rest /= shape[a]
            }
            return cIndex
        }
    } else {
        order = Array(values.indices)
    }
    for i in order { out += npyElementBytes(values[i], code, bigEndian: big) }
    return out
}

/// A zip archive of `members` as `numpy.savez` (stored) or
/// `numpy.savez_compressed` (deflated) writes it: local headers with zip64
/// extra fields and sizes 0xFFFFFFFF, the central directory with real sizes.
func zipBytes(_ members: [(name: String, bytes: [UInt8], deflate: Bool)]) throws -> [UInt8] {
    func u16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8 & 0xff)] }
    func u32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8(v >> (8 * $0) & 0xff) } }
    func u64(_ v: Int) -> [UInt8] { (0..<8).map { UInt8(v >> (8 * $0) & 0xff) } }
    var out = [UInt8](), directory = [UInt8]()
    for m in members {
        let data = m.deflate ? Array(try zlibCompress(m.bytes).dropFirst(2).dropLast(4)) : m.bytes
        let crc = Int(crc32Checksum(m.bytes[...]))
        let offset = out.count, name = Array(m.name.utf8)
        let extra = u16(1) + u16(16) + u64(m.bytes.count) + u64(data.count)
        out += u32(0x0403_4b50) + u16(45) + u16(0) + u16(m.deflate ? 8 : 0) + u16(0) + u16(0x21) + u32(crc)
            + u32(0xffff_ffff) + u32(0xffff_ffff) + u16(name.count) + u16(extra.count) + name + extra + data
        directory += u32(0x0201_4b50) + u16(45) + u16(45) + u16(0) + u16(m.deflate ? 8 : 0) + u16(0) + u16(0x21) + u32(crc)
            + u32(data.count) + u32(m.bytes.count) + u16(name.count) + u16(0) + u16(0) + u16(0) + u16(0) + u32(0) + u32(offset) + name
    }
    let start = out.count
    out += directory
    out += u32(0x0605_4b50) + u16(0) + u16(0) + u16(members.count) + u16(members.count) + u32(directory.count) + u32(start) + u16(0)
    return out
}

func write(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// The raw uint8 pixels of the IDX files in `directory` (images, N × D).
func idxPixels(_ directory: String, _ stem: String) throws -> (rows: Int, side: Int, values: [UInt8]) {
    let array = try IDXArray(contentsOf: directory + "/" + stem)
    return (array.shape[0], array.shape[1], array.values)
}
