import IWAELinearAlgebra
import RealModule

extension VariationalAutoencoder {
    /// True for a decoder with no hidden layers and a Gaussian likelihood:
    /// f(z) = W z + b, so p(x) has a closed form.
    public var isLinearGaussian: Bool {
        configuration.likelihood == .gaussian && configuration.decoderHidden.isEmpty
    }

    /// The exact log marginal likelihood of each row of `x` (N, D) under a
    /// linear-Gaussian model (MATH.md §2, tightness):
    ///
    ///     p(x) = N(x; W λ₁ + b, W diag(λ₂) Wᵀ + σ² I)
    ///
    /// in Double, through a LAPACK Cholesky of the D×D covariance. Throws for
    /// other models.
    public func exactLogLikelihood(_ x: MatrixView<Scalar>) throws -> [Double] {
        guard isLinearGaussian else {
            throw IWAEError.invalidArgument("the exact likelihood needs a Gaussian decoder with no hidden layers")
        }
        let d = configuration.dataDimension, k = configuration.latentDimension
        let layer = decoder.layers[0]
        let w = store.value(layer.weight), b = store.value(layer.bias)
        var priorMean = [Double](repeating: 0, count: k), priorVariance = [Double](repeating: 1, count: k)
        for i in 0..<k {
            let (m, v) = priorParameters(i)
            priorMean[i] = Double(m)
            priorVariance[i] = Double(v)
        }
        let noise = Double(variance)
        var covariance = [Double](repeating: 0, count: d * d)
        var mean = [Double](repeating: 0, count: d)
        for r in 0..<d {
            mean[r] = Double(b[r])
            for i in 0..<k { mean[r] += Double(w[r * k + i]) * priorMean[i] }
            for c in 0...r {
                var s = r == c ? noise : 0
                for i in 0..<k { s += Double(w[r * k + i]) * priorVariance[i] * Double(w[c * k + i]) }
                covariance[r * d + c] = s
                covariance[c * d + r] = s
            }
        }
        let info = covariance.withUnsafeMutableBufferPointer { Double.choleskyLower(n: d, a: $0.baseAddress!, lda: d) }
        guard info == 0 else { throw IWAEError.numerical("the marginal covariance is not positive definite (potrf info \(info))") }
        var halfLogDet = 0.0
        for i in 0..<d { halfLogDet += Double.log(covariance[i * d + i]) }
        let normalizer = Double(d) / 2 * Double.log(2 * Double.pi)
        var result = [Double]()
        var u = [Double](repeating: 0, count: d)
        for n in 0..<x.rows {
            for r in 0..<d { u[r] = Double(x[n, r]) - mean[r] }
            covariance.withUnsafeBufferPointer { l in
                u.withUnsafeMutableBufferPointer {
                    Double.triangularSolve(left: true, transposeA: .none, m: d, n: 1, alpha: 1, a: l.baseAddress!, lda: d,
                                           b: $0.baseAddress!, ldb: 1)
                }
            }
            result.append(-0.5 * u.reduce(0) { $0 + $1 * $1 } - halfLogDet - normalizer)
        }
        return result
    }
}
