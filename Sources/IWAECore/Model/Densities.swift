import IWAELinearAlgebra
import RealModule

// The log densities of MATH.md §1 and the bounds of §2, one function each.
// Shapes: B examples, K samples per example, k latent units; sample rows are
// example-major (row b·K + j is sample j of example b).

/// `(k/2) log 2π`, the normalizer of a k-dimensional Gaussian.
@inlinable
func gaussianNormalizer<Scalar: BLASScalar>(_ k: Int) -> Scalar {
    Scalar(Double(k) * 0.5 * Double.log(2 * Double.pi))
}

/// Log density of the diagonal-Gaussian encoder at its own reparameterized
/// sample `z = μ + s ⊙ ε`, per sample row:
///
///     log q(z|x) = −½‖(z − μ)/s‖² − Σᵢ log sᵢ − (k/2) log 2π,   (z − μ)/s = ε
///
/// epsilon is (B·K, k), logStd is (B, k), result is (B·K).
func diagonalGaussianLogDensity<Scalar: BLASScalar>(
    epsilon: MatrixView<Scalar>, logStd: MatrixView<Scalar>, samplesPerExample K: Int,
    into result: UnsafeMutablePointer<Scalar>
) {
    let k = epsilon.columns
    let normalizer: Scalar = gaussianNormalizer(k)
    for b in 0..<logStd.rows {
        var logDet: Scalar = 0
        for i in 0..<k { logDet += logStd[b, i] }
        for j in 0..<K {
            let r = b * K + j
            var squares: Scalar = 0
            for i in 0..<k { squares += epsilon[r, i] * epsilon[r, i] }
            result[r] = -0.5 * squares - logDet - normalizer
        }
    }
}

/// Log density of the standard-normal prior, per sample row:
///
///     log r(z) = −½‖z‖² − (k/2) log 2π
///
/// z is (rows, k), result is (rows).
func standardNormalLogDensity<Scalar: BLASScalar>(_ z: MatrixView<Scalar>, into result: UnsafeMutablePointer<Scalar>) {
    let normalizer: Scalar = gaussianNormalizer(z.columns)
    for r in 0..<z.rows {
        var squares: Scalar = 0
        for i in 0..<z.columns { squares += z[r, i] * z[r, i] }
        result[r] = -0.5 * squares - normalizer
    }
}

/// Log importance weights, per sample row:
///
///     log w = log p_θ(x|z) + log r(z) − log q_φ(z|x)
func logImportanceWeights<Scalar: BLASScalar>(
    logLikelihood: UnsafePointer<Scalar>, logPrior: UnsafePointer<Scalar>, logPosterior: UnsafePointer<Scalar>,
    count: Int, into result: UnsafeMutablePointer<Scalar>
) {
    for r in 0..<count { result[r] = logLikelihood[r] + logPrior[r] - logPosterior[r] }
}

/// The IWAE bound per example from its K log weights (B, K):
///
///     L_K = logsumexp_k(log w_k) − log K
///
/// Always by log-sum-exp; L_1 is the one-sample ELBO.
public func iwaeBound<Scalar: BLASScalar>(logWeights: MatrixView<Scalar>, into result: UnsafeMutablePointer<Scalar>) {
    logSumExpRows(logWeights, into: result)
    let logK = Scalar.log(Scalar(logWeights.columns))
    for b in 0..<logWeights.rows { result[b] -= logK }
}

/// The Monte Carlo ELBO per example from its K log weights (B, K):
///
///     L_ELBO = (1/K) Σ_k log w_k
public func elboEstimate<Scalar: BLASScalar>(logWeights: MatrixView<Scalar>, into result: UnsafeMutablePointer<Scalar>) {
    for b in 0..<logWeights.rows {
        var sum: Scalar = 0
        for j in 0..<logWeights.columns { sum += logWeights[b, j] }
        result[b] = sum / Scalar(logWeights.columns)
    }
}

/// How each log weight enters the gradient of the bound (MATH.md §3):
///
///     ∂L_K/∂ log w_k = w̃_k = softmax_k(log w)     (IWAE)
///     ∂L_ELBO/∂ log w_k = 1/K                     (ELBO)
///
/// logWeights and result are (B, K).
public func boundWeights<Scalar: BLASScalar>(
    _ objective: Objective, logWeights: MatrixView<Scalar>, into result: MatrixView<Scalar>
) {
    switch objective {
    case .iwae: softmaxRows(logWeights, into: result)
    case .elbo:
        let w = 1 / Scalar(logWeights.columns)
        for b in 0..<result.rows { for j in 0..<result.columns { result[b, j] = w } }
    }
}

/// The per-example bound of `objective` from (B, K) log weights.
public func bound<Scalar: BLASScalar>(
    _ objective: Objective, logWeights: MatrixView<Scalar>, into result: UnsafeMutablePointer<Scalar>
) {
    switch objective {
    case .iwae: iwaeBound(logWeights: logWeights, into: result)
    case .elbo: elboEstimate(logWeights: logWeights, into: result)
    }
}
