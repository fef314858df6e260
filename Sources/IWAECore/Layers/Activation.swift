import IWAELinearAlgebra
import RealModule

/// A pointwise nonlinearity applied in place after a `Linear`.
///
/// Each backward is written in terms of the forward's output `y`, so the
/// forward keeps nothing but `y`:
///
///     tanh:     y = tanh a,            dy/da = 1 − y²
///     relu:     y = max(a, 0),         dy/da = [y > 0]
///     softplus: y = log(1 + eᵃ),       dy/da = σ(a) = 1 − e^{−y}
///     sigmoid:  y = σ(a),              dy/da = y (1 − y)
///     identity: y = a,                 dy/da = 1
public enum Activation: String, Sendable, CaseIterable, Codable {
    case tanh, relu, softplus, sigmoid, identity

    /// `y[r, c] ← f(y[r, c] + bias[c])` over a contiguous (rows, columns)
    /// matrix: the layer's bias and nonlinearity in one sweep (fused in one
    /// kernel for tanh), and y rounded to bfloat16 into `rounded` when given
    /// (in the same sweep for tanh).
    package func forward<Scalar: BLASScalar>(_ y: MatrixView<Scalar>, bias: UnsafePointer<Scalar>,
                                             rounded: RoundedDestination? = nil) {
        precondition(y.isContiguous)
        if self == .tanh {
            Scalar.biasTanh(y.pointer, bias: bias, rows: y.rows, columns: y.columns, rounded: rounded)
            return
        }
        for r in 0..<y.rows {
            let row = y.pointer + r * y.columns
            for c in 0..<y.columns { row[c] += bias[c] }
        }
        forward(y)
        if let rounded { roundToBFloat16(y, into: rounded) }
    }

    /// `y ← f(y)` over a contiguous (rows, columns) matrix.
    public func forward<Scalar: BLASScalar>(_ y: MatrixView<Scalar>) {
        precondition(y.isContiguous)
        let p = y.pointer, n = y.count
        switch self {
        case .tanh: Scalar.tanh(p, p, count: n)
        case .sigmoid: Scalar.sigmoid(p, p, count: n)
        case .softplus: Scalar.softplus(p, p, count: n)
        case .relu: for i in 0..<n where !(p[i] > 0) { p[i] = p[i].isNaN ? p[i] : 0 }
        case .identity: break
        }
    }

    /// `dy ← dy ⊙ f′(a)` in place, from the forward output `y`.
    public func backward<Scalar: BLASScalar>(_ dy: MatrixView<Scalar>, output y: MatrixView<Scalar>) {
        backward(dy, output: y, rounded: nil)
    }

    /// `dy ← dy ⊙ f′(a)` in place, from the forward output `y`, then, when
    /// given, dy's column sums added into `columnSums` and dy rounded to
    /// bfloat16 into `rounded` (in place when its floats are dy's), in the
    /// same sweep for tanh.
    package func backward<Scalar: BLASScalar>(_ dy: MatrixView<Scalar>, output y: MatrixView<Scalar>,
                                              rounded: RoundedDestination?, columnSums: UnsafeMutablePointer<Scalar>? = nil) {
        precondition(y.isContiguous && dy.isContiguous && y.count == dy.count)
        let g = dy.pointer, o = y.pointer, n = y.count
        switch self {
        case .tanh:
            Scalar.tanhBackward(g, output: o, rows: y.rows, columns: y.columns, rounded: rounded, columnSums: columnSums)
            return   // summed and rounded in its sweep
        case .sigmoid: for i in 0..<n { g[i] *= o[i] * (1 - o[i]) }
        case .relu: for i in 0..<n where !(o[i] > 0) { g[i] = 0 }
        case .softplus: for i in 0..<n { g[i] *= -Scalar.expMinusOne(-o[i]) }
        case .identity: break
        }
        if columnSums != nil || rounded != nil { sumColumnsAndRound(dy, into: columnSums, rounding: rounded) }
    }
}
