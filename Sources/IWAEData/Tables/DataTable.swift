/// Rows of a table as the model sees them: a `RawTable` (a file read in
/// place, or values in memory), the rows in use (all, or a split's), and the
/// encoding that turns raw values into model values (`TableEncoding`).
/// Nothing is converted until rows are asked for, so a table larger than
/// memory trains from its mapped file.
public struct DataTable: Sendable {
    package let raw: RawTable
    public let encoding: TableEncoding
    /// Rows of `raw` in use, in order (nil: all of them).
    package let rowIndices: [Int]?

    /// N.
    public var count: Int { rowIndices?.count ?? raw.rows }
    /// D.
    public var dimension: Int { raw.columns }

    /// `raw`'s rows (or those at `rows`) under `encoding`.
    package init(_ raw: RawTable, encoding: TableEncoding, rows: [Int]? = nil) throws {
        if let width = encoding.width, width != raw.columns {
            throw DataError.invalidArgument("\(raw.name) has \(raw.columns) features but the standardization has \(width)")
        }
        if let rows, let bad = rows.first(where: { $0 < 0 || $0 >= raw.rows }) {
            throw DataError.invalidArgument("\(raw.name): row \(bad) of \(raw.rows)")
        }
        self.raw = raw
        self.encoding = encoding
        rowIndices = rows
    }

    /// A table of `rows` × `columns` Float values in memory (row-major),
    /// under `encoding` (default: the values as they are).
    public init(values: [Float], rows: Int, columns: Int, encoding: TableEncoding = .values, name: String = "array") throws {
        guard rows >= 1, columns >= 1, values.count == rows * columns else {
            throw DataError.invalidArgument("\(name): \(values.count) values are not \(rows) rows of \(columns)")
        }
        let owner = UnsafeMutableRawBufferPointer.Owner(byteCount: values.count * 4)
        values.withUnsafeBytes { owner.buffer.copyMemory(from: $0) }
        try self.init(RawTable(name: name, elementType: .float32, shape: [rows, columns], fortranOrder: false,
                               bytes: .owned(owner, offset: 0), swapped: false), encoding: encoding)
    }

    /// The table in `path` (see `RawTable(contentsOf:key:columns:)`), as
    /// `kind` says or, when nil, as its values call for
    /// (`TableStatistics.kind(of:)`): binary, intensity or standardized.
    public init(contentsOf path: String, key: String? = nil, columns: ColumnSelection? = nil, kind: TableKind? = nil) throws {
        let raw = try RawTable(contentsOf: path, key: key, columns: columns)
        let statistics = try TableStatistics(raw)
        try self.init(raw, encoding: try statistics.encoding(kind ?? statistics.kind(of: raw.elementType), of: raw))
    }

    /// The rows at `indices` (positions in this table), in that order.
    public func rows(_ indices: [Int]) -> DataTable {
        let mapped = rowIndices.map { all in indices.map { all[$0] } } ?? indices
        return try! DataTable(raw, encoding: encoding, rows: mapped)
    }

    /// The first `n` rows.
    public func prefix(_ n: Int) -> DataTable { rows(Array(0..<Swift.min(n, count))) }

    /// The rows at `indices` (positions in this table), encoded: indices.count × D values, row-major.
    public func values(rows indices: some Collection<Int>) -> [Float] {
        [Float](unsafeUninitializedCapacity: indices.count * dimension) { buffer, initialized in
            if let base = buffer.baseAddress { write(rows: indices, into: base) }
            initialized = indices.count * dimension
        }
    }

    /// Writes the rows at `indices` (positions in this table), encoded, into
    /// `out` (indices.count × D).
    @_specialize(exported: true, where Rows == ArraySlice<Int>)
    @_specialize(exported: true, where Rows == Range<Int>)
    package func write<Rows: Collection<Int>>(rows indices: Rows, into out: UnsafeMutablePointer<Float>) {
        let d = dimension
        var k = 0
        switch encoding {
        case .values:
            for i in indices { raw.read(row: rowIndices?[i] ?? i, into: out + k * d); k += 1 }
        case .intensity(let scale):
            let s = Float(scale)
            for i in indices {
                let row = out + k * d
                raw.read(row: rowIndices?[i] ?? i, into: row)
                for f in 0..<d { row[f] = row[f] / s }
                k += 1
            }
        case .standardized(let mean, let scale):
            withUnsafeTemporaryAllocation(of: Double.self, capacity: d) { v in
                for i in indices {
                    raw.read(row: rowIndices?[i] ?? i, into: v.baseAddress!)
                    let row = out + k * d
                    for f in 0..<d { row[f] = Float((v[f] - mean[f]) / scale[f]) }
                    k += 1
                }
            }
        }
    }

    /// The index of the first row holding a NaN or infinity (raw or after
    /// the encoding), or nil. Integer tables are finite by their type.
    public func firstNonFiniteRow() -> Int? {
        if raw.elementType.isInteger && encoding == .values { return nil }
        let d = dimension
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: 256 * d) { buffer in
            var start = 0
            while start < count {
                let n = Swift.min(256, count - start)
                write(rows: start..<start + n, into: buffer.baseAddress!)
                for r in 0..<n where (0..<d).contains(where: { !buffer[r * d + $0].isFinite }) { return start + r }
                start += n
            }
            return nil
        }
    }

    /// Width and height when the rows are images (a 3-dimensional array).
    package var imageShape: (height: Int, width: Int)? { raw.imageShape }
}
