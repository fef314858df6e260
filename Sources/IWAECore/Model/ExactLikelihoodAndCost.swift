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
        let layer = likelihood.decoder.layers[0]
        let w = store.value(layer.weight), b = store.value(layer.bias)
        var priorMean = [Double](repeating: 0, count: k), priorVariance = [Double](repeating: 1, count: k)
        for i in 0..<k {
            let (m, v) = prior.parameters(i, store)
            priorMean[i] = Double(m)
            priorVariance[i] = Double(v)
        }
        guard case .gaussian(let gaussian) = likelihood else { preconditionFailure() }
        let noise = Double(gaussian.variance(store))
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

extension VariationalAutoencoder {
    /// Floating-point operations of the GEMMs of one training step (forward
    /// and backward) with B examples and K samples each, counted exactly from
    /// the layer shapes: 2·rows·in·out per product; the backward has two
    /// products per layer (weights and inputs) except the encoder's first,
    /// which needs no input gradient. Bias sums (GEMV) and the per-example
    /// k×k products of the full-covariance encoder are not counted.
    public func gemmFlopsPerStep(examples B: Int, samplesPerExample K: Int) -> Double {
        var flops = 0.0
        let hasTrunk = !configuration.encoderHidden.isEmpty
        for (i, layer) in encoder.layers.enumerated() {
            let product = 2 * Double(B) * Double(layer.inputSize) * Double(layer.outputSize)
            flops += product * (i == 0 && hasTrunk ? 2 : 3)
        }
        for layer in likelihood.decoder.layers {
            flops += 3 * 2 * Double(B * K) * Double(layer.inputSize) * Double(layer.outputSize)
        }
        return flops
    }

    /// Floating-point operations of the GEMMs that evaluate log weights for
    /// N examples with k samples each (forward only).
    public func gemmFlopsForLogWeights(examples N: Int, samplesPerExample k: Int) -> Double {
        let encoderFlops = encoder.layers.reduce(0.0) { $0 + 2 * Double(N) * Double($1.inputSize * $1.outputSize) }
        let decoderFlops = likelihood.decoder.layers.reduce(0.0) {
            $0 + 2 * Double(N) * Double(k) * Double($1.inputSize * $1.outputSize)
        }
        return encoderFlops + decoderFlops
    }
}
