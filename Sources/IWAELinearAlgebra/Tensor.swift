import RealModule
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
/// A row-major block of scalars with a shape, allocated once and reused.
///
/// A class: layers and workspaces hold buffers by reference and write into
/// them in place, step after step, with no allocation on the training path.
/// The memory is zero-initialized and freed with the tensor.
public final class Tensor<Scalar: BLASScalar> {
    public private(set) var shape: [Int]
    package private(set) var capacity: Int
    package private(set) var pointer: UnsafeMutablePointer<Scalar>

    /// A zero tensor of `shape` (each extent ≥ 0).
    public init(shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative extent in \(shape)")
        self.shape = shape
        capacity = shape.reduce(1, *)
        pointer = Tensor.allocateZeroed(capacity)
    }

    public convenience init(shape: [Int], values: [Scalar]) {
        self.init(shape: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: count) }
    }

    deinit { pointer.deallocate() }

    /// `count` (at least one) zeros.
    private static func allocateZeroed(_ count: Int) -> UnsafeMutablePointer<Scalar> {
        let pointer = UnsafeMutablePointer<Scalar>.allocate(capacity: max(count, 1))
        zeroBytes(pointer, max(count, 1))
        return pointer
    }

    /// Zeros `count` scalars by one memset: Float's and Double's zero is all
    /// zero bits, and a per-element `initialize`/`update(repeating:)` runs
    /// unspecialized from another module, through value witnesses (2.8 % of
    /// a training run's profile, in validation's buffers).
    private static func zeroBytes(_ pointer: UnsafeMutablePointer<Scalar>, _ count: Int) {
        memset(pointer, 0, count * MemoryLayout<Scalar>.stride)
    }

    /// Replaces the storage with a zeroed block of `newShape` (contents are
    /// not kept). For sizing workspaces, never on a per-step path.
    package func replace(shape newShape: [Int]) {
        precondition(newShape.allSatisfy { $0 >= 0 }, "negative extent in \(newShape)")
        pointer.deallocate()
        shape = newShape
        capacity = newShape.reduce(1, *)
        pointer = Tensor.allocateZeroed(capacity)
    }

    public var count: Int { shape.reduce(1, *) }
    package var buffer: UnsafeMutableBufferPointer<Scalar> { .init(start: pointer, count: count) }
    public var array: [Scalar] { Array(buffer) }

    /// The `count` values as a `MutableSpan` for the duration of `body`: to
    /// fill a batch in place (`TrainingExamples.write(_:binarize:using:into:)`).
    public func withMutableSpan<R>(_ body: (inout MutableSpan<Scalar>) throws -> R) rethrows -> R {
        var span = buffer.mutableSpan
        return try body(&span)
    }

    package func fill(_ value: Scalar) { pointer.update(repeating: value, count: count) }
    package func zero() { Tensor.zeroBytes(pointer, count) }

    /// Element `i` of the row-major storage, 0 ≤ i < count.
    public subscript(i: Int) -> Scalar {
        get { precondition(i >= 0 && i < capacity, "index \(i) outside a tensor of \(capacity)"); return pointer[i] }
        set { precondition(i >= 0 && i < capacity, "index \(i) outside a tensor of \(capacity)"); pointer[i] = newValue }
    }

    /// The tensor as a matrix: the last extent is the columns, the rest the rows.
    public var matrix: MatrixView<Scalar> {
        let columns = shape.last ?? 1
        return MatrixView(pointer, rows: columns == 0 ? 0 : count / columns, columns: columns)
    }
}

/// A row-major matrix window onto memory owned elsewhere: `rows × columns`
/// with `rowStride` elements between row starts.
public struct MatrixView<Scalar: BLASScalar> {
    @usableFromInline package let pointer: UnsafeMutablePointer<Scalar>
    public let rows: Int
    public let columns: Int
    public let rowStride: Int

    @inlinable
    package init(_ pointer: UnsafeMutablePointer<Scalar>, rows: Int, columns: Int, rowStride: Int? = nil) {
        self.pointer = pointer
        self.rows = rows
        self.columns = columns
        self.rowStride = rowStride ?? columns
    }

    /// The element at (row, column); both must be inside the view.
    @inlinable public subscript(row: Int, column: Int) -> Scalar {
        get {
            precondition(row >= 0 && row < rows && column >= 0 && column < columns, "(\(row), \(column)) outside a \(rows) × \(columns) view")
            return pointer[row * rowStride + column]
        }
        nonmutating set {
            precondition(row >= 0 && row < rows && column >= 0 && column < columns, "(\(row), \(column)) outside a \(rows) × \(columns) view")
            pointer[row * rowStride + column] = newValue
        }
    }

    /// Rows `range` of this matrix (inside 0..<rows).
    @inlinable public func rows(_ range: Range<Int>) -> MatrixView {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows \(range) outside 0..<\(rows)")
        return MatrixView(pointer + range.lowerBound * rowStride, rows: range.count, columns: columns, rowStride: rowStride)
    }

    /// Columns `range` of this matrix (a strided view; inside 0..<columns).
    @inlinable public func columns(_ range: Range<Int>) -> MatrixView {
        precondition(range.lowerBound >= 0 && range.upperBound <= columns, "columns \(range) outside 0..<\(columns)")
        return MatrixView(pointer + range.lowerBound, rows: rows, columns: range.count, rowStride: rowStride)
    }

    /// The values, row by row (rows × columns).
    public var array: [Scalar] {
        var values: [Scalar] = []
        values.reserveCapacity(count)
        for r in 0..<rows { for c in 0..<columns { values.append(pointer[r * rowStride + c]) } }
        return values
    }

    @inlinable public var isContiguous: Bool { rowStride == columns }
    @inlinable public var count: Int { rows * columns }
}
