import IWAELinearAlgebra
import RealModule

/// How the encoder's gradient is estimated (Mathematics §3). θ and λ always take
/// the normalized-weight gradient.
public enum GradientEstimator: String, Codable, Sendable, CaseIterable {
    /// Pathwise (reparameterization): total derivative through z = μ + L ε.
    case reparam
    /// Score function (log-derivative trick, REINFORCE), z held fixed.
    case score
    /// Sticking the landing (Roeder et al. 2017): the pathwise gradient
    /// without q's direct dependence on φ; biased for K > 1 with the IWAE bound.
    case stl
    /// Doubly reparameterized (Tucker et al. 2018), for the IWAE bound:
    /// Σ_k w̃_k² ∂log w_k/∂z_k ∂z_k/∂φ.
    case dreg
}

/// The control variate of the score-function estimator.
public enum ScoreBaseline: String, Codable, Sendable, CaseIterable {
    case none
    /// Leave-one-out (Mnih & Rezende 2016): log w_k replaced by the mean of the others.
    case vimco
}

/// The score-function coefficients a_bj = −scale · c_bj of ∇_φ log q(z_bj|x_b)
/// (Mathematics §3, z fixed), into `result` (B·MK). Draw j's coefficient
/// takes only the part of the bound that depends on z_j:
///
///     IWAE:  c_j = (L_K − b_j) − ω_j                 ELBO: c_j = (log w_j − b_j)/K − ω_j
///     MIWAE (and PIWAE's encoder), j in group m:     c_j = (L_K(group m) − b_j)/M − ω_j
///     CIWAE: c_j = β · log w_j/K + (1 − β) · L_K − ω_j
///
/// b_j = 0, or (the objective's baseline) VIMCO's leave-one-out: L_K of the
/// group with log w_j replaced by the mean of the others (IWAE, MIWAE), the
/// mean of the other log w (ELBO). ω (B, MK) are the encoder's bound weights.
/// The rows of `logWeights` are restored after use.
func scoreCoefficients<Scalar: BLASScalar>(
    _ logWeights: LogWeights<Scalar>, boundWeights omega: MatrixView<Scalar>, scale: Scalar, objective: Objective,
    into a: UnsafeMutablePointer<Scalar>
) {
    let draws = logWeights.drawsPerExample, lw = logWeights.values, baseline = objective.baseline
    let M = objective.bound == .elbo || objective.bound == .elboAnalytic || objective.bound == .ciwae ? 1 : objective.groups
    let K = draws / M
    for b in 0..<logWeights.examples {
        for m in 0..<M {
            let row = lw.pointer + b * lw.rowStride + m * K
            var sum: Scalar = 0
            for j in 0..<K { sum += row[j] }
            // L_K of the group, for the bounds whose coefficients read it (not the ELBO's).
            let groupBound = objective.bound == .elbo || objective.bound == .elboAnalytic
                ? 0 : logMeanExp(logSum: logSumExp(row, count: K), count: K)
            for j in 0..<K {
                var signal: Scalar
                switch objective.bound {
                case .iwae, .miwae, .piwae:
                    signal = groupBound
                    if baseline == .vimco {
                        let saved = row[j]
                        row[j] = (sum - row[j]) / Scalar(K - 1)
                        signal -= logMeanExp(logSum: logSumExp(row, count: K), count: K)
                        row[j] = saved
                    }
                    signal /= Scalar(M)
                case .elbo, .elboAnalytic:
                    signal = row[j]
                    if baseline == .vimco { signal -= (sum - row[j]) / Scalar(K - 1) }
                    signal /= Scalar(K)
                case .ciwae:
                    let beta = Scalar(objective.beta!)
                    signal = beta * (row[j] / Scalar(K)) + (1 - beta) * groupBound
                }
                a[b * draws + m * K + j] = -scale * (signal - omega[b, m * K + j])
            }
        }
    }
}
