import IWAELinearAlgebra
import RealModule

/// The log importance weights of one forward pass over B examples with
/// M·K draws each (the objective's `drawsPerExample`: K samples in each of
/// M groups; M = 1 but for MIWAE and PIWAE), and what the bounds and the
/// backward read (Mathematics §2):
///
///     log w_bj = log p(x_b|z_bj) + log r(z_bj) − log q(z_bj|x_b)
///
/// A value, not model state: the draws per example live here. The views point into the model's
/// buffers and are valid until its next `encode` or `logWeights`.
package struct LogWeights<Scalar: BLASScalar> {
    /// log w (B, M·K).
    package let values: MatrixView<Scalar>
    /// log p(x|z) per draw (B·M·K).
    package let logLikelihood: UnsafeBufferPointer<Scalar>
    /// KL(q(·|x_b) ‖ r) per example, in closed form (B).
    package let klDivergence: UnsafeBufferPointer<Scalar>
    /// x (B, D), the examples.
    package let input: MatrixView<Scalar>

    /// B.
    package var examples: Int { values.rows }
    /// M·K, the draws per example (`Objective.drawsPerExample`).
    package var drawsPerExample: Int { values.columns }

    /// The per-example bound of `objective` (B) from its M·K draws per
    /// example (group m: draws mK ..< (m+1)K):
    ///
    ///     iwae:          L_K = logmeanexp_j(log w_bj)
    ///     elbo:          (1/K) Σ_j log w_bj
    ///     elbo-analytic: (1/K) Σ_j log p(x_b|z_bj) − KL_b
    ///     miwae:         (1/M) Σ_m L_K(group m)
    ///     ciwae:         β · (1/K) Σ_j log w_bj + (1 − β) · L_K
    ///     piwae:         L_{MK} over all M·K draws (the decoder's bound; the
    ///                    encoder climbs MIWAE(M, K), `encoderBoundWeights`)
    package func bound(_ objective: Objective, into result: UnsafeMutablePointer<Scalar>) {
        precondition(drawsPerExample == objective.drawsPerExample, "log weights of M·K draws per example")
        switch objective.bound {
        case .iwae, .piwae:
            iwaeBound(logWeights: values, into: result)
        case .elbo:
            elboEstimate(logWeights: values, into: result)
        case .elboAnalytic:
            let K = drawsPerExample
            for b in 0..<examples {
                var sum: Scalar = 0
                for j in 0..<K { sum += logLikelihood[b * K + j] }
                result[b] = sum / Scalar(K) - klDivergence[b]
            }
        case .miwae:
            miwaeBound(logWeights: values, groups: objective.groups, into: result)
        case .ciwae:
            ciwaeBound(logWeights: values, beta: Scalar(objective.beta!), into: result)
        }
    }

    /// The per-example bound of `objective` (B values): see `bound(_:into:)`.
    package func bound(_ objective: Objective) -> [Scalar] {
        [Scalar](unsafeUninitializedCapacity: examples) { result, initialized in
            if let base = result.baseAddress { bound(objective, into: base) }
            initialized = examples
        }
    }

    /// ω = ∂bound/∂ log w (B, M·K) of `objective` (`boundWeights`): for
    /// PIWAE the decoder's, IWAE-(M·K).
    package func boundWeights(_ objective: Objective, into result: MatrixView<Scalar>) {
        IWAECore.boundWeights(objective, logWeights: values, into: result)
    }
}

/// MIWAE(M, K) per example from its M·K log weights (B, M·K), group m the
/// columns mK ..< (m+1)K (Rainforth et al. 2018):
///
///     MIWAE = (1/M) Σ_m [logsumexp_k(log w_mk) − log K]
///
/// MIWAE(1, K) is L_K; MIWAE(M, 1) is the ELBO over M draws.
package func miwaeBound<Scalar: BLASScalar>(logWeights: MatrixView<Scalar>, groups M: Int, into result: UnsafeMutablePointer<Scalar>) {
    let K = logWeights.columns / M
    precondition(K * M == logWeights.columns, "M groups of K columns")
    for b in 0..<logWeights.rows {
        let row = logWeights.pointer + b * logWeights.rowStride
        var sum: Scalar = 0
        for m in 0..<M { sum += logMeanExp(logSum: logSumExp(row + m * K, count: K), count: K) }
        result[b] = sum / Scalar(M)
    }
}

/// CIWAE_β per example from its K log weights (B, K) (Rainforth et al. 2018):
///
///     CIWAE_β = β · (1/K) Σ_k log w_k + (1 − β) · [logsumexp_k(log w_k) − log K]
///
/// CIWAE₀ is L_K, CIWAE₁ the ELBO.
package func ciwaeBound<Scalar: BLASScalar>(logWeights: MatrixView<Scalar>, beta: Scalar, into result: UnsafeMutablePointer<Scalar>) {
    for b in 0..<logWeights.rows {
        let row = logWeights.pointer + b * logWeights.rowStride, K = logWeights.columns
        var sum: Scalar = 0
        for j in 0..<K { sum += row[j] }
        let iwae = logMeanExp(logSum: logSumExp(row, count: K), count: K)
        result[b] = beta * (sum / Scalar(K)) + (1 - beta) * iwae
    }
}

/// `log((1/K) Σ_j exp(v_j))` from `logSum` = log Σ_j exp(v_j) over K values:
/// the one place that takes `− log K`, for the IWAE bound, VIMCO's baselines
/// and the k-sample evaluation.
@inlinable
public func logMeanExp<Scalar: BLASScalar>(logSum: Scalar, count K: Int) -> Scalar {
    logSum - Scalar.log(Scalar(K))
}

/// The Monte Carlo standard error of L_k = log((1/k) Σ w), by the delta
/// method, from log Σ w and log Σ w² over the k draws (Mathematics §5):
///
///     ESS = (Σ w)² / Σ w²,   se(L_k)² ≈ Var(w) / (k E[w]²) ≈ (k / ESS − 1) / (k − 1)
///
/// NaN for k = 1 (one draw says nothing of its spread), 0 when every
/// weight is equal. Like every delta-method error it is an estimate: with
/// heavy-tailed weights it is low exactly when L_k is far below log p(x).
package func monteCarloStandardError(logSum: Double, logSumOfSquares: Double, count k: Int) -> Double {
    guard k > 1 else { return .nan }
    let inverseESS = Double.exp(logSumOfSquares - 2 * logSum)   // Σw² / (Σw)²
    return Swift.max(0, (Double(k) * inverseESS - 1) / Double(k - 1)).squareRoot()
}

/// log Σ exp(2 x_j) over `count` log weights x, in Double (the log Σ w² of
/// `monteCarloStandardError`).
package func logSumExpOfDoubled<Scalar: BLASScalar>(_ x: UnsafePointer<Scalar>, count: Int) -> Double {
    var m = -Double.infinity
    for j in 0..<count {
        let v = 2 * Double(x[j])
        if v.isNaN { return .nan }
        m = Swift.max(m, v)
    }
    if !m.isFinite { return m }
    var s = 0.0
    for j in 0..<count { s += Double.exp(2 * Double(x[j]) - m) }
    return m + Double.log(s)
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
///     ∂L_K/∂ log w_k = w̃_k = softmax_k(log w)              (IWAE; PIWAE's decoder, over all M·K)
///     ∂L_ELBO/∂ log w_k = 1/K                              (ELBO)
///     ∂MIWAE/∂ log w_mk = (1/M) softmax_k(log w_m·)         (MIWAE: within group m)
///     ∂CIWAE/∂ log w_k = β/K + (1 − β) w̃_k                  (CIWAE)
///
/// logWeights and result are (B, M·K).
package func boundWeights<Scalar: BLASScalar>(
    _ objective: Objective, logWeights: MatrixView<Scalar>, into result: MatrixView<Scalar>
) {
    switch objective.bound {
    case .iwae, .piwae: softmaxRows(logWeights, into: result)
    case .elbo, .elboAnalytic:
        let w = 1 / Scalar(logWeights.columns)
        for b in 0..<result.rows { for j in 0..<result.columns { result[b, j] = w } }
    case .miwae:
        groupBoundWeights(logWeights, groups: objective.groups, into: result)
    case .ciwae:
        softmaxRows(logWeights, into: result)
        let beta = Scalar(objective.beta!), uniform = beta / Scalar(logWeights.columns)
        for b in 0..<result.rows { for j in 0..<result.columns { result[b, j] = uniform + (1 - beta) * result[b, j] } }
    }
}

/// The encoder's ω of `objective`: MIWAE(M, K)'s for PIWAE, the bound's
/// own (`boundWeights`) for the others.
package func encoderBoundWeights<Scalar: BLASScalar>(
    _ objective: Objective, logWeights: MatrixView<Scalar>, into result: MatrixView<Scalar>
) {
    if objective.bound == .piwae { groupBoundWeights(logWeights, groups: objective.groups, into: result) }
    else { boundWeights(objective, logWeights: logWeights, into: result) }
}

/// MIWAE's ω: (1/M) softmax within each of the M groups of K columns.
private func groupBoundWeights<Scalar: BLASScalar>(_ logWeights: MatrixView<Scalar>, groups M: Int, into result: MatrixView<Scalar>) {
    let K = logWeights.columns / M
    for m in 0..<M {
        let columns = m * K..<(m + 1) * K
        softmaxRows(logWeights.columns(columns), into: result.columns(columns))
    }
    let scale = 1 / Scalar(M)
    for b in 0..<result.rows { for j in 0..<result.columns { result[b, j] *= scale } }
}

/// The effective sample size of each example's K importance weights (Kong
/// 1992), in Double from the log weights (B, K):
///
///     ESS = (Σ_j w_j)² / Σ_j w_j² = 1 / Σ_j w̃_j²,   w̃ = softmax(log w)
///
/// K when the weights are equal, 1 when one draw carries them all. Rainforth
/// et al.'s rates in K hold once ESS is close to K.
package func effectiveSampleSizes<Scalar: BLASScalar>(logWeights: MatrixView<Scalar>) -> [Double] {
    (0..<logWeights.rows).map { b in
        var top = -Double.infinity
        for j in 0..<logWeights.columns { top = Swift.max(top, Double(logWeights[b, j])) }
        guard top.isFinite else { return .nan }
        var sum = 0.0, squares = 0.0
        for j in 0..<logWeights.columns {
            let w = Double.exp(Double(logWeights[b, j]) - top)
            sum += w
            squares += w * w
        }
        return sum * sum / squares
    }
}
