import IWAELinearAlgebra
import RealModule

// The conditional as a density at given points, for the generative side of a
// deeper model: p(z_l | z_{l+1}) evaluated at the z_l that the encoder drew.
// Diagonal covariance only (the IWAE paper's p(z₁|z₂)).
extension GaussianConditional {
    /// log N(y_r; μ_r, diag(s_r²)) for one point y_r per row of the last
    /// `forward` (y is (N, k)), by `diagonalGaussianLogDensity`'s formula:
    ///
    ///     log p(y) = −½ Σᵢ ((yᵢ − μᵢ)/sᵢ)² − Σᵢ log sᵢ − (k/2) log 2π
    package func logDensity(at y: MatrixView<Scalar>, into result: UnsafeMutablePointer<Scalar>) {
        precondition(covariance == .diagonal && y.rows == examples && y.columns == dimension)
        let k = dimension, normalizer: Scalar = gaussianNormalizer(k)
        for r in 0..<examples {
            var squares: Scalar = 0
            for i in 0..<k {
                let u = (y[r, i] - mean[r * k + i]) / scale[r * k + i]
                squares += u * u
            }
            result[r] = -0.5 * squares - halfLogDet[r] - normalizer
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
