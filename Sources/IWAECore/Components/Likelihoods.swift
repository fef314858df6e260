import IWAELinearAlgebra
import RealModule

/// p_θ(x|z) with Bernoulli pixels: logits ℓ = f_θ(z) from the decoder network
/// (k → H … → D, identity output), Mathematics §1:
///
///     log p(x|z) = Σ_d x_d ℓ_d − softplus(ℓ_d),     ∂log p/∂ℓ = x − σ(ℓ)
///
/// Parameters: `decoder.i.weight`, `decoder.i.bias`. Shapes: z (B·K, k),
/// x (B, D) (row b serves draws b·K … b·K + K − 1), log p (B·K).
package final class BernoulliLikelihood<Scalar: BLASScalar> {
    package let decoder: MLP<Scalar>
    package var profiler: PhaseProfiler? { didSet { decoder.profiler = profiler; decoder.gemmPhase = .decoderGemm } }

    /// A copy of the residuals x − σ(ℓ), for a second backward (PIWAE).
    let keptResiduals = Tensor<Scalar>(shape: [0])

    package init(decoder: MLP<Scalar>) { self.decoder = decoder }

    /// log p(x|z) per row into `result`. The output bias is folded into the
    /// kernel's pass over the logits; with `keepForBackward` the same pass
    /// writes x − σ(ℓ) into the decoder's output-gradient buffer.
    package func logLikelihood(_ z: MatrixView<Scalar>, targets x: MatrixView<Scalar>, drawsPerExample K: Int,
                              keepForBackward: Bool, _ store: ParameterStore<Scalar>, into result: UnsafeMutablePointer<Scalar>) {
        let logits = decoder.forward(z, store, deferOutputBias: true, keepActivations: keepForBackward)
        let t = profiler.start()
        Scalar.bernoulliLogLikelihood(
            logits: logits.pointer, bias: decoder.outputBias(store), targets: x.pointer, rows: z.rows, dim: decoder.outputSize,
            repeat: K, logLikelihood: result, residuals: keepForBackward ? decoder.outputGradient.pointer : nil)
        profiler.stop(.elementwise, t)
    }

    /// The backward of `Σ_r g_r log p(x|z_r)`: ∂/∂ℓ = g (x − σ(ℓ)), the
    /// forward's residuals scaled row by row in place (and in a bf16 plan
    /// rounded for the decoder's products in the same pass,
    /// `MLP.outputGradientPass`), then through the decoder
    /// into its parameters and, when given, `dz` (B·K, k).
    package func backward(weights g: UnsafePointer<Scalar>, targets x: MatrixView<Scalar>, drawsPerExample K: Int,
                         _ store: ParameterStore<Scalar>, dz: MatrixView<Scalar>?) {
        let dOut = decoder.outputGradient
        let t = profiler.start()
        let pass = decoder.outputGradientPass(store)
        Scalar.scaleRows(dOut.pointer, by: g, rows: dOut.rows, columns: decoder.outputSize, rounded: pass.rounded,
                         columnSums: pass.biasGradient)
        profiler.stop(.elementwise, t)
        decoder.backward(dx: dz, store, outputGradientPassDone: true)
    }

    /// The mean of p(x|z), σ(f(z)), for rows of z (N, k) into `out` (N, D).
    package func mean(_ z: MatrixView<Scalar>, _ store: ParameterStore<Scalar>, into out: UnsafeMutablePointer<Scalar>) {
        let f = decoder.forward(z, store)
        Scalar.sigmoid(f.pointer, out, count: f.count)
    }

    package func releaseBuffers() {
        decoder.releaseBuffers()
        keptResiduals.replace(shape: [0])
    }

    package var bufferBytes: Int { decoder.bufferBytes + keptResiduals.capacity * MemoryLayout<Scalar>.stride }
}

/// p_θ(x|z) = N(f_θ(z), σ² I) (Mathematics §1), σ fixed or learned as
/// `decoder.log_variance` = log σ² (1), or with a variance per feature,
/// N(f_θ(z), diag(σ_d²)), `decoder.log_variance` = log σ_d² (D):
///
///     log p(x|z) = −Σ_d (x_d − f_d)²/(2σ_d²) − ½ Σ_d log σ_d² − (D/2) log 2π
///     ∂log p/∂f_d = (x_d − f_d)/σ_d²,   ∂log p/∂ log σ_d² = (x_d − f_d)²/(2σ_d²) − ½
///
/// (one σ²: the sums over d of the last term.)
package final class GaussianLikelihood<Scalar: BLASScalar> {
    package let decoder: MLP<Scalar>
    /// σ when fixed, its initial value when learned.
    package let sigma: Double
    let logVarianceSlot: ParameterSlot?
    /// One learned variance per feature.
    let perFeature: Bool
    /// σ_d² of the current parameters (per-feature variances only), refreshed by each pass.
    private let variances: Tensor<Scalar>
    package var profiler: PhaseProfiler? { didSet { decoder.profiler = profiler; decoder.gemmPhase = .decoderGemm } }

    /// Registers `decoder.log_variance` when σ is learned (after the decoder's layers): one, or one per feature.
    package init(decoder: MLP<Scalar>, sigma: Double, learned: Bool, perFeature: Bool = false, layout: inout ParameterLayout) {
        self.decoder = decoder
        self.sigma = sigma
        self.perFeature = learned && perFeature
        logVarianceSlot = learned ? layout.register("decoder.log_variance", shape: [self.perFeature ? decoder.outputSize : 1]) : nil
        variances = Tensor(shape: [self.perFeature ? decoder.outputSize : 0])
    }

    package func initialize(_ store: ParameterStore<Scalar>) {
        guard let logVarianceSlot else { return }
        store.value(logVarianceSlot).update(repeating: Scalar(2 * Double.log(sigma)), count: logVarianceSlot.count)
    }

    /// σ² now (the first feature's with a variance per feature).
    package func variance(_ store: ParameterStore<Scalar>) -> Scalar {
        if let logVarianceSlot { return Scalar.exp(store.value(logVarianceSlot)[0]) }
        return Scalar(sigma * sigma)
    }

    /// σ_d² now, for each feature d (D values).
    package func featureVariances(_ store: ParameterStore<Scalar>) -> [Scalar] {
        guard perFeature, let logVarianceSlot else { return [Scalar](repeating: variance(store), count: decoder.outputSize) }
        return (0..<logVarianceSlot.count).map { Scalar.exp(store.value(logVarianceSlot)[$0]) }
    }

    /// σ_d² into `variances` (a variance per feature).
    private func refreshVariances(_ store: ParameterStore<Scalar>) {
        let logVariance = store.value(logVarianceSlot!)
        for i in 0..<decoder.outputSize { variances[i] = Scalar.exp(logVariance[i]) }
    }

    /// log p(x|z) per row into `result` (`gaussianLogLikelihood`); f(z) stays
    /// in the decoder's output buffer for the backward.
    package func logLikelihood(_ z: MatrixView<Scalar>, targets x: MatrixView<Scalar>, drawsPerExample K: Int,
                              _ store: ParameterStore<Scalar>, into result: UnsafeMutablePointer<Scalar>) {
        let f = decoder.forward(z, store)
        if perFeature {
            refreshVariances(store)
            gaussianLogLikelihood(mean: f, targets: x, drawsPerExample: K, variances: variances.pointer, into: result)
        } else {
            gaussianLogLikelihood(mean: f, targets: x, drawsPerExample: K, variance: variance(store), into: result)
        }
    }

    /// The backward of `Σ_r g_r log p(x|z_r)` into the decoder, σ² and `dz`.
    package func backward(weights g: UnsafePointer<Scalar>, targets x: MatrixView<Scalar>, drawsPerExample K: Int,
                         _ store: ParameterStore<Scalar>, dz: MatrixView<Scalar>?) {
        let dOut = decoder.outputGradient, d = decoder.outputSize
        let o = decoder.output.pointer
        let t = profiler.start()
        if perFeature {
            refreshVariances(store)
            let v = variances.pointer, dLogVariance = store.gradient(logVarianceSlot!)
            for r in 0..<dOut.rows {
                let gr = g[r], xr = x.pointer + (r / K) * x.rowStride, fr = o + r * d, dr = dOut.pointer + r * d
                for i in 0..<d {
                    let diff = xr[i] - fr[i]
                    dr[i] = gr * diff / v[i]
                    dLogVariance[i] += gr * (diff * diff / (2 * v[i]) - Scalar(0.5))
                }
            }
        } else {
            let v = variance(store)
            var dLogVariance: Scalar = 0
            for r in 0..<dOut.rows {
                let gr = g[r], xr = x.pointer + (r / K) * x.rowStride, fr = o + r * d, dr = dOut.pointer + r * d
                var squares: Scalar = 0
                for i in 0..<d {
                    let diff = xr[i] - fr[i]
                    dr[i] = gr * diff / v
                    squares += diff * diff
                }
                dLogVariance += gr * (squares / (2 * v) - Scalar(d) / 2)
            }
            if let logVarianceSlot { store.gradient(logVarianceSlot)[0] += dLogVariance }
        }
        profiler.stop(.elementwise, t)
        decoder.backward(dx: dz, store)
    }

    /// The mean of p(x|z), f(z), for rows of z (N, k) into `out` (N, D).
    package func mean(_ z: MatrixView<Scalar>, _ store: ParameterStore<Scalar>, into out: UnsafeMutablePointer<Scalar>) {
        let f = decoder.forward(z, store)
        out.update(from: f.pointer, count: f.count)
    }
}

/// The model's likelihood: the one place that chooses between the two.
package enum Likelihood<Scalar: BLASScalar> {
    case bernoulli(BernoulliLikelihood<Scalar>)
    case gaussian(GaussianLikelihood<Scalar>)

    /// Registers the decoder k → hidden … → D (and σ² when learned) under "decoder".
    init(_ c: ModelConfiguration, inputDimension k: Int, layout: inout ParameterLayout) {
        let decoder = MLP<Scalar>(sizes: [k] + c.decoderHidden + [c.dataDimension],
                                  activations: Array(repeating: c.activation, count: c.decoderHidden.count) + [.identity],
                                  name: "decoder", layout: &layout)
        switch c.likelihood {
        case .bernoulli: self = .bernoulli(BernoulliLikelihood(decoder: decoder))
        case .gaussian: self = .gaussian(GaussianLikelihood(decoder: decoder, sigma: c.sigma, learned: c.learnSigma,
                                                            perFeature: c.sigmaPerFeature, layout: &layout))
        }
    }

    package var decoder: MLP<Scalar> {
        switch self {
        case .bernoulli(let p): return p.decoder
        case .gaussian(let p): return p.decoder
        }
    }

    /// The decoder's slots and σ²'s when learned.
    package var parameterSlots: [ParameterSlot] {
        var slots = decoder.layers.flatMap(\.slots)
        if case .gaussian(let p) = self, let slot = p.logVarianceSlot { slots.append(slot) }
        return slots
    }

    func initialize(_ store: ParameterStore<Scalar>, using rng: Xoshiro256) {
        decoder.initialize(store, using: rng)
        if case .gaussian(let p) = self { p.initialize(store) }
    }

    func logLikelihood(_ z: MatrixView<Scalar>, targets x: MatrixView<Scalar>, drawsPerExample K: Int,
                       keepForBackward: Bool, _ store: ParameterStore<Scalar>, into result: UnsafeMutablePointer<Scalar>) {
        switch self {
        case .bernoulli(let p): p.logLikelihood(z, targets: x, drawsPerExample: K, keepForBackward: keepForBackward, store, into: result)
        case .gaussian(let p): p.logLikelihood(z, targets: x, drawsPerExample: K, store, into: result)
        }
    }

    func backward(weights g: UnsafePointer<Scalar>, targets x: MatrixView<Scalar>, drawsPerExample K: Int,
                  _ store: ParameterStore<Scalar>, dz: MatrixView<Scalar>?) {
        switch self {
        case .bernoulli(let p): p.backward(weights: g, targets: x, drawsPerExample: K, store, dz: dz)
        case .gaussian(let p): p.backward(weights: g, targets: x, drawsPerExample: K, store, dz: dz)
        }
    }

    /// The backward of `Σ_r c_r log p(x|z_r)` into the parameters and `dz`,
    /// then of `Σ_r d_r log p(x|z_r)` into the parameters only: parameters
    /// weighted by c + d, paths by c (PIWAE). The Bernoulli likelihood's
    /// residuals, scaled in place by a backward, are kept for the second.
    func backward(weights c: UnsafePointer<Scalar>, then d: UnsafePointer<Scalar>, targets x: MatrixView<Scalar>,
                  drawsPerExample K: Int, _ store: ParameterStore<Scalar>, dz: MatrixView<Scalar>) {
        switch self {
        case .bernoulli(let p):
            let residuals = p.decoder.outputGradient, count = residuals.rows * residuals.columns
            if p.keptResiduals.capacity < count { p.keptResiduals.replace(shape: [count]) }
            p.keptResiduals.pointer.update(from: residuals.pointer, count: count)
            p.backward(weights: c, targets: x, drawsPerExample: K, store, dz: dz)
            residuals.pointer.update(from: p.keptResiduals.pointer, count: count)
            p.backward(weights: d, targets: x, drawsPerExample: K, store, dz: nil)
        case .gaussian(let p):
            p.backward(weights: c, targets: x, drawsPerExample: K, store, dz: dz)
            p.backward(weights: d, targets: x, drawsPerExample: K, store, dz: nil)
        }
    }

    func mean(_ z: MatrixView<Scalar>, _ store: ParameterStore<Scalar>, into out: UnsafeMutablePointer<Scalar>) {
        switch self {
        case .bernoulli(let p): p.mean(z, store, into: out)
        case .gaussian(let p): p.mean(z, store, into: out)
        }
    }

    var profiler: PhaseProfiler? {
        get { decoder.profiler }
        nonmutating set {
            switch self {
            case .bernoulli(let p): p.profiler = newValue
            case .gaussian(let p): p.profiler = newValue
            }
        }
    }

    func releaseBuffers() {
        switch self {
        case .bernoulli(let p): p.releaseBuffers()
        case .gaussian(let p): p.decoder.releaseBuffers()
        }
    }

    var bufferBytes: Int {
        switch self {
        case .bernoulli(let p): return p.bufferBytes
        case .gaussian(let p): return p.decoder.bufferBytes
        }
    }
}
