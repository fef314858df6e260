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

extension BLASScalar {
    public static func gemm(
        backend: GEMMBackend, threads: Int, transposeA: Transpose, transposeB: Transpose, m: Int, n: Int, kk: Int,
        alpha: Self, a: UnsafePointer<Self>, lda: Int, b: UnsafePointer<Self>, ldb: Int,
        beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int
    ) {
        gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, kk: kk, alpha: alpha, a: a, lda: lda,
             b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }
}

/// A floating-point type the engine computes in: `Float` for training and
/// evaluation, `Double` for finite-difference checks and references.
///
/// Each requirement is a thin forwarder to the `s`/`d` routine of BLAS,
/// LAPACKE or the engine's elementwise kernels; `Float+BLAS.swift` and
/// `Double+BLAS.swift` hold the two conformances. Pointers are row-major and
/// every count is a number of elements.
public protocol BLASScalar: BinaryFloatingPoint, Real, Sendable where Self.RawSignificand: FixedWidthInteger {
    /// `C ← α·op(A)·op(B) + β·C` with `op(A)` of shape (m, kk), `op(B)` (kk, n), `C` (m, n).
    static func gemm(
        transposeA: Transpose, transposeB: Transpose,
        m: Int, n: Int, kk: Int,
        alpha: Self, a: UnsafePointer<Self>, lda: Int,
        b: UnsafePointer<Self>, ldb: Int,
        beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)

    /// The same product computed by `backend`. Double has only OpenBLAS
    /// (the default implementation ignores `backend`); Float has oneDNN too.
    static func gemm(
        backend: GEMMBackend, threads: Int,
        transposeA: Transpose, transposeB: Transpose,
        m: Int, n: Int, kk: Int,
        alpha: Self, a: UnsafePointer<Self>, lda: Int,
        b: UnsafePointer<Self>, ldb: Int,
        beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)

    /// `y ← α·op(A)·x + β·y` with `A` stored (m, n).
    static func gemv(
        transpose: Transpose, m: Int, n: Int,
        alpha: Self, a: UnsafePointer<Self>, lda: Int,
        x: UnsafePointer<Self>, beta: Self, y: UnsafeMutablePointer<Self>)

    /// Triangular solve with a lower-triangular, non-unit (n, n) or (m, m) `a`:
    /// `B ← α·op(A)⁻¹·B` (side left, A is m×m) or `B ← α·B·op(A)⁻¹`
    /// (side right, A is n×n); `B` is (m, n).
    static func triangularSolve(
        left: Bool, transposeA: Transpose, m: Int, n: Int,
        alpha: Self, a: UnsafePointer<Self>, lda: Int, b: UnsafeMutablePointer<Self>, ldb: Int)

    /// `y ← α·x + y`.
    static func axpy(count: Int, alpha: Self, x: UnsafePointer<Self>, y: UnsafeMutablePointer<Self>)

    /// In-place Cholesky factorization `A = L·Lᵀ` of a row-major (n, n)
    /// matrix, lower triangle; returns LAPACK's `info` (0 on success,
    /// `i > 0` when the leading minor of order `i` is not positive definite).
    static func choleskyLower(n: Int, a: UnsafeMutablePointer<Self>, lda: Int) -> Int

    // Elementwise kernels: y[i] = f(x[i]) for i < count; x may equal y.
    static func exp(_ x: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, count: Int)
    static func log(_ x: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, count: Int)
    static func log1p(_ x: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, count: Int)
    static func tanh(_ x: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, count: Int)
    static func sigmoid(_ x: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, count: Int)
    static func softplus(_ x: UnsafePointer<Self>, _ y: UnsafeMutablePointer<Self>, count: Int)

    /// `y[r][c] ← tanh(y[r][c] + bias[c])` in place over (rows, columns).
    static func biasTanh(_ y: UnsafeMutablePointer<Self>, bias: UnsafePointer<Self>, rows: Int, columns: Int)

    /// `y[r][c] ← scale[r] · y[r][c]` in place over (rows, columns).
    static func scaleRows(_ y: UnsafeMutablePointer<Self>, by scale: UnsafePointer<Self>, rows: Int, columns: Int)

    /// Bernoulli log-likelihood row by row, and optionally the residuals
    /// ∂log p/∂ℓ:
    ///
    ///     ℓ[r][d] = logits[r][d] + bias[d]     (no bias when nil)
    ///     logp[r] = Σ_d x[r / repeat][d]·ℓ[r][d] − softplus(ℓ[r][d]),   residual[r][d] = x[r / repeat][d] − σ(ℓ[r][d])
    ///
    /// `logits` and `residuals` are (rows, dim), `targets` is (rows / repeat, dim).
    static func bernoulliLogLikelihood(
        logits: UnsafePointer<Self>, bias: UnsafePointer<Self>?, targets: UnsafePointer<Self>,
        rows: Int, dim: Int, repeat: Int,
        logLikelihood: UnsafeMutablePointer<Self>, residuals: UnsafeMutablePointer<Self>?)

    /// One Adam update of `count` parameters, bias corrections folded into
    /// `stepSize` and `epsilon` (see `Adam`):
    ///
    ///     m ← β₁ m + (1 − β₁) g,  v ← β₂ v + (1 − β₂) g²,  θ ← θ − stepSize · m / (√v + epsilon)
    static func adamStep(
        parameters: UnsafeMutablePointer<Self>, gradients: UnsafePointer<Self>, firstMoment: UnsafeMutablePointer<Self>,
        secondMoment: UnsafeMutablePointer<Self>, count: Int, beta1: Self, beta2: Self, stepSize: Self, epsilon: Self)

    /// `adamStep` on the sum of `sources` gradient buffers, g = g₀ + g₁ + …
    /// (left to right), each buffer set to zero in the same pass.
    static func adamStepSummingAndClearing(
        parameters: UnsafeMutablePointer<Self>, gradients: UnsafePointer<UnsafeMutablePointer<Self>?>, sources: Int,
        firstMoment: UnsafeMutablePointer<Self>, secondMoment: UnsafeMutablePointer<Self>, count: Int,
        beta1: Self, beta2: Self, stepSize: Self, epsilon: Self)

    /// Fills `count` values with independent standard normals (Box–Muller on
    /// the generator's words).
    static func fillStandardNormal(_ out: UnsafeMutablePointer<Self>, count: Int, using generator: Xoshiro256)
}
