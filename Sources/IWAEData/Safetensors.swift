import Foundation
import IWAELinearAlgebra

/// One tensor of a safetensors file: dtype (`F32`, `F64`), shape and raw
/// little-endian bytes.
package struct SafetensorsEntry: Equatable, Sendable {
    package var name: String
    package var dtype: String
    package var shape: [Int]
    package var bytes: [UInt8]

    package init(name: String, dtype: String, shape: [Int], bytes: [UInt8]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    package init(name: String, shape: [Int], values: UnsafeBufferPointer<Float>) {
        self.init(name: name, dtype: "F32", shape: shape, bytes: Array(UnsafeRawBufferPointer(values)))
    }

    /// The values as Float (F32 entries only; this engine runs little-endian).
    package var floatValues: [Float] {
        precondition(dtype == "F32")
        return bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}

/// The safetensors format (Hugging Face): an 8-byte little-endian header
/// length N, N bytes of JSON mapping each tensor name to
/// `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets into the data
/// that follows) plus an optional `"__metadata__"` of string values, then the
/// tensors' raw little-endian bytes, contiguous, in the order given.
package struct SafetensorsFile: Equatable, Sendable {
    package var metadata: [String: String]
    package var entries: [SafetensorsEntry]

    package init(metadata: [String: String], entries: [SafetensorsEntry]) {
        self.metadata = metadata
        self.entries = entries
    }

    static let elementSizes = ["F32": 4, "F64": 8, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                               "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1]
    /// The element type of each dtype a data table may have.
    static let elementTypes: [String: ElementType] = [
        "F32": .float32, "F64": .float64, "F16": .float16, "BF16": .bfloat16, "I64": .int64, "I32": .int32, "I16": .int16,
        "I8": .int8, "U64": .uint64, "U32": .uint32, "U16": .uint16, "U8": .uint8, "BOOL": .bool,
    ]

    /// The tensor `key` of a safetensors file, read in place (or its only
    /// tensor when `key` is nil), as a table of rows (its first dimension).
    static func table(_ file: MappedFile, key: String?) throws -> RawTable {
        guard let base = file.bytes else { throw DataError.invalidData("\(file.path): the file is empty") }
        let prefix = UnsafeRawBufferPointer(start: base, count: Swift.min(file.count, 100_000_008))
        let (_, spans, dataStart) = try header(prefix, fileSize: file.count, name: file.path)
        let listed = spans.isEmpty ? "none" : spans.prefix(20).map(\.name).joined(separator: ", ") + (spans.count > 20 ? ", …" : "")
        let span: Span
        if let key {
            guard let found = spans.first(where: { $0.name == key }) else { throw DataError.invalidData("\(file.path): has no tensor '\(key)' (it holds: \(listed))") }
            span = found
        } else {
            guard spans.count == 1 else {
                throw DataError.invalidData("\(file.path): " + (spans.isEmpty ? "holds no tensors" : "holds \(spans.count) tensors (\(listed)): say which with --data-key"))
            }
            span = spans[0]
        }
        let name = "\(file.path):\(span.name)"
        guard !span.shape.isEmpty else { throw DataError.invalidData("\(name): a 0-dimensional tensor (one number) is not a table") }
        guard span.shape[0] > 0 else { throw DataError.invalidData("\(name): the tensor has no rows (shape \(span.shape))") }
        guard span.shape.dropFirst().allSatisfy({ $0 > 0 }) else { throw DataError.invalidData("\(name): the tensor has no columns (shape \(span.shape))") }
        let shape = span.shape.count == 1 ? [span.shape[0], 1] : span.shape
        return RawTable(name: name, elementType: elementTypes[span.dtype]!, shape: shape, fortranOrder: false,
                        bytes: .mapped(file, offset: dataStart + span.begin), swapped: false)
    }

    /// The file's bytes. The header is padded with spaces to a multiple of 8
    /// so the data starts aligned.
    package func encoded() -> [UInt8] {
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
    package init(parsing bytes: [UInt8], name: String) throws {
        let (metadata, spans, dataStart) = try bytes.withUnsafeBytes { try SafetensorsFile.header($0, fileSize: bytes.count, name: name) }
        self.metadata = metadata
        entries = spans.map {
            SafetensorsEntry(name: $0.name, dtype: $0.dtype, shape: $0.shape,
                             bytes: Array(bytes[dataStart + $0.begin..<dataStart + $0.end]))
        }
    }

    /// The header's length: the first 8 bytes, little-endian (at least 8 given).
    package static func headerLength(_ prefix: some Collection<UInt8>) -> UInt64 {
        prefix.prefix(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// One tensor's place in the data that follows the header.
    struct Span { var name: String; var dtype: String; var shape: [Int]; var begin: Int; var end: Int }

    /// The metadata, the tensors' spans (checked to tile the data exactly)
    /// and where the data starts, from `prefix` (the file's first bytes, at
    /// least its header) of a file of `fileSize` bytes.
    static func header(_ prefix: UnsafeRawBufferPointer, fileSize: Int, name: String) throws -> ([String: String], [Span], Int) {
        func fail(_ why: String) -> DataError { .invalidData("\(name): \(why)") }
        guard fileSize >= 8, prefix.count >= 8 else { throw fail("truncated (\(fileSize) bytes, no header)") }
        let headerLength = SafetensorsFile.headerLength(prefix)
        guard headerLength <= UInt64(fileSize - 8), headerLength <= 100_000_000, Int(headerLength) <= prefix.count - 8 else {
            throw fail("header length \(headerLength) exceeds the file (\(fileSize) bytes): truncated or not safetensors")
        }
        let dataStart = 8 + Int(headerLength)
        let headerBytes = UnsafeRawBufferPointer(rebasing: prefix[8..<dataStart])
        // The format's header is UTF-8 JSON starting with '{' (JSONSerialization would also take UTF-16).
        guard headerLength > 0, headerBytes[0] == UInt8(ascii: "{"), !headerBytes.contains(0),
              String(validating: headerBytes, as: UTF8.self) != nil else {
            throw fail("header is not UTF-8 JSON")
        }
        let json: Any
        if let repeated = firstDuplicateKey(in: headerBytes) {
            throw fail("header has the key \"\(repeated)\" twice")
        }
        do { json = try JSONSerialization.jsonObject(with: Data(headerBytes)) }
        catch { throw fail("header is not valid JSON") }
        guard let object = json as? [String: Any] else { throw fail("header is not a JSON object") }
        var metadata = [String: String]()
        var spans = [Span]()
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
                  end <= fileSize - dataStart
            else { throw fail("tensor \(key) has data offsets outside the file (truncated?)") }
            guard end - begin == byteCount else {
                throw fail("tensor \(key) has \(end - begin) bytes for shape \(shape) of \(dtype)")
            }
            spans.append(Span(name: key, dtype: dtype, shape: shape, begin: begin, end: end))
        }
        spans.sort { $0.begin < $1.begin || ($0.begin == $1.begin && $0.name < $1.name) }
        var expected = 0
        for s in spans {
            guard s.begin == expected else { throw fail("tensor data overlaps or leaves gaps at \(s.name)") }
            expected = s.end
        }
        guard expected == fileSize - dataStart else {
            throw fail("\(fileSize - dataStart - expected) bytes after the last tensor")
        }
        return (metadata, spans, dataStart)
    }

    package func entry(_ name: String) -> SafetensorsEntry? { entries.first { $0.name == name } }
}
