import Foundation
import IWAELinearAlgebra

/// One tensor of a safetensors file: dtype (`F32`, `F64`), shape and raw
/// little-endian bytes.
public struct SafetensorsEntry: Equatable, Sendable {
    public var name: String
    public var dtype: String
    public var shape: [Int]
    public var bytes: [UInt8]

    public init(name: String, dtype: String, shape: [Int], bytes: [UInt8]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    package init(name: String, shape: [Int], values: UnsafeBufferPointer<Float>) {
        self.init(name: name, dtype: "F32", shape: shape, bytes: Array(UnsafeRawBufferPointer(values)))
    }

    /// The values as Float (F32 entries only; this engine runs little-endian).
    public var floatValues: [Float] {
        precondition(dtype == "F32")
        return bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}

/// The safetensors format (Hugging Face): an 8-byte little-endian header
/// length N, N bytes of JSON mapping each tensor name to
/// `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets into the data
/// that follows) plus an optional `"__metadata__"` of string values, then the
/// tensors' raw little-endian bytes, contiguous, in the order given.
public struct SafetensorsFile: Equatable, Sendable {
    public var metadata: [String: String]
    public var entries: [SafetensorsEntry]

    public init(metadata: [String: String], entries: [SafetensorsEntry]) {
        self.metadata = metadata
        self.entries = entries
    }

    static let elementSizes = ["F32": 4, "F64": 8, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1]

    /// The file's bytes. The header is padded with spaces to a multiple of 8
    /// so the data starts aligned.
    public func encoded() -> [UInt8] {
        func quote(_ s: String) -> String {
            var out = "\""
            for scalar in s.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
                default: out.unicodeScalars.append(scalar)
                }
            }
            return out + "\""
        }
        var parts = [String]()
        if !metadata.isEmpty {
            let fields = metadata.keys.sorted().map { "\(quote($0)):\(quote(metadata[$0]!))" }
            parts.append("\"__metadata__\":{\(fields.joined(separator: ","))}")
        }
        var offset = 0
        for e in entries {
            let end = offset + e.bytes.count
            parts.append("\(quote(e.name)):{\"dtype\":\(quote(e.dtype)),\"shape\":[\(e.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        var header = Array("{\(parts.joined(separator: ","))}".utf8)
        while (8 + header.count) % 8 != 0 { header.append(0x20) }
        var out = [UInt8]()
        out.reserveCapacity(8 + header.count + offset)
        var n = UInt64(header.count)
        for _ in 0..<8 { out.append(UInt8(n & 0xff)); n >>= 8 }
        out += header
        for e in entries { out += e.bytes }
        return out
    }

    /// Parses and validates safetensors bytes; every inconsistency is a
    /// one-line error naming `name`.
    public init(parsing bytes: [UInt8], name: String) throws {
        func fail(_ why: String) -> DataError { .invalidData("\(name): \(why)") }
        guard bytes.count >= 8 else { throw fail("truncated (\(bytes.count) bytes, no header)") }
        var headerLength: UInt64 = 0
        for i in (0..<8).reversed() { headerLength = headerLength << 8 | UInt64(bytes[i]) }
        guard headerLength <= UInt64(bytes.count - 8), headerLength <= 100_000_000 else {
            throw fail("header length \(headerLength) exceeds the file (\(bytes.count) bytes): truncated or not safetensors")
        }
        let dataStart = 8 + Int(headerLength)
        // The format's header is UTF-8 JSON starting with '{' (JSONSerialization would also take UTF-16).
        guard headerLength > 0, bytes[8] == UInt8(ascii: "{"), !bytes[8..<dataStart].contains(0),
              String(validating: bytes[8..<dataStart], as: UTF8.self) != nil else {
            throw fail("header is not UTF-8 JSON")
        }
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart])) }
        catch { throw fail("header is not valid JSON") }
        guard let object = json as? [String: Any] else { throw fail("header is not a JSON object") }
        var metadata = [String: String]()
        var spans = [(name: String, dtype: String, shape: [Int], begin: Int, end: Int)]()
        for (key, value) in object {
            if key == "__metadata__" {
                guard let m = value as? [String: Any] else { throw fail("__metadata__ is not an object") }
                for (mk, mv) in m {
                    guard let s = mv as? String else { throw fail("metadata \(mk) is not a string") }
                    metadata[mk] = s
                }
                continue
            }
            guard let info = value as? [String: Any],
                  let dtype = info["dtype"] as? String,
                  let shapeValues = info["shape"] as? [Any],
                  let offsetValues = info["data_offsets"] as? [Any], offsetValues.count == 2
            else { throw fail("tensor \(key) has a malformed entry") }
            guard let size = SafetensorsFile.elementSizes[dtype] else { throw fail("tensor \(key) has unsupported dtype \(dtype)") }
            var shape = [Int]()
            for v in shapeValues {
                guard let n = v as? Int, n >= 0 else { throw fail("tensor \(key) has a bad shape") }
                shape.append(n)
            }
            guard let byteCount = CheckedSize.product(shape + [size]) else { throw fail("tensor \(key) shape \(shape) overflows") }
            guard let begin = offsetValues[0] as? Int, let end = offsetValues[1] as? Int, begin >= 0, end >= begin,
                  end <= bytes.count - dataStart
            else { throw fail("tensor \(key) has data offsets outside the file (truncated?)") }
            guard end - begin == byteCount else {
                throw fail("tensor \(key) has \(end - begin) bytes for shape \(shape) of \(dtype)")
            }
            spans.append((key, dtype, shape, begin, end))
        }
        spans.sort { $0.begin < $1.begin || ($0.begin == $1.begin && $0.name < $1.name) }
        var expected = 0
        for s in spans {
            guard s.begin == expected else { throw fail("tensor data overlaps or leaves gaps at \(s.name)") }
            expected = s.end
        }
        guard expected == bytes.count - dataStart else {
            throw fail("\(bytes.count - dataStart - expected) bytes after the last tensor")
        }
        self.metadata = metadata
        entries = spans.map {
            SafetensorsEntry(name: $0.name, dtype: $0.dtype, shape: $0.shape,
                             bytes: Array(bytes[dataStart + $0.begin..<dataStart + $0.end]))
        }
    }

    public func entry(_ name: String) -> SafetensorsEntry? { entries.first { $0.name == name } }
}
