import Foundation

/// Which columns of a table to read: `--columns 0,2,5-9` (0-based indices
/// and inclusive ranges) or, for a CSV file with a header, names
/// (`--columns age,income`), in the order given.
public struct ColumnSelection: Sendable, Equatable, Codable, CustomStringConvertible {
    public enum Item: Sendable, Equatable, Codable { case index(Int), range(Int, Int), name(String) }
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
    public func resolve(count: Int, names: [String]?, file: String) throws -> [Int] {
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
/// Parsed once into Double (only the chosen columns); every defect names
/// the file, the line and the column.
package enum DelimitedText {
    static func table(_ file: MappedFile, delimiter: UInt8, columns selection: ColumnSelection?) throws -> RawTable {
        guard let base = file.bytes?.assumingMemoryBound(to: UInt8.self), file.count > 0 else {
            throw DataError.invalidData("\(file.path): the file is empty")
        }
        return try table(UnsafeBufferPointer(start: base, count: file.count), name: file.path, delimiter: delimiter, columns: selection)
    }

    /// The table of the text `bytes` (a file's, named `path` in messages).
    package static func table(_ bytes: UnsafeBufferPointer<UInt8>, name path: String, delimiter: UInt8,
                              columns selection: ColumnSelection?) throws -> RawTable {
        guard !bytes.isEmpty else { throw DataError.invalidData("\(path): the file is empty") }
        // An upper bound on the rows, to allocate once.
        var lineCount = 1
        for b in bytes where b == 0x0A { lineCount += 1 }

        var lineNumber = 0
        var position = 0
        /// The next line's cells (nil at the end), skipping blank and comment lines.
        func nextLine() throws -> [Range<Int>]? {
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
        func text(_ r: Range<Int>) -> String {
            var s = String(decoding: UnsafeBufferPointer(rebasing: bytes[r]), as: UTF8.self).trimmingCharacters(in: .whitespaces)
            if s.count >= 2, s.hasPrefix("\""), s.hasSuffix("\"") { s = String(s.dropFirst().dropLast()).replacingOccurrences(of: "\"\"", with: "\"") }
            return s
        }
        /// The cell's number, or nil when it is not one (a header's name).
        func number(_ r: Range<Int>) -> Double? {
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

        guard let first = try nextLine() else { throw DataError.invalidData("\(path): no rows (only blank or comment lines)") }
        let width = first.count
        let isHeader = first.contains { number($0) == nil }
        let names = isHeader ? first.map(text) : nil
        let chosen = try selection?.resolve(count: width, names: names, file: path) ?? Array(0..<width)
        let d = chosen.count
        guard d > 0 else { throw DataError.invalidData("\(path): no columns") }
        let owner = UnsafeMutableRawBufferPointer.Owner(byteCount: lineCount * d * 8)
        let values = owner.buffer.baseAddress!.bindMemory(to: Double.self, capacity: lineCount * d)
        var rows = 0
        func take(_ cells: [Range<Int>]) throws {
            guard cells.count == width else {
                throw DataError.invalidData("\(path): line \(lineNumber) has \(cells.count) cells, not \(width) like the \(isHeader ? "header" : "first row") (ragged rows)")
            }
            for (j, c) in chosen.enumerated() {
                guard let v = number(cells[c]) else {
                    let cell = text(cells[c])
                    let column = "column \(c)" + (names.map { " ('\($0[c])')" } ?? "")
                    throw DataError.invalidData("\(path): line \(lineNumber), \(column): " + (cell.isEmpty ? "an empty cell (missing values are not supported: fill or drop them)" : "'\(cell.prefix(40))' is not a number"))
                }
                guard v.isFinite else {
                    let column = "column \(c)" + (names.map { " ('\($0[c])')" } ?? "")
                    throw DataError.invalidData("\(path): line \(lineNumber), \(column): \(text(cells[c])) (NaN and infinities are not data: fill or drop them)")
                }
                values[rows * d + j] = v
            }
            rows += 1
        }
        if !isHeader { try take(first) }
        while let cells = try nextLine() { try take(cells) }
        guard rows > 0 else { throw DataError.invalidData("\(path): a header and no rows") }
        return RawTable(name: path, elementType: .float64, rows: rows, bytes: .owned(owner, offset: 0), swapped: false,
                        rowStride: d * 8, featureOffsets: (0..<d).map { $0 * 8 }, columnNames: names.map { n in chosen.map { n[$0] } },
                        fileColumns: chosen)
    }
}
