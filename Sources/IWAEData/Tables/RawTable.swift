/// A numeric matrix as a data file holds it: rows × features of one element
/// type, in either byte order, laid out row-major, column-major or
/// N-dimensional, read in place (mapped) and converted row by row. Only
/// the rows asked for are ever converted.
package struct RawTable: @unchecked Sendable {
    /// The file it came from (and the member or tensor, as `file:key`), for messages.
    package let name: String
    package let elementType: ElementType
    /// Rows (N).
    package let rows: Int
    /// Features per row (D, after any column selection).
    package var columns: Int { featureOffsets.count }
    /// Column names from a CSV header, or nil.
    package let columnNames: [String]?
    /// The file's `MappedFile.fingerprint` when read from a file.
    package internal(set) var fingerprint: String?
    /// Each feature's column in the file (0-based), for messages.
    package let fileColumns: [Int]
    /// For an N-dimensional array (N, H, W): H and W, read as an image's rows and columns.
    package let imageShape: (height: Int, width: Int)?
    let bytes: TableBytes
    let swapped: Bool
    /// Bytes from one row to the next.
    let rowStride: Int
    /// Byte offset of each feature within its row.
    let featureOffsets: [Int]
    /// Features stored one after the other (offsets f · size): the fast path.
    let contiguous: Bool

    /// A table of `rows` rows over `bytes`: row r, feature f at byte
    /// r · rowStride + featureOffsets[f].
    package init(name: String, elementType: ElementType, rows: Int, bytes: TableBytes, swapped: Bool, rowStride: Int,
                 featureOffsets: [Int], columnNames: [String]? = nil, imageShape: (height: Int, width: Int)? = nil,
                 fileColumns: [Int]? = nil) {
        self.name = name
        self.elementType = elementType
        self.rows = rows
        self.bytes = bytes
        self.swapped = swapped
        self.rowStride = rowStride
        self.featureOffsets = featureOffsets
        self.columnNames = columnNames
        self.imageShape = imageShape
        self.fileColumns = fileColumns ?? Array(featureOffsets.indices)
        contiguous = featureOffsets.enumerated().allSatisfy { $0.element == $0.offset * elementType.size }
    }

    /// A row-major array of `shape` (N, d₁, …) or, with `fortranOrder`,
    /// column-major, each row flattened in C order: the layout of a `.npy`.
    package init(name: String, elementType: ElementType, shape: [Int], fortranOrder: Bool, bytes: TableBytes, swapped: Bool) {
        let size = elementType.size
        let n = shape.first ?? 1
        let trailing = Array(shape.dropFirst())
        let d = trailing.reduce(1, *)
        var offsets = [Int](repeating: 0, count: d)
        let rowStride: Int
        if fortranOrder && !trailing.isEmpty {
            // Element (i, j₁, …, j_m) at i + n·(j₁ + d₁·(j₂ + …)): feature f unravelled in C order.
            var strides = [Int](repeating: 0, count: trailing.count)
            var s = n * size
            for a in trailing.indices { strides[a] = s; s *= trailing[a] }
            for f in 0..<d {
                var rest = f, offset = 0
                for a in trailing.indices.reversed() {
                    offset += (rest % trailing[a]) * strides[a]
                    rest /= trailing[a]
                }
                offsets[f] = offset
            }
            rowStride = size
        } else {
            for f in 0..<d { offsets[f] = f * size }
            rowStride = d * size
        }
        let image = trailing.count == 2 ? (height: trailing[0], width: trailing[1]) : nil
        self.init(name: name, elementType: elementType, rows: n, bytes: bytes, swapped: swapped, rowStride: rowStride,
                  featureOffsets: offsets, imageShape: image)
    }

    /// The same rows with only the features `selection` (indices into this
    /// table's features, in the order given).
    package func selecting(columns selection: [Int]) -> RawTable {
        var table = RawTable(name: name, elementType: elementType, rows: rows, bytes: bytes, swapped: swapped, rowStride: rowStride,
                 featureOffsets: selection.map { featureOffsets[$0] }, columnNames: columnNames.map { names in selection.map { names[$0] } },
                 imageShape: selection == Array(0..<columns) ? imageShape : nil, fileColumns: selection.map { fileColumns[$0] })
        table.fingerprint = fingerprint
        return table
    }

    /// Row `r`'s D values as they are in the file, in Double.
    package func row(_ r: Int) -> [Double] {
        [Double](unsafeUninitializedCapacity: columns) { buffer, initialized in
            if let base = buffer.baseAddress { read(row: r, into: base) }
            initialized = columns
        }
    }

    /// Row `r`'s D values into `out`, converted to `Out` (Float or Double).
    @inline(__always)
    package func read<Out: BinaryFloatingPoint>(row r: Int, into out: UnsafeMutablePointer<Out>) {
        precondition(r >= 0 && r < rows, "row \(r) of \(rows)")
        guard let base = bytes.base, !featureOffsets.isEmpty else { return }
        let start = base + r * rowStride
        if contiguous {
            elementType.convert(start, offsets: nil, count: columns, swapped: swapped, into: out)
        } else {
            featureOffsets.withUnsafeBufferPointer {
                elementType.convert(start, offsets: $0.baseAddress, count: columns, swapped: swapped, into: out)
            }
        }
    }

    /// The value of row `r`, feature `f` (for messages and checks).
    package func value(row r: Int, column f: Int) -> Double {
        var v = 0.0
        guard let base = bytes.base else { return .nan }
        [featureOffsets[f]].withUnsafeBufferPointer {
            elementType.convert(base + r * rowStride, offsets: $0.baseAddress, count: 1, swapped: swapped, into: &v)
        }
        return v
    }

    /// "column 3" or "column 3 ('age')".
    package func describe(column f: Int) -> String {
        "column \(fileColumns[f])" + (columnNames.map { " ('\($0[f])')" } ?? "")
    }
}
