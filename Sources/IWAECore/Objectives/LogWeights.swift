import IWAELinearAlgebra
import RealModule

/// The log importance weights of one forward pass over B examples with K
/// draws each, and what the bounds and the backward read (Mathematics §2):
///
///     log w_bj = log p(x_b|z_bj) + log r(z_bj) − log q(z_bj|x_b)
///
/// A value, not model state: K lives here. The views point into the model's
/// buffers and are valid until its next `encode` or `logWeights`.
public struct LogWeights<Scalar: BLASScalar> {
    /// log w (B, K).
    public let values: MatrixView<Scalar>
    /// log p(x|z) per draw (B·K).
    package let logLikelihood: UnsafeBufferPointer<Scalar>
    /// KL(q(·|x_b) ‖ r) per example, in closed form (B).
    package let klDivergence: UnsafeBufferPointer<Scalar>
    /// x (B, D), the examples.
    public let input: MatrixView<Scalar>

    /// B.
    public var examples: Int { values.rows }
    /// K.
    public var samplesPerExample: Int { values.columns }

    /// The per-example bound of kind `bound` (B):
    ///
    ///     iwae:          L_K = logmeanexp_j(log w_bj)
    ///     elbo:          (1/K) Σ_j log w_bj
    ///     elbo-analytic: (1/K) Σ_j log p(x_b|z_bj) − KL_b
    package func bound(_ bound: BoundKind, into result: UnsafeMutablePointer<Scalar>) {
        switch bound {
        case .iwae:
            iwaeBound(logWeights: values, into: result)
        case .elbo:
            elboEstimate(logWeights: values, into: result)
        case .elboAnalytic:
            let K = samplesPerExample
            for b in 0..<examples {
                var sum: Scalar = 0
                for j in 0..<K { sum += logLikelihood[b * K + j] }
                result[b] = sum / Scalar(K) - klDivergence[b]
            }
        }
    }

    /// The per-example bound of kind `bound` (B values): see `bound(_:into:)`.
    public func bound(_ bound: BoundKind) -> [Scalar] {
        [Scalar](unsafeUninitializedCapacity: examples) { result, initialized in
            if let base = result.baseAddress { self.bound(bound, into: base) }
            initialized = examples
        }
    }

    /// ω = ∂bound/∂ log w (B, K) of kind `bound` (`boundWeights`).
    public func boundWeights(_ bound: BoundKind, into result: MatrixView<Scalar>) {
        IWAECore.boundWeights(bound, logWeights: values, into: result)
    }
}

/// `log((1/K) Σ_j exp(v_j))` from `logSum` = log Σ_j exp(v_j) over K values:
/// the one place that takes `− log K`, for the IWAE bound, VIMCO's baselines
/// and the k-sample evaluation.
@inlinable
public func logMeanExp<Scalar: BLASScalar>(logSum: Scalar, count K: Int) -> Scalar {
    logSum - Scalar.log(Scalar(K))
}

/// The IWAE bound per example from its K log weights (B, K):
///
///     L_K = logsumexp_k(log w_k) − log K
///
/// Always by log-sum-exp; L_1 is the one-sample ELBO.
package func iwaeBound<Scalar: BLASScalar>(logWeights: MatrixView<Scalar>, into result: UnsafeMutablePointer<Scalar>) {
    logSumExpRows(logWeights, into: result)
    for b in 0..<logWeights.rows { result[b] = logMeanExp(logSum: result[b], count: logWeights.columns) }
}

/// The Monte Carlo ELBO per example from its K log weights (B, K):
///
///     L_ELBO = (1/K) Σ_k log w_k
package func elboEstimate<Scalar: BLASScalar>(logWeights: MatrixView<Scalar>, into result: UnsafeMutablePointer<Scalar>) {
    for b in 0..<logWeights.rows {
        var sum: Scalar = 0
        for j in 0..<logWeights.columns { sum += logWeights[b, j] }
        result[b] = sum / Scalar(logWeights.columns)
    }
}

/// How each log weight enters the gradient of the bound (Mathematics §3):
///
///     ∂L_K/∂ log w_k = w̃_k = softmax_k(log w)     (IWAE)
///     ∂L_ELBO/∂ log w_k = 1/K                     (ELBO)
///
/// logWeights and result are (B, K).
public func boundWeights<Scalar: BLASScalar>(
    _ bound: BoundKind, logWeights: MatrixView<Scalar>, into result: MatrixView<Scalar>
) {
    switch bound {
    case .iwae: softmaxRows(logWeights, into: result)
    case .elbo, .elboAnalytic:
        let w = 1 / Scalar(logWeights.columns)
        for b in 0..<result.rows { for j in 0..<result.columns { result[b, j] = w } }
    }
}

/// Log importance weights, per draw:
///
///     log w = log p_θ(x|z) + log r(z) − log q_φ(z|x)
func logImportanceWeights<Scalar: BLASScalar>(
    logLikelihood: UnsafePointer<Scalar>, logPrior: UnsafePointer<Scalar>, logPosterior: UnsafePointer<Scalar>,
    count: Int, into result: UnsafeMutablePointer<Scalar>
) {
    for r in 0..<count { result[r] = logLikelihood[r] + logPrior[r] - logPosterior[r] }
}
