import IWAELinearAlgebra
import RealModule

extension VariationalAutoencoder {
    /// Whether AIS can start from q(z|x): its density and gradient at any z
    /// are computed for a diagonal or full q(z₁|x) and diagonal encoders above.
    package var encoderStartIsSupported: Bool { configuration.encoder == .diagonal || configuration.upperLayers.isEmpty }

    /// Draws the rows of `state` from q(z|x), `chainsPerExample` per row of
    /// x: z₁ = μ(x) + L(x) ε, then z_{l+1} from q(z_{l+1}|z_l). q(z₁|x) stays
    /// in the encoder's buffers for `moveStartToEncoder`.
    package func drawFromEncoder(_ state: LatentState<Scalar>, data x: MatrixView<Scalar>, chainsPerExample M: Int,
                                 noise: Noise) throws {
        try encoder.forward(x, store)
        state.z[0].pointer.update(from: encoder.sample(drawsPerExample: M, using: noise).pointer, count: state.rows * state.dimensions[0])
        for l in state.dimensions.indices.dropFirst() {
            try encoders[l].forward(state.latent(l - 1), store)
            state.z[l].pointer.update(from: encoders[l].sample(drawsPerExample: 1, using: noise).pointer,
                                      count: state.rows * state.dimensions[l])
        }
    }

    /// After `jointDensity` (start: log p(z), ratio: log p(x|z₁)), makes the
    /// state's parts those of the encoder start (Mathematics §9):
    ///
    ///     log p₀ = log q(z|x) = log q(z₁|x) + Σ_l log q(z_{l+1}|z_l),   ℓ = log p(z) + log p(x|z₁) − log q(z|x)
    ///
    /// with ∂ log q(z₁|x)/∂z₁ = −Σ⁻¹(z₁ − μ) (−(z₁ − μ)/s² when diagonal, by
    /// two triangular solves when full) and the upper encoders' density
    /// backward. `qGradient` holds one (R, k_l) buffer per layer, `logQ` and
    /// `scratch` R values.
    package func moveStartToEncoder(_ state: LatentState<Scalar>, chainsPerExample M: Int, qGradient: [Tensor<Scalar>],
                                    logQ: UnsafeMutablePointer<Scalar>, scratch: UnsafeMutablePointer<Scalar>,
                                    ones: UnsafeMutablePointer<Scalar>) throws {
        let R = state.rows, k = state.dimensions[0], normalizer: Scalar = gaussianNormalizer(k)
        for g in qGradient { g.zero() }
        let z = state.z[0].pointer, g = qGradient[0].pointer, mu = encoder.mean.pointer, s = encoder.scale.pointer
        var u = [Scalar](repeating: 0, count: k)
        for r in 0..<R {
            let b = r / M
            var squares: Scalar = 0
            if configuration.encoder == .diagonal {
                for i in 0..<k {
                    let ui = (z[r * k + i] - mu[b * k + i]) / s[b * k + i]
                    squares += ui * ui
                    g[r * k + i] = -ui / s[b * k + i]
                }
            } else {
                // L u = z − μ (forward), then Lᵀ v = u (backward): ∂/∂z = −v.
                let L = s + b * k * k
                for i in 0..<k {
                    var sum = z[r * k + i] - mu[b * k + i]
                    for j in 0..<i { sum -= L[i * k + j] * u[j] }
                    u[i] = sum / L[i * k + i]
                    squares += u[i] * u[i]
                }
                for i in stride(from: k - 1, through: 0, by: -1) {
                    var sum = u[i]
                    for j in (i + 1)..<Swift.max(i + 1, k) { sum -= L[j * k + i] * (-g[r * k + j]) }
                    g[r * k + i] = -(sum / L[i * k + i])
                }
            }
            logQ[r] = gaussianLogDensity(squaredResidual: squares, halfLogDeterminant: encoder.halfLogDet[b], normalizer: normalizer)
        }
        for l in state.dimensions.indices.dropFirst() {
            let q = encoders[l]
            try q.forward(state.latent(l - 1), store)
            q.logDensity(at: state.latent(l), into: scratch)
            for r in 0..<R { logQ[r] += scratch[r] }
            q.densityBackward(at: state.latent(l), weights: ones, pointGradient: qGradient[l].pointer, store,
                              dx: MatrixView(qGradient[l - 1].pointer, rows: R, columns: state.dimensions[l - 1]))
        }
        for r in 0..<R {
            state.logRatio[r] += state.logStart[r] - logQ[r]
            state.logStart[r] = logQ[r]
        }
        for (l, k) in state.dimensions.enumerated() {
            let start = state.startGradient[l].pointer, ratio = state.ratioGradient[l].pointer, q = qGradient[l].pointer
            for j in 0..<R * k {
                ratio[j] += start[j] - q[j]
                start[j] = q[j]
            }
        }
    }
}
