import IWAELinearAlgebra

/// NumPy's `.npy` format (version 1.0, 2.0 or 3.0): the magic `\x93NUMPY`,
/// two version bytes, the header length (2 bytes little-endian in 1.0, 4
/// after), then a Python dict literal such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (60000, 784), }`
/// padded with spaces to a newline, then the elements.
public enum NPY {
    /// The header of a `.npy`: the element type, its byte order, the
    /// layout and shape, and where the elements begin.
    struct Header {
        var elementType: ElementType
        var swapped: Bool
        var fortranOrder: Bool
        var shape: [Int]
        var dataOffset: Int
    }

    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]

    /// Reads the header from the first bytes of the array (`prefix` holds
    /// at least them, or the whole file when shorter). Every defect is one
    /// line naming `name`.
    static func header(_ prefix: UnsafeRawBufferPointer, name: String) throws -> Header {
        func fail(_ why: String) -> DataError { .invalidData("\(name): \(why)") }
        guard prefix.count >= 10 else {
            if prefix.first == 0x80 { throw fail("a Python pickle, not a .npy array (pickles can run code: save with numpy.save and allow_pickle=False)") }
            throw fail(prefix.isEmpty ? "the file is empty" : "too short for a .npy header (\(prefix.count) bytes)")
        }
        guard Array(prefix[0..<6]) == magic else {
            if prefix[0] == 0x80 { throw fail("a Python pickle, not a .npy array (pickles can run code: save with numpy.save and allow_pickle=False)") }
            throw fail("not a .npy file (no \\x93NUMPY magic)")
        }
        let major = prefix[6]
        let lengthBytes = major == 1 ? 2 : 4
        guard (1...3).contains(major) else { throw fail(".npy format version \(major).\(prefix[7]) is not supported (1.0 to 3.0 are)") }
        guard prefix.count >= 8 + lengthBytes else { throw fail("truncated .npy header") }
        var length = 0
        for i in (0..<lengthBytes).reversed() { length = length << 8 | Int(prefix[8 + i]) }
        let start = 8 + lengthBytes
        guard length <= prefix.count - start else { throw fail("the .npy header says \(length) bytes but the file ends before") }
        let text = Array(prefix[start..<start + length])
        guard let string = String(validating: text, as: UTF8.self) else { throw fail("the .npy header is not text") }
        var parser = PythonLiteral.Parser(Array(string.unicodeScalars))
        let dict: [String: PythonLiteral]
        do {
            guard case .dict(let d) = try parser.value(depth: 0) else { throw fail("the .npy header is not a dict") }
            dict = d
        } catch let error as PythonLiteral.ParseError {
            throw fail("malformed .npy header (\(error.message))")
        }
        guard let descr = dict["descr"] else { throw fail("the .npy header has no 'descr'") }
        guard case .string(let code) = descr else {
            throw fail("structured arrays (fields \(descr.brief)) are not supported: save a plain numeric array")
        }
        guard case .bool(let fortran)? = dict["fortran_order"] else { throw fail("the .npy header has no True/False 'fortran_order'") }
        guard case .tuple(let dims)? = dict["shape"] else { throw fail("the .npy header has no 'shape' tuple") }
        var shape = [Int]()
        for d in dims {
            guard case .int(let n) = d, n >= 0 else { throw fail("the .npy shape \(PythonLiteral.tuple(dims).brief) is not a tuple of sizes") }
            shape.append(n)
        }
        let (type, swapped) = try elementType(code, fail: fail)
        return Header(elementType: type, swapped: swapped, fortranOrder: fortran, shape: shape, dataOffset: start + length)
    }

    /// '<f4' → (float32, not swapped) on this little-endian machine.
    static func elementType(_ code: String, fail: (String) -> DataError) throws -> (ElementType, Bool) {
        let scalars = Array(code.unicodeScalars)
        guard scalars.count >= 2 else { throw fail("dtype '\(code)' is not understood") }
        let order = scalars[0]
        let swapped: Bool
        switch order {
        case "<", "|", "=": swapped = false
        case ">": swapped = true
        default: throw fail("dtype '\(code)' has no byte order")
        }
        let kind = String(scalars[1]), size = String(String.UnicodeScalarView(scalars.dropFirst(2)))
        let types: [String: ElementType] = [
            "b1": .bool, "u1": .uint8, "i1": .int8, "u2": .uint16, "i2": .int16, "u4": .uint32, "i4": .int32,
            "u8": .uint64, "i8": .int64, "f2": .float16, "f4": .float32, "f8": .float64,
        ]
        if let type = types[kind + size] { return (type, swapped && type.size > 1) }
        switch kind {
        case "O": throw fail("object arrays (dtype '\(code)') hold pickled Python objects, which this engine does not load: save a numeric array")
        case "U", "S", "a": throw fail("string arrays (dtype '\(code)') are not numbers: convert the columns to numbers first")
        case "c": throw fail("complex numbers (dtype '\(code)') are not supported")
        case "M", "m": throw fail("dates and times (dtype '\(code)') are not supported: convert them to numbers first")
        default: throw fail("dtype '\(code)' is not supported (bool, integers and float16/32/64 are)")
        }
    }

    /// The table of a `.npy` whose bytes are `bytes` (a mapped file or a
    /// member of an `.npz`), `count` bytes long.
    package static func table(_ bytes: TableBytes, count: Int, name: String) throws -> RawTable {
        func fail(_ why: String) -> DataError { .invalidData("\(name): \(why)") }
        guard let base = bytes.base, count > 0 else { throw fail("the file is empty") }
        let header = try NPY.header(UnsafeRawBufferPointer(start: base, count: Swift.min(count, 1 << 20)), name: name)
        guard !header.shape.isEmpty else { throw fail("a 0-dimensional array (one number) is not a table") }
        guard let elements = CheckedSize.product(header.shape), let size = CheckedSize.product([elements, header.elementType.size]) else {
            throw fail("shape \(header.shape) overflows")
        }
        let available = count - header.dataOffset
        guard size == available else {
            throw fail("the header's shape \(header.shape) of \(header.elementType.rawValue) needs \(size) bytes but the file holds \(available)")
        }
        guard header.shape[0] > 0 else { throw fail("the array has no rows (shape \(header.shape))") }
        guard header.shape.dropFirst().allSatisfy({ $0 > 0 }) else { throw fail("the array has no columns (shape \(header.shape))") }
        let shape = header.shape.count == 1 ? [header.shape[0], 1] : header.shape
        let located: TableBytes
        switch bytes {
        case .mapped(let file, let offset): located = .mapped(file, offset: offset + header.dataOffset)
        case .owned(let owner, let offset): located = .owned(owner, offset: offset + header.dataOffset)
        }
        return RawTable(name: name, elementType: header.elementType, shape: shape, fortranOrder: header.fortranOrder,
                        bytes: located, swapped: header.swapped)
    }

    /// A `.npy` (version 1.0, C order, little-endian) of `values` with `shape`.
    public static func encode<T: NPYElement>(_ values: [T], shape: [Int]) -> [UInt8] {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
        var out = header(T.self, shape: shape)
        values.withUnsafeBytes { out += $0 }
        return out
    }

    /// The header of a `.npy` of `shape` elements of `T` (its elements follow, row-major, little-endian).
    package static func header<T: NPYElement>(_: T.Type, shape: [Int]) -> [UInt8] {
        let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(T.npyCode)', 'fortran_order': False, 'shape': \(dims), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        return magic + [1, 0, UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)] + Array(header.utf8)
    }
}

/// Element types `NPY.encode` writes.
public protocol NPYElement { static var npyCode: String { get } }
extension Float: NPYElement { public static var npyCode: String { "<f4" } }
extension Double: NPYElement { public static var npyCode: String { "<f8" } }
extension UInt8: NPYElement { public static var npyCode: String { "|u1" } }

/// The Python literals of a `.npy` header: strings, ints, True/False/None,
/// tuples, lists and dicts with string keys.
indirect enum PythonLiteral: Equatable {
    case string(String), int(Int), bool(Bool), none, tuple([PythonLiteral]), list([PythonLiteral]), dict([String: PythonLiteral])

    struct ParseError: Error { var message: String }

    /// A short rendering for messages.
    var brief: String {
        switch self {
        case .string(let s): return "'\(s.prefix(20))'"
        case .int(let n): return String(n)
        case .bool(let b): return b ? "True" : "False"
        case .none: return "None"
        case .tuple(let v): return "(" + v.prefix(4).map(\.brief).joined(separator: ", ") + (v.count > 4 ? ", …" : "") + ")"
        case .list(let v): return "[" + v.prefix(4).map(\.brief).joined(separator: ", ") + (v.count > 4 ? ", …" : "") + "]"
        case .dict: return "{…}"
        }
    }

    struct Parser {
        let text: [Unicode.Scalar]
        var at = 0
        init(_ text: [Unicode.Scalar]) { self.text = text }

        mutating func skipSpace() { while at < text.count, text[at] == " " || text[at] == "\t" || text[at] == "\n" || text[at] == "\r" { at += 1 } }

        mutating func expect(_ c: Unicode.Scalar) throws {
            skipSpace()
            guard at < text.count, text[at] == c else { throw ParseError(message: "expected '\(c)' at character \(at)") }
            at += 1
        }

        mutating func peek() -> Unicode.Scalar? { skipSpace(); return at < text.count ? text[at] : nil }

        mutating func value(depth: Int) throws -> PythonLiteral {
            guard depth < 8 else { throw ParseError(message: "nested too deeply") }
            guard let c = peek() else { throw ParseError(message: "ends early") }
            switch c {
            case "'", "\"":
                at += 1
                var s = String.UnicodeScalarView()
                while at < text.count, text[at] != c {
                    if text[at] == "\\" { at += 1 }
                    guard at < text.count else { break }
                    s.append(text[at]); at += 1
                }
                guard at < text.count else { throw ParseError(message: "unterminated string") }
                at += 1
                return .string(String(s))
            case "(", "[":
                at += 1
                let close: Unicode.Scalar = c == "(" ? ")" : "]"
                var items = [PythonLiteral]()
                while peek() != close {
                    items.append(try value(depth: depth + 1))
                    guard items.count <= 64 else { throw ParseError(message: "more than 64 items") }
                    if peek() == "," { at += 1 } else { break }
                }
                try expect(close)
                return c == "(" ? .tuple(items) : .list(items)
            case "{":
                at += 1
                var items = [String: PythonLiteral]()
                while peek() != "}" {
                    guard case .string(let key) = try value(depth: depth + 1) else { throw ParseError(message: "a dict key that is not a string") }
                    try expect(":")
                    guard items[key] == nil else { throw ParseError(message: "the key '\(key)' appears twice") }
                    items[key] = try value(depth: depth + 1)
                    guard items.count <= 64 else { throw ParseError(message: "more than 64 keys") }
                    if peek() == "," { at += 1 } else { break }
                }
                try expect("}")
                return .dict(items)
            default:
                var word = String.UnicodeScalarView()
                while at < text.count, text[at].properties.isAlphabetic || ("0"..."9").contains(text[at]) || text[at] == "-" || text[at] == "_" || text[at] == "+" {
                    word.append(text[at]); at += 1
                    guard word.count <= 40 else { throw ParseError(message: "a word over 40 characters") }
                }
                let w = String(word)
                switch w {
                case "True": return .bool(true)
                case "False": return .bool(false)
                case "None": return .none
                default:
                    var digits = w
                    if digits.hasSuffix("L") { digits.removeLast() }   // Python 2's long
                    guard let n = Int(digits) else { throw ParseError(message: w.isEmpty ? "unexpected '\(c)'" : "'\(w)' is not a literal") }
                    return .int(n)
                }
            }
        }
    }
}
