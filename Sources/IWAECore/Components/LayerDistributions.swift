import IWAELinearAlgebra

/// The generative side of a stochastic layer, p_θ(y | z) (Mathematics §1):
/// the likelihood p(x|z₁) of the first layer, or the conditional prior
/// p(z_l|z_{l+1}) of a layer above. Both have the same two methods, as the
/// IWAE paper's reference code's layers do: the log density at given points
/// (the forward from z included) and its backward. (An enum, not a protocol:
/// the callers stay specialized to the scalar type.)
///
/// Shapes: z (N, k_z), one row per draw; y has N / R rows, and draw r is
/// scored against y's row ⌊r / R⌋ (R = K for the likelihood, whose y is the
/// batch x; R = 1 for a conditional prior, whose y is the layer below's z).
package enum GenerativeConditional<Scalar: BLASScalar> {
    /// p(x | z₁).
    case likelihood(Likelihood<Scalar>)
    /// p(z_l | z_{l+1}), a diagonal `GaussianConditional` evaluated at the z_l the encoder drew.
    case conditionalPrior(GaussianConditional<Scalar>)

    /// log p(y_⌊r/R⌋ | z_r) per row r of z into `result` (N). With
    /// `keepForBackward`, the likelihood keeps what its backward needs.
    func logDensity(of y: MatrixView<Scalar>, repeats R: Int, given z: MatrixView<Scalar>, keepForBackward: Bool,
                    _ store: ParameterStore<Scalar>, into result: UnsafeMutablePointer<Scalar>) throws {
        switch self {
        case .likelihood(let p):
            p.logLikelihood(z, targets: y, drawsPerExample: R, keepForBackward: keepForBackward, store, into: result)
        case .conditionalPrior(let p):
            precondition(R == 1, "a conditional prior scores one point per draw")
            try p.forward(z, store)
            p.logDensity(at: y, into: result)
        }
    }

    /// The backward of `Σ_r g_r log p(y_⌊r/R⌋ | z_r)` (after `logDensity`):
    /// into the parameters, into `targetGradient` ∂/∂y (N, k_y, added; nil:
    /// y held fixed, always for the data x) and into `conditionGradient`
    /// ∂/∂z (N, k_z; nil: z held fixed), which the likelihood writes and a
    /// conditional prior adds to.
    func backward(weights g: UnsafePointer<Scalar>, of y: MatrixView<Scalar>, repeats R: Int, _ store: ParameterStore<Scalar>,
                  targetGradient: UnsafeMutablePointer<Scalar>?, conditionGradient: MatrixView<Scalar>?) {
        switch self {
        case .likelihood(let p):
            precondition(targetGradient == nil, "the data has no gradient")
            p.backward(weights: g, targets: y, drawsPerExample: R, store, dz: conditionGradient)
        case .conditionalPrior(let p):
            p.densityBackward(at: y, weights: g, pointGradient: targetGradient, store, dx: conditionGradient)
        }
    }

    /// `backward` with weights c (parameters and paths), then with weights d
    /// for the parameters only, after one `logDensity`: the parameters take
    /// c + d, the paths c (PIWAE, whose decoder and encoder weights differ).
    func backward(weights c: UnsafePointer<Scalar>, then d: UnsafePointer<Scalar>, of y: MatrixView<Scalar>, repeats R: Int,
                  _ store: ParameterStore<Scalar>, targetGradient: UnsafeMutablePointer<Scalar>?, conditionGradient: MatrixView<Scalar>?) {
        switch self {
        case .likelihood(let p):
            guard let dz = conditionGradient, targetGradient == nil else { preconditionFailure("paths into z₁, none into the data") }
            p.backward(weights: c, then: d, targets: y, drawsPerExample: R, store, dz: dz)
        case .conditionalPrior(let p):
            p.densityBackward(at: y, weights: c, pointGradient: targetGradient, store, dx: conditionGradient)
            p.densityBackward(at: y, weights: d, pointGradient: nil, store, dx: nil)
        }
    }
}

/// The two distributions of stochastic layer l of the model (l = 1 … L;
/// z₀ = x; its shape is the configuration's `StochasticLayer`): the encoder's
/// q_φ(z_l | z_{l−1}) and the generative p_θ(z_{l−1} | z_l). Each side has
/// one interface in every layer: the encoder's `forward`, `sample` (the
/// draw), `logDensityOfSamples` and `backward`; the generative side's
/// `logDensity` and `backward`. The model's log weights are a loop over its
/// layers:
///
///     log w = log r(z_L) + Σ_l [ log p(z_{l−1} | z_l) − log q(z_l | z_{l−1}) ]
package struct LayerDistributions<Scalar: BLASScalar> {
    /// q_φ(z_l | z_{l−1}).
    package let encoder: GaussianConditional<Scalar>
    /// p_θ(z_{l−1} | z_l): the likelihood for l = 1, a conditional prior above.
    package let generative: GenerativeConditional<Scalar>
}
