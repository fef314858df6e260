import Foundation

/// Which columns of a table to read: `--columns 0,2,5-9` (0-based indices
/// and inclusive ranges) or, for a CSV file with a header, names
/// (`--columns age,income`), in the order given.
public struct ColumnSelection: Sendable, Equatable, Codable, CustomStringConvertible {
    public enum Item: Sendable, Equatable { case index(Int), range(Int, Int), name(String) }
    public var items: [Item]

    public init(items: [Item]) { self.items = items }

    /// Parses `0,2,5-9` or `age,income`; nil for an empty or malformed list.
    public init?(_ text: String) {
        var items = [Item]()
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let p = part.trimmingCharacters(in: .whitespaces)
            guard !p.isEmpty else { return nil }
            if let i = Int(p) {
                guard i >= 0 else { return nil }
                items.append(.index(i))
            } else if let dash = p.firstIndex(of: "-"), let a = Int(p[..<dash]), let b = Int(p[p.index(after: dash)...]) {
                guard a >= 0, b >= a else { return nil }
                items.append(.range(a, b))
            } else {
                items.append(.name(p))
            }
        }
        guard !items.isEmpty else { return nil }
        self.items = items
    }

    public var description: String {
        items.map {
            switch $0 {
            case .index(let i): return String(i)
            case .range(let a, let b): return "\(a)-\(b)"
            case .name(let n): return n
            }
        }.joined(separator: ",")
    }

    /// The 0-based indices among `count` columns named `names` (a CSV
    /// header, or nil); one line naming `file` for a column that is not
    /// there or is chosen twice.
    package func resolve(count: Int, names: [String]?, file: String) throws -> [Int] {
        var out = [Int]()
        for item in items {
            switch item {
            case .index(let i):
                guard i < count else { throw DataError.invalidArgument("\(file): --columns names column \(i) but the table has \(count) (0 to \(count - 1))") }
                out.append(i)
            case .range(let a, let b):
                guard b < count else { throw DataError.invalidArgument("\(file): --columns names columns \(a)-\(b) but the table has \(count) (0 to \(count - 1))") }
                out += Array(a...b)
            case .name(let n):
                guard let names else { throw DataError.invalidArgument("\(file): --columns names column '\(n)' but the file has no header of names: use 0-based indices") }
                guard let i = names.firstIndex(of: n) else {
                    throw DataError.invalidArgument("\(file): no column named '\(n)' (the header has: \(names.prefix(12).joined(separator: ", "))\(names.count > 12 ? ", …" : ""))")
                }
                out.append(i)
            }
        }
        var seen = Set<Int>()
        for i in out where !seen.insert(i).inserted {
            throw DataError.invalidArgument("\(file): --columns chooses column \(i) twice")
        }
        return out
    }
}

/// CSV (`,`) and TSV (tab) text: numeric cells, an optional header row of
/// names (taken as a header when any of its cells is not a number), blank
/// lines and lines starting with `#` skipped, RFC 4180 quotes within a line.
/// Parsed into Double (only the chosen columns), all at once or a chunk of
/// rows at a time (`DelimitedTextReader`); every defect names the file, the
/// line and the column.
package enum DelimitedText {
    static func table(_ file: MappedFile, delimiter: UInt8, columns selection: ColumnSelection?) throws -> RawTable {
        let reader = try DelimitedTextReader(file, delimiter: delimiter, columns: selection)
        return try reader.all()
    }

    /// The table of the text `bytes` (a file's, named `path` in messages).
    package static func table(_ bytes: UnsafeBufferPointer<UInt8>, name path: String, delimiter: UInt8,
                              columns selection: ColumnSelection?) throws -> RawTable {
        try DelimitedTextReader(bytes, name: path, delimiter: delimiter, columns: selection).all()
    }
}

/// Reads the rows of CSV or TSV text in order: the header (if any) and the
/// column selection when made, then `next(rows:)` parses up to that many
/// rows into a table of their own, so that a text of any length is read in
/// bounded memory.
package final class DelimitedTextReader {
    let bytes: UnsafeBufferPointer<UInt8>
    let path: String
    let delimiter: UInt8
    /// Keeps a mapped file's bytes alive.
    private let file: MappedFile?
    private var position = 0
    private var lineNumber = 0
    /// Cells per line.
    private(set) var width = 0
    /// The header's names, or nil.
    package private(set) var names: [String]?
    /// The file columns read, in order.
    private(set) var chosen: [Int] = []
    /// The first line when it holds numbers (read before the others).
    private var pendingFirst: [Range<Int>]?

    /// A reader of the file at `path` (`.csv`: commas; otherwise tabs).
    package convenience init(contentsOf path: String, columns selection: ColumnSelection?) throws {
        try self.init(MappedFile(path), delimiter: path.lowercased().hasSuffix(".csv") ? UInt8(ascii: ",") : 0x09, columns: selection)
    }

    convenience init(_ file: MappedFile, delimiter: UInt8, columns selection: ColumnSelection?) throws {
        guard let base = file.bytes?.assumingMemoryBound(to: UInt8.self), file.count > 0 else {
            throw DataError.invalidData("\(file.path): the file is empty")
        }
        try self.init(UnsafeBufferPointer(start: base, count: file.count), name: file.path, delimiter: delimiter,
                      columns: selection, keeping: file)
    }

    init(_ bytes: UnsafeBufferPointer<UInt8>, name path: String, delimiter: UInt8, columns selection: ColumnSelection?,
         keeping file: MappedFile? = nil) throws {
        guard !bytes.isEmpty else { throw DataError.invalidData("\(path): the file is empty") }
        self.bytes = bytes
        self.path = path
        self.delimiter = delimiter
        self.file = file
        guard let first = try nextLine() else { throw DataError.invalidData("\(path): no rows (only blank or comment lines)") }
        let isHeader = first.contains { number($0) == nil }
        let names = isHeader ? first.map(text) : nil
        let width = first.count
        let chosen = try selection?.resolve(count: width, names: names, file: path) ?? Array(0..<width)
        guard !chosen.isEmpty else { throw DataError.invalidData("\(path): no columns") }
        self.width = width
        self.names = names
        self.chosen = chosen
        pendingFirst = isHeader ? nil : first
    }

    /// The columns read (D).
    package var columns: Int { chosen.count }

    /// Every remaining row, in one table (allocated once: the lines counted first).
    func all() throws -> RawTable {
        var lineCount = 1
        for i in position..<bytes.count where bytes[i] == 0x0A { lineCount += 1 }
        guard let table = try next(rows: lineCount) else { throw DataError.invalidData("\(path): a header and no rows") }
        return table
    }

    /// The rows that remain to be read: lines that are neither blank nor
    /// comments (a scan of the bytes; nothing is parsed).
    package func remainingRows() -> Int {
        var rows = pendingFirst == nil ? 0 : 1
        var i = position
        while i < bytes.count {
            var first = i
            while first < bytes.count && (bytes[first] == 0x20 || bytes[first] == 0x09 && delimiter != 0x09) { first += 1 }
            if first < bytes.count && bytes[first] != 0x0A && bytes[first] != 0x0D && bytes[first] != UInt8(ascii: "#") { rows += 1 }
            while i < bytes.count && bytes[i] != 0x0A { i += 1 }
            i += 1
        }
        return rows
    }

    /// Up to `rows` more rows as a table (nil at the end of the text).
    package func next(rows maximum: Int) throws -> RawTable? {
        let d = chosen.count
        let capacity = Swift.max(1, maximum)
        let owner = UnsafeMutableRawBufferPointer.Owner(byteCount: capacity * d * 8)
        let values = owner.buffer.baseAddress!.bindMemory(to: Double.self, capacity: capacity * d)
        var rows = 0
        while rows < capacity {
            let cells: [Range<Int>]
            if let first = pendingFirst { cells = first; pendingFirst = nil }
            else if let line = try nextLine() { cells = line }
            else { break }
            guard cells.count == width else {
                throw DataError.invalidData("\(path): line \(lineNumber) has \(cells.count) cells, not \(width) like the \(names != nil ? "header" : "first row") (ragged rows)")
            }
            for (j, c) in chosen.enumerated() {
                guard let v = number(cells[c]) else {
                    let cell = text(cells[c])
                    throw DataError.invalidData("\(path): line \(lineNumber), \(describe(c)): " + (cell.isEmpty ? "an empty cell (missing values are not supported: fill or drop them)" : "'\(cell.prefix(40))' is not a number"))
                }
                guard v.isFinite else {
                    throw DataError.invalidData("\(path): line \(lineNumber), \(describe(c)): \(text(cells[c])) (NaN and infinities are not data: fill or drop them)")
                }
                values[rows * d + j] = v
            }
            rows += 1
        }
        guard rows > 0 else { return nil }
        return RawTable(name: path, elementType: .float64, rows: rows, bytes: .owned(owner, offset: 0), swapped: false,
                        rowStride: d * 8, featureOffsets: (0..<d).map { $0 * 8 }, columnNames: names.map { n in chosen.map { n[$0] } },
                        fileColumns: chosen)
    }

    private func describe(_ c: Int) -> String { "column \(c)" + (names.map { " ('\($0[c])')" } ?? "") }

    /// The next line's cells (nil at the end), skipping blank and comment lines.
    private func nextLine() throws -> [Range<Int>]? {
        while position < bytes.count {
            lineNumber += 1
            var end = position
            while end < bytes.count && bytes[end] != 0x0A { end += 1 }
            var stop = end
            if stop > position && bytes[stop - 1] == 0x0D { stop -= 1 }
            let start = position
            position = end + 1
            var first = start
            while first < stop && (bytes[first] == 0x20 || bytes[first] == 0x09 && delimiter != 0x09) { first += 1 }
            if first == stop || bytes[first] == UInt8(ascii: "#") { continue }
            var cells = [Range<Int>]()
            var cell = start, inQuotes = false
            var i = start
            while i < stop {
                let c = bytes[i]
                if c == UInt8(ascii: "\"") { inQuotes.toggle() }
                else if c == delimiter && !inQuotes { cells.append(cell..<i); cell = i + 1 }
                i += 1
            }
            if inQuotes { throw DataError.invalidData("\(path): line \(lineNumber): a quoted cell does not end on its line") }
            cells.append(cell..<stop)
            return cells
        }
        return nil
    }

    private func text(_ r: Range<Int>) -> String {
        var s = String(decoding: UnsafeBufferPointer(rebasing: bytes[r]), as: UTF8.self).trimmingCharacters(in: .whitespaces)
        if s.count >= 2, s.hasPrefix("\""), s.hasSuffix("\"") { s = String(s.dropFirst().dropLast()).replacingOccurrences(of: "\"\"", with: "\"") }
        return s
    }

    /// The cell's number, or nil when it is not one (a header's name).
    private func number(_ r: Range<Int>) -> Double? {
        var lo = r.lowerBound, hi = r.upperBound
        while lo < hi && (bytes[lo] == 0x20 || bytes[lo] == 0x09) { lo += 1 }
        while hi > lo && (bytes[hi - 1] == 0x20 || bytes[hi - 1] == 0x09) { hi -= 1 }
        if hi - lo >= 2 && bytes[lo] == UInt8(ascii: "\"") && bytes[hi - 1] == UInt8(ascii: "\"") { lo += 1; hi -= 1 }
        guard hi > lo, hi - lo < 64 else { return nil }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: hi - lo + 1) { buffer -> Double? in
            for j in 0..<(hi - lo) { buffer[j] = CChar(bitPattern: bytes[lo + j]) }
            buffer[hi - lo] = 0
            var end: UnsafeMutablePointer<CChar>?
            let v = strtod(buffer.baseAddress!, &end)
            guard end == buffer.baseAddress! + (hi - lo) else { return nil }
            return v
        }
    }
}
