import IWAELinearAlgebra
import RealModule

extension VariationalAutoencoder {
    /// True when p(x) has a closed form: a Gaussian likelihood whose decoder
    /// has no hidden layers (f(z₁) = V z₁ + c) and, above z₁, only linear
    /// conditional priors with a constant variance (z_l = W z_{l+1} + b + noise).
    public var isLinearGaussian: Bool {
        configuration.likelihood == .gaussian && configuration.decoderHidden.isEmpty
            && configuration.upperLayers.allSatisfy { $0.decoderHidden.isEmpty }
    }

    /// The exact log marginal likelihood of each row of `x` (N, D) under a
    /// linear-Gaussian model (Mathematics §2, tightness): the top prior
    /// N(λ₁, diag λ₂) pushed down the chain, each linear layer mapping
    ///
    ///     (m, C) → (W m + b, W C Wᵀ + diag(s²)),   and at the bottom   p(x) = N(x; V m + c, V C Vᵀ + σ² I)
    ///
    /// in Double, through a LAPACK Cholesky of the D×D covariance. Throws for
    /// other models.
    public func exactLogLikelihood(_ x: MatrixView<Scalar>) throws -> [Double] {
        guard isLinearGaussian, case .gaussian(let gaussian) = likelihood else {
            throw IWAEError.invalidArgument("the exact likelihood needs a Gaussian decoder and conditional priors with no hidden layers")
        }
        let top = configuration.topDimension
        var mean = (0..<top).map { Double(prior.parameters($0, store).mean) }
        var covariance = [Double](repeating: 0, count: top * top)
        for i in 0..<top { covariance[i * top + i] = Double(prior.parameters(i, store).variance) }
        for conditional in conditionalPriors.reversed() {
            let layer = conditional.meanHead, logScale = store.value(conditional.constantLogScale!)
            let noise = (0..<conditional.dimension).map { Double.exp(2 * Double(logScale[$0])) }
            (mean, covariance) = pushForward(mean, covariance, weight: store.value(layer.weight), bias: store.value(layer.bias),
                                             outputs: conditional.dimension, noise: noise)
        }
        let d = configuration.dataDimension, layer = likelihood.decoder.layers[0]
        (mean, covariance) = pushForward(mean, covariance, weight: store.value(layer.weight), bias: store.value(layer.bias),
                                         outputs: d, noise: gaussian.featureVariances(store).map { Double($0) })
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

    /// (W m + b, W C Wᵀ + diag(noise)) for W (outputs, k) row-major, in Double.
    private func pushForward(_ m: [Double], _ c: [Double], weight w: UnsafePointer<Scalar>, bias b: UnsafePointer<Scalar>,
                             outputs n: Int, noise: [Double]) -> (mean: [Double], covariance: [Double]) {
        let k = m.count
        var mean = [Double](repeating: 0, count: n), covariance = [Double](repeating: 0, count: n * n)
        for r in 0..<n {
            mean[r] = Double(b[r])
            for i in 0..<k { mean[r] += Double(w[r * k + i]) * m[i] }
            for col in 0...r {
                var s = r == col ? noise[r] : 0
                for i in 0..<k { for j in 0..<k where c[i * k + j] != 0 { s += Double(w[r * k + i]) * c[i * k + j] * Double(w[col * k + j]) } }
                covariance[r * n + col] = s
                covariance[col * n + r] = s
            }
        }
        return (mean, covariance)
    }
}

extension VariationalAutoencoder {
    /// Floating-point operations of the GEMMs of one training step (forward
    /// and backward) with B examples and K samples each, counted exactly from
    /// the layer shapes: 2·rows·in·out per product; the backward has two
    /// products per layer (weights and inputs) except the encoder's first,
    /// which needs no input gradient. The networks above z₁ (q(z_{l+1}|z_l)
    /// and p(z_l|z_{l+1})) run on B·K rows with all three products. Bias sums
    /// (GEMV) and the per-example k×k products of a full covariance are not counted.
    public func gemmFlopsPerStep(examples B: Int, drawsPerExample K: Int) -> Double {
        var flops = 0.0
        let hasTrunk = !configuration.encoderHidden.isEmpty
        for (i, layer) in encoder.layers.enumerated() {
            let product = 2 * Double(B) * Double(layer.inputSize) * Double(layer.outputSize)
            flops += product * (i == 0 && hasTrunk ? 2 : 3)
        }
        let perDraw = likelihood.decoder.layers + (encoders.dropFirst() + conditionalPriors).flatMap(\.layers)
        for layer in perDraw {
            flops += 3 * 2 * Double(B * K) * Double(layer.inputSize) * Double(layer.outputSize)
        }
        return flops
    }

    /// Floating-point operations of the GEMMs that evaluate log weights for
    /// N examples with k samples each (forward only).
    public func gemmFlopsForLogWeights(examples N: Int, drawsPerExample k: Int) -> Double {
        let encoderFlops = encoder.layers.reduce(0.0) { $0 + 2 * Double(N) * Double($1.inputSize * $1.outputSize) }
        let perDraw = likelihood.decoder.layers + (encoders.dropFirst() + conditionalPriors).flatMap(\.layers)
        let decoderFlops = perDraw.reduce(0.0) {
            $0 + 2 * Double(N) * Double(k) * Double($1.inputSize * $1.outputSize)
        }
        return encoderFlops + decoderFlops
    }
}
