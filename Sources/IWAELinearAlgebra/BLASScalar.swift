// Shape legend used across the engine:
//   B = examples in a minibatch, K = importance samples per example,
//   D = data dimension, k = latent dimension, H = hidden width.
// Matrices are row-major; "(rows, columns)".
import RealModule

/// Whether a matrix operand of a product is read as stored or transposed.
public enum Transpose: Sendable {
    case none
    case transposed
}

/// A floating-point type the engine computes in: `Float` for training and
/// evaluation, `Double` for finite-difference checks and references.
///
/// The protocol is closed: its one requirement, `routines`, can only be built
/// inside this package, and `Float` and `Double` are its two conformances.
/// Generic code in the package calls the BLAS, LAPACKE and elementwise
/// routines through the `package` forwarders below (`Scalar.gemm(…)`,
/// `Scalar.exp(…)`, …), which take raw buffers and so are not public API.
public protocol BLASScalar: BinaryFloatingPoint, Real, Sendable where Self.RawSignificand: FixedWidthInteger {
    /// The routines of this scalar type (`Float+BLAS.swift`, `Double+BLAS.swift`).
    static var routines: BLASRoutines<Self> { get }
}

/// The table of a scalar type's routines: one function value each, the `s`
/// or `d` routine of BLAS and LAPACKE or the engine's elementwise kernel.
/// Its members are package API (they take pointers); see the forwarders on
/// `BLASScalar` for what each computes.
public final class BLASRoutines<Scalar: BLASScalar>: Sendable {
    @usableFromInline package typealias Pointer = UnsafePointer<Scalar>
    @usableFromInline package typealias MutablePointer = UnsafeMutablePointer<Scalar>
    @usableFromInline package typealias Elementwise = @Sendable (Pointer, MutablePointer, Int) -> Void

    @usableFromInline package let gemm: @Sendable (GEMMBackend, Int, Transpose, Transpose, Int, Int, Int, Scalar, Pointer, Int, Pointer, Int, Scalar, MutablePointer, Int) -> Void
    @usableFromInline package let gemv: @Sendable (Transpose, Int, Int, Scalar, Pointer, Int, Pointer, Scalar, MutablePointer) -> Void
    @usableFromInline package let triangularSolve: @Sendable (Bool, Transpose, Int, Int, Scalar, Pointer, Int, MutablePointer, Int) -> Void
    @usableFromInline package let axpy: @Sendable (Int, Scalar, Pointer, MutablePointer) -> Void
    @usableFromInline package let choleskyLower: @Sendable (Int, MutablePointer, Int) -> Int
    @usableFromInline package let exp, log, log1p, tanh, sigmoid, softplus: Elementwise
    /// The rows-and-columns passes that can also write their result rounded
    /// to bfloat16 (`RoundedDestination`'s two buffers; Float only), and
    /// those over a gradient that can also sum its columns (a bias gradient).
    @usableFromInline package typealias RowsPass = @Sendable (MutablePointer, Pointer, Int, Int, UnsafeMutablePointer<UInt16>?, UnsafeMutablePointer<Float>?) -> Void
    @usableFromInline package typealias GradientRowsPass = @Sendable (MutablePointer, Pointer, Int, Int, UnsafeMutablePointer<UInt16>?, UnsafeMutablePointer<Float>?, MutablePointer?) -> Void
    @usableFromInline package let biasTanh: RowsPass
    @usableFromInline package let tanhBackward, scaleRows: GradientRowsPass
    @usableFromInline package let rowSumsOfSquares: @Sendable (Pointer, Int, Int, Int, MutablePointer) -> Void
    @usableFromInline package let bernoulliLogLikelihood: @Sendable (Pointer, Pointer?, Pointer, Int, Int, Int, MutablePointer, MutablePointer?) -> Void
    @usableFromInline package let adamStep: @Sendable (MutablePointer, Pointer, MutablePointer, MutablePointer, Int, Scalar, Scalar, Scalar, Scalar) -> Void
    @usableFromInline package let adamStepSumming: @Sendable (MutablePointer, UnsafePointer<MutablePointer?>, Int, MutablePointer, MutablePointer, Int, Scalar, Scalar, Scalar, Scalar) -> Void
    @usableFromInline package let fillStandardNormal: @Sendable (MutablePointer, Int, Xoshiro256) -> Void
    @usableFromInline package let roundToBFloat16: @Sendable (Pointer, Int, MutablePointer, Int, Int) -> Void

    package init(
        gemm: @escaping @Sendable (GEMMBackend, Int, Transpose, Transpose, Int, Int, Int, Scalar, Pointer, Int, Pointer, Int, Scalar, MutablePointer, Int) -> Void,
        gemv: @escaping @Sendable (Transpose, Int, Int, Scalar, Pointer, Int, Pointer, Scalar, MutablePointer) -> Void,
        triangularSolve: @escaping @Sendable (Bool, Transpose, Int, Int, Scalar, Pointer, Int, MutablePointer, Int) -> Void,
        axpy: @escaping @Sendable (Int, Scalar, Pointer, MutablePointer) -> Void,
        choleskyLower: @escaping @Sendable (Int, MutablePointer, Int) -> Int,
        exp: @escaping Elementwise, log: @escaping Elementwise, log1p: @escaping Elementwise,
        tanh: @escaping Elementwise, sigmoid: @escaping Elementwise, softplus: @escaping Elementwise,
        biasTanh: @escaping RowsPass, tanhBackward: @escaping GradientRowsPass, scaleRows: @escaping GradientRowsPass,
        rowSumsOfSquares: @escaping @Sendable (Pointer, Int, Int, Int, MutablePointer) -> Void,
        bernoulliLogLikelihood: @escaping @Sendable (Pointer, Pointer?, Pointer, Int, Int, Int, MutablePointer, MutablePointer?) -> Void,
        adamStep: @escaping @Sendable (MutablePointer, Pointer, MutablePointer, MutablePointer, Int, Scalar, Scalar, Scalar, Scalar) -> Void,
        adamStepSumming: @escaping @Sendable (MutablePointer, UnsafePointer<MutablePointer?>, Int, MutablePointer, MutablePointer, Int, Scalar, Scalar, Scalar, Scalar) -> Void,
        fillStandardNormal: @escaping @Sendable (MutablePointer, Int, Xoshiro256) -> Void,
        roundToBFloat16: @escaping @Sendable (Pointer, Int, MutablePointer, Int, Int) -> Void
    ) {
        self.gemm = gemm; self.gemv = gemv; self.triangularSolve = triangularSolve; self.axpy = axpy
        self.choleskyLower = choleskyLower
        self.exp = exp; self.log = log; self.log1p = log1p; self.tanh = tanh; self.sigmoid = sigmoid; self.softplus = softplus
        self.biasTanh = biasTanh; self.tanhBackward = tanhBackward; self.scaleRows = scaleRows
        self.rowSumsOfSquares = rowSumsOfSquares; self.bernoulliLogLikelihood = bernoulliLogLikelihood
        self.adamStep = adamStep; self.adamStepSumming = adamStepSumming
        self.fillStandardNormal = fillStandardNormal
        self.roundToBFloat16 = roundToBFloat16
    }
}

// The routines, by name. Pointers are row-major and every count is a number
// of elements.
package extension BLASScalar {
    /// `C ← α·op(A)·op(B) + β·C` with `op(A)` of shape (m, kk), `op(B)` (kk, n),
    /// `C` (m, n), by OpenBLAS.
    @inlinable
    static func gemm(
        transposeA: Transpose, transposeB: Transpose,
        m: Int, n: Int, kk: Int,
        alpha: Self, a: UnsafePointer<Self>, lda: Int,
        b: UnsafePointer<Self>, ldb: Int,
        beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int
    ) {
        routines.gemm(.openblas, 1, transposeA, transposeB, m, n, kk, alpha, a, lda, b, ldb, beta, c, ldc)
    }

    /// The same product computed by `backend` on `threads` threads (oneDNN;
    /// OpenBLAS uses its own pool). Double has only OpenBLAS and ignores
    /// `backend`; Float has oneDNN too.
    @inlinable
    static func gemm(
        backend: GEMMBackend, threads: Int,
        transposeA: Transpose, transposeB: Transpose,
        m: Int, n: Int, kk: Int,
        alpha: Self, a: UnsafePointer<Self>, lda: Int,
        b: UnsafePointer<Self>, ldb: Int,
        beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int
    ) {
        routines.gemm(backend, threads, transposeA, transposeB, m, n, kk, alpha, a, lda, b, ldb, beta, c, ldc)
    }

    /// `y ← α·op(A)·x + β·y` with `A` stored (m, n).
    @inlinable
    static func gemv(
        transpose: Transpose, m: Int, n: Int,
        alpha: Self, a: UnsafePointer<Self>, lda: Int,
        x: UnsafePointer<Self>, beta: Self, y: UnsafeMutablePointer<Self>
    ) {
        routines.gemv(transpose, m, n, alpha, a, lda, x, beta, y)
    }

    /// Triangular solve with a lower-triangular, non-unit (n, n) or (m, m) `a`:
    /// `B ← α·op(A)⁻¹·B` (side left, A is m×m) or `B ← α·B·op(A)⁻¹`
    /// (side right, A is n×n); `B` is (m, n).
    @inlinable
    static func triangularSolve(
        left: Bool, transposeA: Transpose, m: Int, n: Int,
        alpha: Self, a: UnsafePointer<Self>, lda: Int, b: UnsafeMutablePointer<Self>, ldb: Int
    ) {
        routines.triangularSolve(left, transposeA, m, n, alpha, a, lda, b, ldb)
    }

    /// `y ← α·x + y`.
    @inlinable
    static func axpy(count: Int, alpha: Self, x: UnsafePointer<Self>, y: UnsafeMutablePointer<Self>) {
        routines.axpy(count, alpha, x, y)
    }

    /// In-place Cholesky factorization `A = L·Lᵀ` of a row-major (n, n)
    /// matrix, lower triangle; returns LAPACK's `info` (0 on success,
    /// `i > 0` when the leading minor of order `i` is not positive definite).
    @inlinable
    static func choleskyLower(n: Int, a: UnsafeMutablePointer<Self>, lda: Int) -> Int {
        routines.choleskyLower(n, a, lda)
    }

    // Elementwise kernels: y[i] = f(x[i]) for i < count; x may equal y.
    @inlinable static func exp(_ x: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, count: Int) { routines.exp(x, y, count) }
    @inlinable static func log(_ x: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, count: Int) { routines.log(x, y, count) }
    @inlinable static func log1p(_ x: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, count: Int) { routines.log1p(x, y, count) }
    @inlinable static func tanh(_ x: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, count: Int) { routines.tanh(x, y, count) }
    @inlinable static func sigmoid(_ x: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, count: Int) { routines.sigmoid(x, y, count) }
    @inlinable static func softplus(_ x: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, count: Int) { routines.softplus(x, y, count) }

    // Passes over (rows, columns) that, given a `rounded` destination
    // (Float only), also write their result rounded to bfloat16 there (its
    // floats may be the result itself: rounded in place); the gradient
    // passes also add each column's sum of the result, before rounding,
    // into `columnSums` when given.

    /// `y[r][c] ← tanh(y[r][c] + bias[c])` in place over (rows, columns).
    @inlinable
    static func biasTanh(_ y: UnsafeMutablePointer<Self>, bias: UnsafePointer<Self>, rows: Int, columns: Int,
                         rounded: RoundedDestination? = nil) {
        routines.biasTanh(y, bias, rows, columns, rounded?.bits, rounded?.floats)
    }

    /// `g[r][c] ← g[r][c] · (1 − y[r][c]²)` in place over (rows, columns):
    /// tanh's backward from its output y.
    @inlinable
    static func tanhBackward(_ g: UnsafeMutablePointer<Self>, output y: UnsafePointer<Self>, rows: Int, columns: Int,
                             rounded: RoundedDestination? = nil, columnSums: UnsafeMutablePointer<Self>? = nil) {
        routines.tanhBackward(g, y, rows, columns, rounded?.bits, rounded?.floats, columnSums)
    }

    /// `y[r][c] ← scale[r] · y[r][c]` in place over (rows, columns).
    @inlinable
    static func scaleRows(_ y: UnsafeMutablePointer<Self>, by scale: UnsafePointer<Self>, rows: Int, columns: Int,
                          rounded: RoundedDestination? = nil, columnSums: UnsafeMutablePointer<Self>? = nil) {
        routines.scaleRows(y, scale, rows, columns, rounded?.bits, rounded?.floats, columnSums)
    }

    /// `sums[r] ← Σ_c x[r][c]²` for each row of `x`: summed from column 0 up,
    /// each square rounded before it is added (the bits of the plain loop).
    @inlinable
    static func rowSumsOfSquares(_ x: MatrixView<Self>, into sums: UnsafeMutablePointer<Self>) {
        routines.rowSumsOfSquares(x.pointer, x.rowStride, x.rows, x.columns, sums)
    }

    /// Bernoulli log-likelihood row by row, and optionally the residuals
    /// ∂log p/∂ℓ:
    ///
    ///     ℓ[r][d] = logits[r][d] + bias[d]     (no bias when nil)
    ///     logp[r] = Σ_d x[r / repeat][d]·ℓ[r][d] − softplus(ℓ[r][d]),   residual[r][d] = x[r / repeat][d] − σ(ℓ[r][d])
    ///
    /// `logits` and `residuals` are (rows, dim), `targets` is (rows / repeat, dim).
    @inlinable
    static func bernoulliLogLikelihood(
        logits: UnsafePointer<Self>, bias: UnsafePointer<Self>?, targets: UnsafePointer<Self>,
        rows: Int, dim: Int, repeat: Int,
        logLikelihood: UnsafeMutablePointer<Self>, residuals: UnsafeMutablePointer<Self>?
    ) {
        routines.bernoulliLogLikelihood(logits, bias, targets, rows, dim, `repeat`, logLikelihood, residuals)
    }

    /// One Adam update of `count` parameters, bias corrections folded into
    /// `stepSize` and `epsilon` (see `Adam`):
    ///
    ///     m ← β₁ m + (1 − β₁) g,  v ← β₂ v + (1 − β₂) g²,  θ ← θ − stepSize · m / (√v + epsilon)
    @inlinable
    static func adamStep(
        parameters: UnsafeMutablePointer<Self>, gradients: UnsafePointer<Self>, firstMoment: UnsafeMutablePointer<Self>,
        secondMoment: UnsafeMutablePointer<Self>, count: Int, beta1: Self, beta2: Self, stepSize: Self, epsilon: Self
    ) {
        routines.adamStep(parameters, gradients, firstMoment, secondMoment, count, beta1, beta2, stepSize, epsilon)
    }

    /// `adamStep` on the sum of `sources` gradient buffers, g = g₀ + g₁ + …
    /// (left to right), in one pass.
    @inlinable
    static func adamStepSumming(
        parameters: UnsafeMutablePointer<Self>, gradients: UnsafePointer<UnsafeMutablePointer<Self>?>, sources: Int,
        firstMoment: UnsafeMutablePointer<Self>, secondMoment: UnsafeMutablePointer<Self>, count: Int,
        beta1: Self, beta2: Self, stepSize: Self, epsilon: Self
    ) {
        routines.adamStepSumming(parameters, gradients, sources, firstMoment, secondMoment, count, beta1, beta2, stepSize, epsilon)
    }

    /// Fills `count` values with independent standard normals (Box–Muller on
    /// the generator's words).
    @inlinable
    static func fillStandardNormal(_ out: UnsafeMutablePointer<Self>, count: Int, using generator: Xoshiro256) {
        routines.fillStandardNormal(out, count, generator)
    }

    /// `out[r][c] ← bf16(x[r][c])` over (rows, columns), `x` read `rowStride`
    /// apart and `out` written contiguously: rounded to the nearest bfloat16,
    /// ties to even (Double goes through Float first).
    @inlinable
    static func roundToBFloat16(_ x: UnsafePointer<Self>, rowStride: Int, into out: UnsafeMutablePointer<Self>, rows: Int, columns: Int) {
        routines.roundToBFloat16(x, rowStride, out, rows, columns)
    }
}
