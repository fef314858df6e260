import RealModule
import IWAELinearAlgebra

/// An 8-bit grayscale PNG (W3C PNG spec): signature, IHDR, one IDAT of
/// zlib-compressed scanlines (filter type 0), IEND. `pixels` is (height, width).
package func encodeGrayscalePNG(width: Int, height: Int, pixels: [UInt8]) throws -> [UInt8] {
    try encodePNG(width: width, height: height, channels: 1, pixels: pixels)
}

/// An 8-bit PNG with 1 (gray) or 3 (RGB) channels; `pixels` is (height, width, channels).
package func encodePNG(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws -> [UInt8] {
    precondition(channels == 1 || channels == 3)
    precondition(pixels.count == width * height * channels)
    func bigEndian(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }
    func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        return bigEndian(UInt32(data.count)) + body + bigEndian(crc32Checksum(body[...]))
    }
    var scanlines = [UInt8]()
    let stride = width * channels
    scanlines.reserveCapacity(height * (stride + 1))
    for row in 0..<height {
        scanlines.append(0)
        scanlines.append(contentsOf: pixels[row * stride..<(row + 1) * stride])
    }
    let header = bigEndian(UInt32(width)) + bigEndian(UInt32(height)) + [8, channels == 3 ? 2 : 0, 0, 0, 0]
    return [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]
        + chunk("IHDR", header) + chunk("IDAT", try zlibCompress(scanlines)) + chunk("IEND", [])
}
