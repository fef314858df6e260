import RealModule
/// Numerically stable reductions in log space.

/// `log Σᵢ exp(xᵢ)` over `count` values, shifting by the maximum.
///
///     logsumexp(x) = m + log Σᵢ exp(xᵢ − m),   m = maxᵢ xᵢ
///
/// Exact for +large entries (no overflow), −∞ when every entry is −∞, +∞ if
/// any entry is +∞, NaN if any entry is NaN.
@inlinable
package func logSumExp<Scalar: BLASScalar>(_ x: UnsafePointer<Scalar>, count: Int) -> Scalar {
    var m = -Scalar.infinity
    for i in 0..<count {
        if x[i].isNaN { return .nan }
        m = Swift.max(m, x[i])
    }
    if m == -.infinity || m == .infinity { return m }
    var s: Scalar = 0
    for i in 0..<count { s += Scalar.exp(x[i] - m) }
    return m + Scalar.log(s)
}

/// `log Σᵢ exp(xᵢ)` over an array, by the same function (−∞ for an empty array).
public func logSumExp<Scalar: BLASScalar>(_ x: [Scalar]) -> Scalar {
    x.withUnsafeBufferPointer { x in x.baseAddress.map { logSumExp($0, count: x.count) } ?? -.infinity }
}

/// Row-wise log-sum-exp of a (rows, columns) matrix (rows values).
package func logSumExpRows<Scalar: BLASScalar>(_ x: MatrixView<Scalar>) -> [Scalar] {
    [Scalar](unsafeUninitializedCapacity: x.rows) { result, initialized in
        if let base = result.baseAddress { logSumExpRows(x, into: base) }
        initialized = x.rows
    }
}

/// Row-wise log-sum-exp of a (rows, columns) matrix into `result` (rows).
@inlinable
package func logSumExpRows<Scalar: BLASScalar>(_ x: MatrixView<Scalar>, into result: UnsafeMutablePointer<Scalar>) {
    for r in 0..<x.rows { result[r] = logSumExp(x.pointer + r * x.rowStride, count: x.columns) }
}

/// Row-wise softmax of a (rows, columns) matrix: `y[r, c] = exp(x[r, c] − logsumexp(x[r, :]))`.
/// A row of all −∞ gets uniform weights (no sample is preferred).
@inlinable
package func softmaxRows<Scalar: BLASScalar>(_ x: MatrixView<Scalar>, into y: MatrixView<Scalar>) {
    precondition(x.rows == y.rows && x.columns == y.columns)
    for r in 0..<x.rows {
        let lse = logSumExp(x.pointer + r * x.rowStride, count: x.columns)
        for c in 0..<x.columns {
            y[r, c] = lse.isFinite ? Scalar.exp(x[r, c] - lse) : 1 / Scalar(x.columns)
        }
    }
}

/// `log(exp(a) + exp(b))`, exact for −∞ arguments; NaN if either is NaN.
@inlinable
package func logAddExp<Scalar: BLASScalar>(_ a: Scalar, _ b: Scalar) -> Scalar {
    if a.isNaN || b.isNaN { return .nan }
    let m = Swift.max(a, b)
    if m == -.infinity { return m }
    if m == .infinity { return m }
    return m + Scalar.log(Scalar.exp(a - m) + Scalar.exp(b - m))
}
