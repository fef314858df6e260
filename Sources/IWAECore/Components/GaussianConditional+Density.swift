import IWAELinearAlgebra
import RealModule

// The conditional's densities: log q of its own draws, its KL divergence
// from a diagonal prior, and (for the generative side of a deeper model)
// p(z_l | z_{l+1}) at the z_l that the encoder drew, diagonal covariance
// only (the IWAE paper's p(z₁|z₂)).
extension GaussianConditional {
    /// Σ_ii of example b: s_i², or Σ_{j ≤ i} L_ij².
    @inline(__always) func varianceEntry(_ b: Int, _ i: Int) -> Scalar {
        let k = dimension
        if isFull {
            var s: Scalar = 0
            for j in 0...i { let l = scale[b * k * k + i * k + j]; s += l * l }
            return s
        }
        return scale[b * k + i] * scale[b * k + i]
    }

    /// KL(N(μ_b, Σ_b) ‖ prior) per example in closed form (`klDivergence`), (B).
    package func klDivergence(to prior: DiagonalGaussianPrior<Scalar>, _ store: ParameterStore<Scalar>,
                             into result: UnsafeMutablePointer<Scalar>) {
        let k = dimension
        for b in 0..<examples {
            var trace: Scalar = 0, quadratic: Scalar = 0, logPriorDet: Scalar = 0
            for i in 0..<k {
                let (m, v) = prior.parameters(i, store)
                trace += varianceEntry(b, i) / v
                let diff = m - mean[b * k + i]
                quadratic += diff * diff / v
                logPriorDet += Scalar.log(v)
            }
            result[b] = IWAECore.klDivergence(trace: trace, quadratic: quadratic, dimension: k,
                                              logPriorDeterminant: logPriorDet, logDeterminant: 2 * halfLogDet[b])
        }
    }

    /// log q(z_j | h_b) of the draws of the last `sample`, (B·K), by
    /// `reparameterizedLogDensity` (ε is L⁻¹(z − μ) exactly).
    package func logDensityOfSamples(drawsPerExample K: Int, into result: UnsafeMutablePointer<Scalar>) {
        reparameterizedLogDensity(epsilon: epsilonView(K), halfLogDeterminant: halfLogDet.pointer,
                                  drawsPerExample: K, into: result)
    }

    /// log N(y_r; μ_r, diag(s_r²)) for one point y_r per row of the last
    /// `forward` (y is (N, k)), by `gaussianLogDensity` with uᵢ = (yᵢ − μᵢ)/sᵢ:
    ///
    ///     log p(y) = −½ Σᵢ ((yᵢ − μᵢ)/sᵢ)² − Σᵢ log sᵢ − (k/2) log 2π
    package func logDensity(at y: MatrixView<Scalar>, into result: UnsafeMutablePointer<Scalar>) {
        precondition(covariance == .diagonal && y.rows == examples && y.columns == dimension)
        let k = dimension, normalizer: Scalar = gaussianNormalizer(k)
        let t = profiler.start()
        defer { profiler.stop(.elementwise, t) }
        for r in 0..<examples {
            var squares: Scalar = 0
            for i in 0..<k {
                let u = (y[r, i] - mean[r * k + i]) / scale[r * k + i]
                squares += u * u
            }
            result[r] = gaussianLogDensity(squaredResidual: squares, halfLogDeterminant: halfLogDet[r], normalizer: normalizer)
        }
    }

    /// The backward of `Σ_r g_r log p(y_r)` (`logDensity(at:)`), u = (y − μ)/s:
    ///
    ///     ∂/∂μ = u/s,   ∂/∂ log s = u² − 1,   ∂/∂y = −u/s
    ///
    /// into the parameters, `pointGradient` (N, k, added to) and `dx`
    /// (∂/∂h, added to); either may be nil.
    package func densityBackward(at y: MatrixView<Scalar>, weights g: UnsafePointer<Scalar>,
                                pointGradient dy: UnsafeMutablePointer<Scalar>?, _ store: ParameterStore<Scalar>,
                                dx: MatrixView<Scalar>?) {
        precondition(covariance == .diagonal && y.rows == examples)
        let k = dimension
        let t = profiler.start()
        for r in 0..<examples {
            for i in 0..<k {
                let s = scale[r * k + i], u = (y[r, i] - mean[r * k + i]) / s
                meanGradient[r * k + i] = g[r] * u / s
                scaleGradient[r * k + i] = g[r] * (u * u - 1)
                dy?[r * k + i] -= g[r] * u / s
            }
        }
        profiler.stop(.elementwise, t)
        headsBackward(store, dx: dx, accumulateInput: true)
    }
}
