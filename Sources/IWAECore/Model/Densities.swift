import IWAELinearAlgebra
import RealModule

// The log densities of Mathematics §1 and the bounds of §2, one function each.
// Shapes: B examples, K samples per example, k latent units; sample rows are
// example-major (row b·K + j is sample j of example b).

/// `(k/2) log 2π`, the normalizer of a k-dimensional Gaussian.
@inlinable
func gaussianNormalizer<Scalar: BLASScalar>(_ k: Int) -> Scalar {
    Scalar(Double(k) * 0.5 * Double.log(2 * Double.pi))
}

/// The log density of a k-dimensional Gaussian N(μ, Σ), Σ = L Lᵀ, at a
/// point y, from its standardized residual u = L⁻¹(y − μ) (Mathematics §1):
///
///     log N(y; μ, Σ) = −½‖u‖² − ½ log det Σ − (k/2) log 2π,   ½ log det Σ = Σᵢ log L_ii
///
/// The one place the formula is written: every Gaussian of the model (the
/// encoders' q at their own draws or at any point, the prior r, the
/// conditional priors p(z_l|z_{l+1}), the Gaussian likelihood) standardizes
/// its point its own way (ε, a triangular solve, (y − μ)/s, (x − f)/σ) and
/// passes ‖u‖², ½ log det Σ and `gaussianNormalizer(k)`.
@inline(__always)
func gaussianLogDensity<Scalar: BLASScalar>(squaredResidual: Scalar, halfLogDeterminant: Scalar, normalizer: Scalar) -> Scalar {
    -0.5 * squaredResidual - halfLogDeterminant - normalizer
}

/// `gaussianLogDensity` of each row of standardized residuals u (rows, k):
/// ‖u_r‖² by `BLASScalar.rowSumsOfSquares` (a kernel, in column order),
/// with row r's ½ log det Σ from `halfLogDeterminant(r)`; result (rows).
@inline(__always)
func gaussianLogDensities<Scalar: BLASScalar>(
    residuals u: MatrixView<Scalar>, halfLogDeterminant: (Int) -> Scalar, into result: UnsafeMutablePointer<Scalar>
) {
    let normalizer: Scalar = gaussianNormalizer(u.columns)
    Scalar.rowSumsOfSquares(u, into: result)
    for r in 0..<u.rows {
        result[r] = gaussianLogDensity(squaredResidual: result[r], halfLogDeterminant: halfLogDeterminant(r), normalizer: normalizer)
    }
}

/// Log density of the Gaussian encoder at its own reparameterized sample
/// `z = μ + L ε`, per sample row (Mathematics §1):
///
///     log q(z|x) = −½‖L⁻¹(z − μ)‖² − ½ log det Σ − (k/2) log 2π,   L⁻¹(z − μ) = ε
///
/// The triangular solve is exact here (z was built from ε), so ε is used
/// directly; `fullGaussianLogDensity` evaluates an arbitrary z by solving.
/// epsilon is (B·K, k), halfLogDeterminant (B) is Σᵢ log L_ii, result (B·K).
func reparameterizedLogDensity<Scalar: BLASScalar>(
    epsilon: MatrixView<Scalar>, halfLogDeterminant: UnsafePointer<Scalar>, drawsPerExample K: Int,
    into result: UnsafeMutablePointer<Scalar>
) {
    gaussianLogDensities(residuals: epsilon, halfLogDeterminant: { halfLogDeterminant[$0 / K] }, into: result)
}

/// Log density of N(μ, L Lᵀ) at arbitrary points, by a triangular solve:
///
///     log q(z) = −½‖L⁻¹(z − μ)‖² − Σᵢ log L_ii − (k/2) log 2π
///
/// z is (N, k), mean (k), factor L (k, k) lower triangular; result (N).
package func fullGaussianLogDensity<Scalar: BLASScalar>(
    _ z: MatrixView<Scalar>, mean: UnsafePointer<Scalar>, factor: UnsafePointer<Scalar>, into result: UnsafeMutablePointer<Scalar>
) {
    let k = z.columns, n = z.rows
    let centered = UnsafeMutablePointer<Scalar>.allocate(capacity: Swift.max(n * k, 1))
    defer { centered.deallocate() }
    for r in 0..<n { for i in 0..<k { centered[r * k + i] = z[r, i] - mean[i] } }
    // Rows uᵀ = (z − μ)ᵀ L⁻ᵀ: solve U Lᵀ = Z − μ.
    Scalar.triangularSolve(left: false, transposeA: .transposed, m: n, n: k, alpha: 1, a: factor, lda: k, b: centered, ldb: k)
    var halfLogDet: Scalar = 0
    for i in 0..<k { halfLogDet += Scalar.log(factor[i * k + i]) }
    gaussianLogDensities(residuals: MatrixView(centered, rows: n, columns: k), halfLogDeterminant: { _ in halfLogDet }, into: result)
}

/// Log density of the standard-normal prior, per sample row:
///
///     log r(z) = −½‖z‖² − (k/2) log 2π
///
/// z is (rows, k), result is (rows).
func standardNormalLogDensity<Scalar: BLASScalar>(_ z: MatrixView<Scalar>, into result: UnsafeMutablePointer<Scalar>) {
    gaussianLogDensities(residuals: z, halfLogDeterminant: { _ in 0 }, into: result)
}

/// Log density of the learned prior N(λ₁, diag(λ₂)), λ₂ = exp(ρ), per row,
/// by `gaussianLogDensity` with uᵢ = (zᵢ − λ₁ᵢ)/√λ₂ᵢ:
///
///     log r(z) = −½ Σᵢ (zᵢ − λ₁ᵢ)²/λ₂ᵢ − ½ Σᵢ log λ₂ᵢ − (k/2) log 2π
///
/// z is (rows, k), mean λ₁ and logVariance ρ are (k), result is (rows).
/// ‖u‖² is summed unit by unit over all rows in `result` (one λ per pass).
func diagonalGaussianLogDensity<Scalar: BLASScalar>(
    _ z: MatrixView<Scalar>, mean: UnsafePointer<Scalar>, logVariance: UnsafePointer<Scalar>,
    into result: UnsafeMutablePointer<Scalar>
) {
    let k = z.columns
    var logDet: Scalar = 0
    for i in 0..<k { logDet += logVariance[i] }
    result.update(repeating: 0, count: z.rows)
    for i in 0..<k {
        let m = mean[i], inverseVariance = Scalar.exp(-logVariance[i])
        for r in 0..<z.rows {
            let d = z[r, i] - m
            result[r] += d * d * inverseVariance
        }
    }
    let normalizer: Scalar = gaussianNormalizer(k)
    for r in 0..<z.rows { result[r] = gaussianLogDensity(squaredResidual: result[r], halfLogDeterminant: 0.5 * logDet, normalizer: normalizer) }
}

/// Gaussian log-likelihood of the decoder, per sample row, by
/// `gaussianLogDensity` with u = (x − f(z))/σ and ½ log det Σ = (D/2) log σ²:
///
///     log p(x|z) = −‖x − f(z)‖²/(2σ²) − (D/2) log σ² − (D/2) log 2π
///
/// mean f is (B·K, D), targets x is (B, D) (row b serves samples b·K…b·K+K−1).
func gaussianLogLikelihood<Scalar: BLASScalar>(
    mean f: MatrixView<Scalar>, targets x: MatrixView<Scalar>, drawsPerExample K: Int, variance: Scalar,
    into result: UnsafeMutablePointer<Scalar>
) {
    let d = f.columns
    let normalizer: Scalar = gaussianNormalizer(d), halfLogDeterminant = Scalar(d) / 2 * Scalar.log(variance)
    for r in 0..<f.rows {
        var squares: Scalar = 0
        for i in 0..<d {
            let diff = x[r / K, i] - f[r, i]
            squares += diff * diff
        }
        result[r] = gaussianLogDensity(squaredResidual: squares / variance, halfLogDeterminant: halfLogDeterminant, normalizer: normalizer)
    }
}

/// Gaussian log-likelihood with a variance per feature, per sample row, by
/// `gaussianLogDensity` with u_d = (x_d − f_d)/σ_d and ½ log det Σ = ½ Σ_d log σ_d²:
///
///     log p(x|z) = −Σ_d (x_d − f_d)²/(2σ_d²) − ½ Σ_d log σ_d² − (D/2) log 2π
///
/// `variances` holds σ_d² (D); shapes as `gaussianLogLikelihood(mean:targets:drawsPerExample:variance:into:)`.
func gaussianLogLikelihood<Scalar: BLASScalar>(
    mean f: MatrixView<Scalar>, targets x: MatrixView<Scalar>, drawsPerExample K: Int, variances v: UnsafePointer<Scalar>,
    into result: UnsafeMutablePointer<Scalar>
) {
    let d = f.columns
    var halfLogDeterminant: Scalar = 0
    for i in 0..<d { halfLogDeterminant += Scalar.log(v[i]) }
    halfLogDeterminant /= 2
    let normalizer: Scalar = gaussianNormalizer(d)
    for r in 0..<f.rows {
        var squares: Scalar = 0
        for i in 0..<d {
            let diff = x[r / K, i] - f[r, i]
            squares += diff * diff / v[i]
        }
        result[r] = gaussianLogDensity(squaredResidual: squares, halfLogDeterminant: halfLogDeterminant, normalizer: normalizer)
    }
}

/// Closed-form KL between the encoder N(μ, Σ) and the prior N(λ₁, diag(λ₂))
/// (Mathematics §2; the sign is +½):
///
///     KL = ½ [ tr(diag(λ₂)⁻¹ Σ) + (λ₁ − μ)ᵀ diag(λ₂)⁻¹ (λ₁ − μ) − k + Σᵢ log λ₂ᵢ − log det Σ ]
///
/// from its pieces: `trace` = Σᵢ Σ_ii/λ₂ᵢ, `quadratic` = Σᵢ (λ₁ᵢ − μᵢ)²/λ₂ᵢ,
/// `logPriorDeterminant` = Σᵢ log λ₂ᵢ, `logDeterminant` = log det Σ.
public func klDivergence<Scalar: BLASScalar>(
    trace: Scalar, quadratic: Scalar, dimension k: Int, logPriorDeterminant: Scalar, logDeterminant: Scalar
) -> Scalar {
    0.5 * (trace + quadratic - Scalar(k) + logPriorDeterminant - logDeterminant)
}
