import IWAELinearAlgebra
import RealModule

/// The model of MATH.md §1 and its pathwise gradient (§3): a Gaussian encoder
/// (diagonal, or full covariance through a batched Cholesky), a standard or
/// learned diagonal prior, a Bernoulli or Gaussian decoder.
///
/// Parameters (one flat buffer, names as in the checkpoint):
///
///     encoder.i.weight (H_{i+1}, H_i), encoder.i.bias    trunk D → H … (activation)
///     encoder.mean.weight (k, H), .bias (k)               μ_φ(x)
///     encoder.log_std.weight (k, H), .bias (k)            log s_φ(x)             (diagonal)
///     encoder.cov_factor.weight (k·k, H), .bias (k·k)     A_φ(x), row-major k×k   (full)
///     encoder.cov_diag.weight (k, H), .bias (k)           d_φ(x)                  (full)
///     prior.mean (k), prior.log_variance (k)              λ₁, ρ = log λ₂          (learned prior)
///     decoder.i.weight, decoder.i.bias                    k → H … → D (activation…, identity)
///     decoder.log_variance (1)                            log σ²                  (learned σ)
///
/// A step runs `encode` (B, D) → μ, L (B, k[, k]); `sample` ε, z (B·K, k);
/// `computeLogWeights` (B, K); then `backward`. Buffers are sized by
/// `reserve` and reused; nothing is allocated per step.
public final class VariationalAutoencoder<Scalar: BLASScalar> {
    public let configuration: ModelConfiguration
    public let store: ParameterStore<Scalar>
    let encoderTrunk: MLP<Scalar>?
    let meanHead: Linear
    /// log s (diagonal) or A (full).
    let scaleHead: Linear
    /// d (full only).
    let diagonalHead: Linear?
    let decoder: MLP<Scalar>
    let priorMean: ParameterSlot?
    let priorLogVariance: ParameterSlot?
    let decoderLogVariance: ParameterSlot?

    public private(set) var examples = 0
    public private(set) var samplesPerExample = 0
    private var exampleCapacity = 0
    private var sampleCapacity = 0

    // Encoder outputs, (B, k) unless noted.
    let mean = Tensor<Scalar>(shape: [0])
    /// log s (diagonal) or A (B, k·k) (full).
    let scaleRaw = Tensor<Scalar>(shape: [0])
    /// d before softplus (full).
    let diagonalRaw = Tensor<Scalar>(shape: [0])
    /// softplus(d), the diagonal added to A Aᵀ (full).
    let covarianceDiagonal = Tensor<Scalar>(shape: [0])
    /// s (diagonal) or L (B, k, k), lower triangular with zero upper part (full).
    let scale = Tensor<Scalar>(shape: [0])
    /// ½ log det Σ per example (B).
    let halfLogDet = Tensor<Scalar>(shape: [0])
    /// KL(q ‖ r) per example (B).
    let klDivergences = Tensor<Scalar>(shape: [0])
    // Samples, (B·K, k).
    let epsilon = Tensor<Scalar>(shape: [0])
    let z = Tensor<Scalar>(shape: [0])
    // Per sample (B·K).
    let logLikelihood = Tensor<Scalar>(shape: [0])
    let logPrior = Tensor<Scalar>(shape: [0])
    let logPosterior = Tensor<Scalar>(shape: [0])
    // (B, K)
    let logWeightsBuffer = Tensor<Scalar>(shape: [0])
    let weights = Tensor<Scalar>(shape: [0])
    // Backward.
    let probabilities = Tensor<Scalar>(shape: [0])    // σ(ℓ) of a Bernoulli decoder, (B·K, D)
    let latentGradient = Tensor<Scalar>(shape: [0])   // (B·K, k)
    let whitened = Tensor<Scalar>(shape: [0])         // v = L⁻ᵀ ε, (B·K, k)
    let scoreBuffer = Tensor<Scalar>(shape: [0])      // score-function coefficients (B·K)
    let lossWeights = Tensor<Scalar>(shape: [0])      // g = ∂loss/∂ log w (B·K)
    let meanGradient = Tensor<Scalar>(shape: [0])     // (B, k)
    let scaleGradient = Tensor<Scalar>(shape: [0])    // log s̄ (B, k) or L̄ (B, k, k)
    let covarianceGradient = Tensor<Scalar>(shape: [0]) // Σ̄ (B, k, k)
    let scaleRawGradient = Tensor<Scalar>(shape: [0]) // Ā (B, k·k)
    let diagonalRawGradient = Tensor<Scalar>(shape: [0]) // d̄ (B, k)
    let choleskyWork = Tensor<Scalar>(shape: [0])     // (k, k)
    private let boundsBuffer = Tensor<Scalar>(shape: [0])
    private var input: MatrixView<Scalar>?

    /// Optional timing of the step's phases (GEMM, elementwise, sampling).
    public var profiler: PhaseProfiler? {
        didSet {
            encoderTrunk?.profiler = profiler
            decoder.profiler = profiler
            decoder.gemmPhase = .decoderGemm
        }
    }

    /// Builds the model and initializes it from `seed`: Glorot weights, zero
    /// biases, the prior at N(0, I), σ at `configuration.sigma`.
    public convenience init(_ configuration: ModelConfiguration, seed: UInt64 = 0) {
        self.init(configuration, sharingValuesOf: nil)
        let rng = Xoshiro256(seed: seed)
        encoderTrunk?.initialize(store, using: rng)
        meanHead.initialize(store, using: rng)
        scaleHead.initialize(store, using: rng)
        diagonalHead?.initialize(store, using: rng)
        decoder.initialize(store, using: rng)
        if let slot = decoderLogVariance { store.value(slot)[0] = Scalar(2 * Double.log(configuration.sigma)) }
        if configuration.encoder == .full {
            // Start Σ near the diagonal model's: small A, softplus(d) ≈ 1.
            let a = store.value(scaleHead.weight)
            for i in 0..<scaleHead.weight.count { a[i] *= 0.1 }
            let d = store.value(diagonalHead!.bias)
            for i in 0..<configuration.latentDimension { d[i] = Scalar(Double.log(Double.exp(1) - 1)) }
        }
    }

    /// A model with the same parameters (shared memory, not a copy) and its
    /// own gradients and buffers, for a worker of a data-parallel step.
    public func replica() -> VariationalAutoencoder {
        VariationalAutoencoder(configuration, sharingValuesOf: store)
    }

    private init(_ configuration: ModelConfiguration, sharingValuesOf shared: ParameterStore<Scalar>?) {
        self.configuration = configuration
        let c = configuration, k = c.latentDimension
        var layout = ParameterLayout()
        encoderTrunk = c.encoderHidden.isEmpty ? nil : MLP(
            sizes: [c.dataDimension] + c.encoderHidden,
            activations: Array(repeating: c.activation, count: c.encoderHidden.count), name: "encoder", layout: &layout)
        let trunkOut = c.encoderHidden.last ?? c.dataDimension
        meanHead = Linear(trunkOut, k, name: "encoder.mean", layout: &layout)
        switch c.encoder {
        case .diagonal:
            scaleHead = Linear(trunkOut, k, name: "encoder.log_std", layout: &layout)
            diagonalHead = nil
        case .full:
            scaleHead = Linear(trunkOut, k * k, name: "encoder.cov_factor", layout: &layout)
            diagonalHead = Linear(trunkOut, k, name: "encoder.cov_diag", layout: &layout)
        }
        if c.prior == .learned {
            priorMean = layout.register("prior.mean", shape: [k])
            priorLogVariance = layout.register("prior.log_variance", shape: [k])
        } else {
            priorMean = nil
            priorLogVariance = nil
        }
        decoder = MLP(sizes: [k] + c.decoderHidden + [c.dataDimension],
                      activations: Array(repeating: c.activation, count: c.decoderHidden.count) + [.identity],
                      name: "decoder", layout: &layout)
        decoderLogVariance = c.likelihood == .gaussian && c.learnSigma ? layout.register("decoder.log_variance", shape: [1]) : nil
        store = shared.map { ParameterStore(sharingValuesOf: $0) } ?? ParameterStore(layout: layout)
    }

    /// Sets the decoder's output bias to the logit of the training-set mean
    /// (clipped to [10⁻³, 1 − 10⁻³]) for a Bernoulli decoder, or to the mean
    /// itself for a Gaussian one, so the untrained model predicts the average.
    public func initializeOutputBias(dataMean: [Scalar]) {
        precondition(dataMean.count == configuration.dataDimension)
        let bias = store.value(decoder.layers.last!.bias)
        for d in 0..<dataMean.count {
            if configuration.likelihood == .gaussian { bias[d] = dataMean[d]; continue }
            let p = Swift.min(Swift.max(dataMean[d], 1e-3), 1 - 1e-3)
            bias[d] = Scalar.log(p) - Scalar.log(onePlus: -p)
        }
    }

    private var isFull: Bool { configuration.encoder == .full }
    private var scaleWidth: Int { isFull ? configuration.latentDimension * configuration.latentDimension : configuration.latentDimension }

    /// Sizes every buffer for `examples` examples with `samplesPerExample`
    /// samples each; allocates only when a size grows.
    public func reserve(examples b: Int, samplesPerExample kSamples: Int) {
        let k = configuration.latentDimension, d = configuration.dataDimension
        if b > exampleCapacity {
            exampleCapacity = b
            for t in [mean, meanGradient, diagonalRaw, diagonalRawGradient, covarianceDiagonal] { t.replace(shape: [b, k]) }
            for t in [scaleRaw, scale, scaleGradient, scaleRawGradient] { t.replace(shape: [b, scaleWidth]) }
            covarianceGradient.replace(shape: [isFull ? b : 0, k, k])
            choleskyWork.replace(shape: [k, k])
            for t in [halfLogDet, klDivergences, boundsBuffer] { t.replace(shape: [b]) }
            encoderTrunk?.reserve(rows: b)
        }
        if b * kSamples > sampleCapacity {
            let rows = b * kSamples
            sampleCapacity = rows
            for t in [epsilon, z, latentGradient, whitened] { t.replace(shape: [rows, k]) }
            for t in [logLikelihood, logPrior, logPosterior, logWeightsBuffer, weights, scoreBuffer, lossWeights] { t.replace(shape: [rows]) }
            probabilities.replace(shape: [configuration.likelihood == .bernoulli ? rows : 0, d])
            decoder.reserve(rows: rows)
        }
    }

    // MARK: Forward

    /// Encoder forward: x (B, D) → μ and the scale (s, or Σ = A Aᵀ +
    /// diag(softplus(d)) factored as L Lᵀ), ½ log det Σ and KL(q ‖ r) per
    /// example. Keeps x for the backward.
    ///
    /// Throws when a covariance is not positive definite, naming the example.
    public func encode(_ x: MatrixView<Scalar>) throws {
        precondition(x.columns == configuration.dataDimension)
        reserve(examples: x.rows, samplesPerExample: Swift.max(samplesPerExample, 1))
        examples = x.rows
        input = x
        let h = encoderTrunk.map { $0.forward(x, store) } ?? x
        var t = profiler.start()
        meanHead.forward(view(mean, k), h, store)
        scaleHead.forward(view(scaleRaw, scaleWidth), h, store)
        if let diagonalHead { diagonalHead.forward(view(diagonalRaw, configuration.latentDimension), h, store) }
        profiler.stop(.gemm, t)
        t = profiler.start()
        defer { profiler.stop(.elementwise, t) }
        let k = configuration.latentDimension
        if isFull {
            let tc = profiler.start()
            defer { profiler.stop(.covariance, tc) }
            try factorCovariances()
        } else {
            Scalar.exp(scaleRaw.pointer, scale.pointer, count: examples * k)
            for b in 0..<examples {
                var sum: Scalar = 0
                for i in 0..<k { sum += scaleRaw[b * k + i] }
                halfLogDet[b] = sum
            }
        }
        computeKLDivergences()
    }

    private var k: Int { configuration.latentDimension }

    /// Σ_b = A_b A_bᵀ + diag(softplus(d_b)), then L_b by LAPACK potrf, for every b.
    private func factorCovariances() throws {
        let k = configuration.latentDimension, kk = k * k
        Scalar.softplus(diagonalRaw.pointer, covarianceDiagonal.pointer, count: examples * k)
        batchedGEMM(batch: examples, MatrixView(scale.pointer, rows: k, columns: k), strideC: kk,
                    MatrixView(scaleRaw.pointer, rows: k, columns: k), strideA: kk, .none,
                    MatrixView(scaleRaw.pointer, rows: k, columns: k), strideB: kk, .transposed)
        for b in 0..<examples {
            let sigma = scale.pointer + b * kk
            for i in 0..<k { sigma[i * k + i] += covarianceDiagonal[b * k + i] }
        }
        if let failure = batchedCholesky(scale.pointer, batch: examples, n: k) {
            throw IWAEError.numerical("the encoder covariance of example \(failure.index) in the batch is not positive definite (LAPACK potrf info \(failure.info))")
        }
        for b in 0..<examples {
            let l = scale.pointer + b * kk
            var sum: Scalar = 0
            for i in 0..<k {
                for j in (i + 1)..<Swift.max(i + 1, k) { l[i * k + j] = 0 }
                sum += Scalar.log(l[i * k + i])
            }
            halfLogDet[b] = sum
        }
    }

    /// The prior's mean λ₁ and variance λ₂ for unit i.
    @inline(__always) func priorParameters(_ i: Int) -> (mean: Scalar, variance: Scalar) {
        guard let priorMean, let priorLogVariance else { return (0, 1) }
        return (store.value(priorMean)[i], Scalar.exp(store.value(priorLogVariance)[i]))
    }

    /// KL(q_φ(·|x) ‖ r_λ) per example in closed form (`klDivergence`).
    private func computeKLDivergences() {
        let k = configuration.latentDimension
        for b in 0..<examples {
            var trace: Scalar = 0, quadratic: Scalar = 0, logPriorDet: Scalar = 0
            for i in 0..<k {
                let (m, v) = priorParameters(i)
                let sigmaII: Scalar
                if isFull {
                    var s: Scalar = 0
                    for j in 0...i { let l = scale[b * k * k + i * k + j]; s += l * l }
                    sigmaII = s
                } else {
                    sigmaII = scale[b * k + i] * scale[b * k + i]
                }
                trace += sigmaII / v
                let diff = m - mean[b * k + i]
                quadratic += diff * diff / v
                logPriorDet += Scalar.log(v)
            }
            klDivergences[b] = klDivergence(trace: trace, quadratic: quadratic, dimension: k,
                                            logPriorDeterminant: logPriorDet, logDeterminant: 2 * halfLogDet[b])
        }
    }

    /// Reparameterized sampling: ε ~ N(0, I), z = μ + L ε (L = diag(s) for
    /// the diagonal encoder), (B·K, k).
    public func sample(samplesPerExample K: Int, using rng: Xoshiro256) {
        precondition(K >= 1)
        reserve(examples: examples, samplesPerExample: K)
        samplesPerExample = K
        let t = profiler.start()
        defer { profiler.stop(.sampling, t) }
        let k = configuration.latentDimension
        rng.fillStandardNormal(epsilon.pointer, count: examples * K * k)
        let mu = mean.pointer, s = scale.pointer, eps = epsilon.pointer, zp = z.pointer
        if isFull {
            let tc = profiler.start()
            defer { profiler.stop(.covariance, tc) }
            // Z_b (K, k) = E_b (K, k) · L_bᵀ, then + μ_b.
            batchedGEMM(batch: examples, MatrixView(zp, rows: K, columns: k), strideC: K * k,
                        MatrixView(eps, rows: K, columns: k), strideA: K * k, .none,
                        MatrixView(s, rows: k, columns: k), strideB: k * k, .transposed)
            for b in 0..<examples { for j in 0..<K { for i in 0..<k { zp[(b * K + j) * k + i] += mu[b * k + i] } } }
        } else {
            for b in 0..<examples {
                for j in 0..<K {
                    let r = (b * K + j) * k
                    for i in 0..<k { zp[r + i] = mu[b * k + i] + s[b * k + i] * eps[r + i] }
                }
            }
        }
    }

    /// Decoder forward and log weights `log w = log p(x|z) + log r(z) − log q(z|x)`,
    /// (B, K). With `keepForBackward` a Bernoulli decoder's σ(ℓ) is kept for the backward.
    @discardableResult
    public func computeLogWeights(keepProbabilities keepForBackward: Bool = true) -> MatrixView<Scalar> {
        guard let x = input else { preconditionFailure("computeLogWeights before encode") }
        let rows = examples * samplesPerExample, d = configuration.dataDimension
        switch configuration.likelihood {
        case .bernoulli:
            let logits = decoder.forward(zView, store, deferOutputBias: true)
            let t = profiler.start()
            Scalar.bernoulliLogLikelihood(
                logits: logits.pointer, bias: decoder.outputBias(store), targets: x.pointer, rows: rows, dim: d,
                repeat: samplesPerExample, logLikelihood: logLikelihood.pointer,
                probabilities: keepForBackward ? probabilities.pointer : nil)
            profiler.stop(.elementwise, t)
        case .gaussian:
            let f = decoder.forward(zView, store)
            // f(z) stays in the decoder's output buffer for the backward.
            gaussianLogLikelihood(mean: f, targets: x, samplesPerExample: samplesPerExample, variance: variance,
                                  into: logLikelihood.pointer)
        }
        let t = profiler.start()
        defer { profiler.stop(.elementwise, t) }
        if let priorMean, let priorLogVariance {
            diagonalGaussianLogDensity(zView, mean: store.value(priorMean), logVariance: store.value(priorLogVariance),
                                       into: logPrior.pointer)
        } else {
            standardNormalLogDensity(zView, into: logPrior.pointer)
        }
        reparameterizedLogDensity(epsilon: epsilonView, halfLogDeterminant: halfLogDet.pointer,
                                  samplesPerExample: samplesPerExample, into: logPosterior.pointer)
        logImportanceWeights(logLikelihood: logLikelihood.pointer, logPrior: logPrior.pointer,
                             logPosterior: logPosterior.pointer, count: rows, into: logWeightsBuffer.pointer)
        return logWeights
    }

    /// σ² of the Gaussian likelihood.
    var variance: Scalar {
        if let decoderLogVariance { return Scalar.exp(store.value(decoderLogVariance)[0]) }
        return Scalar(configuration.sigma * configuration.sigma)
    }

    // MARK: Backward

    /// Accumulates into `store.gradients` the gradient of
    ///
    ///     loss = −scale · [ Σ_b Σ_k ω_{b,k} · log w_{b,k} ]                       (ω held fixed)
    ///     loss = −scale · [ Σ_b Σ_k ω_{b,k} · log p(x_b|z_{b,k}) − Σ_b KL_b ]      (elbo-analytic)
    ///
    /// where ω (B, K) is ∂bound/∂ log w (see `boundWeights`); with ω = w̃ and
    /// scale = 1/B this is the gradient of −mean L_K (MATH.md §3): θ through
    /// log p(x|z), λ through log r, φ by `estimator` (pathwise by default:
    /// through z = μ + L ε and through q's own parameters). `scale`
    /// multiplies every term.
    public func backward(boundWeights omega: MatrixView<Scalar>, scale lossScale: Scalar, objective: Objective,
                         estimator: GradientEstimator = .reparam, baseline: ScoreBaseline = .none) {
        guard let x = input else { preconditionFailure("backward before forward") }
        let analyticKL = objective == .elboAnalytic
        let K = samplesPerExample, k = configuration.latentDimension, d = configuration.dataDimension
        let rows = examples * K
        precondition(omega.rows == examples && omega.columns == K)
        // g_{b,j} = ∂loss/∂ log w_{b,j} (or ∂loss/∂ log p with the analytic KL);
        // ω stays as it is (the estimators below read it).
        let g = lossWeights.pointer
        for b in 0..<examples { for j in 0..<K { g[b * K + j] = -lossScale * omega[b, j] } }

        // Decoder: ∂loss/∂output = g · ∂log p/∂output, then back to z.
        let dOut = decoder.outputGradient
        let xp = x.pointer
        var t = profiler.start()
        switch configuration.likelihood {
        case .bernoulli:
            // ∂log p/∂ℓ = x − σ(ℓ)
            for r in 0..<rows {
                let gr = g[r], xr = xp + (r / K) * x.rowStride, pr = probabilities.pointer + r * d, dr = dOut.pointer + r * d
                for i in 0..<d { dr[i] = gr * (xr[i] - pr[i]) }
            }
        case .gaussian:
            // ∂log p/∂f = (x − f)/σ²;  ∂log p/∂ log σ² = ‖x − f‖²/(2σ²) − D/2
            let v = variance, o = decoder.output.pointer
            var dLogVariance: Scalar = 0
            for r in 0..<rows {
                let gr = g[r], xr = xp + (r / K) * x.rowStride, fr = o + r * d, dr = dOut.pointer + r * d
                var squares: Scalar = 0
                for i in 0..<d {
                    let diff = xr[i] - fr[i]
                    dr[i] = gr * diff / v
                    squares += diff * diff
                }
                dLogVariance += gr * (squares / (2 * v) - Scalar(d) / 2)
            }
            if let decoderLogVariance { store.gradient(decoderLogVariance)[0] += dLogVariance }
        }
        profiler.stop(.elementwise, t)
        decoder.backward(dx: latentGradientView, store)

        let dz = latentGradient.pointer, zp = z.pointer, eps = epsilon.pointer, v = whitened.pointer
        if estimator != .reparam { computeWhitenedSamples() }
        var directScale: UnsafePointer<Scalar>? = nil
        if !analyticKL {
            // The prior: ∂log r/∂λ₁ = (z − λ₁)/λ₂, ∂log r/∂ρ = ½(z − λ₁)²/λ₂ − ½ (at fixed z),
            // and its path through z, ∂log r/∂z = −(z − λ₁)/λ₂.
            let dPriorMean = priorMean.map { store.gradient($0) }, dPriorLogVariance = priorLogVariance.map { store.gradient($0) }
            // DReG weights the φ path by w̃² instead of w̃: rows of the decoder's dz (∝ g = −scale·w̃) are rescaled by w̃.
            if estimator == .dreg { for r in 0..<rows { for i in 0..<k { dz[r * k + i] *= omega[r / K, r % K] } } }
            for i in 0..<k {
                let (m, variance) = priorParameters(i)
                var sumMean: Scalar = 0, sumLogVariance: Scalar = 0
                for r in 0..<rows {
                    let gr = g[r], diff = zp[r * k + i] - m
                    sumMean += gr * diff / variance
                    sumLogVariance += gr * (0.5 * diff * diff / variance - 0.5)
                    switch estimator {
                    case .reparam:
                        // With −log q's path (+g·v) and its direct term (−g·v) cancelled.
                        dz[r * k + i] += gr * (-diff / variance)
                    case .stl:
                        // Path only: −log q's path +g·v stays, its direct terms are dropped.
                        dz[r * k + i] += gr * (-diff / variance + v[r * k + i])
                    case .dreg:
                        dz[r * k + i] += gr * omega[r / K, r % K] * (-diff / variance + v[r * k + i])
                    case .score:
                        break
                    }
                }
                dPriorMean?[i] += sumMean
                dPriorLogVariance?[i] += sumLogVariance
            }
            switch estimator {
            case .reparam:
                // q's direct dependence on log det: (Σ_j g_j) diag(1/L_ii).
                directScale = UnsafePointer(g)
            case .stl, .dreg:
                directScale = nil
            case .score:
                // a_j ∇_φ log q(z_j|x) at fixed z, ∇_μ log q = v, ∇_L log q = lower(v εᵀ) − diag(1/L_ii):
                // M_j = a_j v_j and direct scale −a_j.
                let a = scoreCoefficients(omega: omega, scale: lossScale, objective: objective, baseline: baseline)
                for r in 0..<rows {
                    for i in 0..<k { dz[r * k + i] = a[r] * v[r * k + i] }
                    a[r] = -a[r]
                }
                directScale = UnsafePointer(a)
            }
        }
        t = profiler.start()
        reparameterizationBackward(sampleGradient: dz, directScale: directScale)
        if analyticKL { klBackward(scale: lossScale) }
        if isFull { covarianceBackward() }
        profiler.stop(isFull ? .covariance : .elementwise, t)
        t = profiler.start()
        encoderHeadsBackward()
        profiler.stop(.gemm, t)
    }

    /// v = L⁻ᵀ ε per sample (rows vᵀ = εᵀ L⁻¹): ∂log q/∂z = −v, ∇_μ log q = v.
    private func computeWhitenedSamples() {
        let K = samplesPerExample, k = configuration.latentDimension, rows = examples * K
        let eps = epsilon.pointer, v = whitened.pointer
        if isFull {
            let tc = profiler.start()
            defer { profiler.stop(.covariance, tc) }
            v.update(from: eps, count: rows * k)
            for b in 0..<examples {
                Scalar.triangularSolve(left: false, transposeA: .none, m: K, n: k, alpha: 1,
                                       a: scale.pointer + b * k * k, lda: k, b: v + b * K * k, ldb: k)
            }
        } else {
            for b in 0..<examples { for j in 0..<K { for i in 0..<k {
                v[(b * K + j) * k + i] = eps[(b * K + j) * k + i] / scale[b * k + i]
            } } }
        }
    }

    /// The score-function coefficients a_j = −scale · c_j of ∇_φ log q(z_j|x)
    /// (MATH.md §3, z fixed), in `whitened`'s companion buffer:
    ///
    ///     IWAE: c_j = (L_K − b_j) − w̃_j           ELBO: c_j = (log w_j − b_j)/K − 1/K
    ///
    /// b_j = 0, or VIMCO's leave-one-out: L_K with log w_j replaced by the mean
    /// of the others (IWAE), the mean of the other log w (ELBO).
    private func scoreCoefficients(omega: MatrixView<Scalar>, scale: Scalar, objective: Objective,
                                   baseline: ScoreBaseline) -> UnsafeMutablePointer<Scalar> {
        let K = samplesPerExample
        let lw = logWeights, a = scoreBuffer.pointer
        let logK = Scalar.log(Scalar(K))
        for b in 0..<examples {
            let row = lw.pointer + b * lw.rowStride
            var sum: Scalar = 0
            for j in 0..<K { sum += row[j] }
            let bound = objective == .iwae ? logSumExp(row, count: K) - logK : sum / Scalar(K)
            for j in 0..<K {
                var signal: Scalar
                if objective == .iwae {
                    signal = bound
                    if baseline == .vimco {
                        // Replace log w_j by the mean of the others inside L_K.
                        let others = (sum - row[j]) / Scalar(K - 1)
                        let saved = row[j]
                        row[j] = others
                        signal -= logSumExp(row, count: K) - logK
                        row[j] = saved
                    }
                } else {
                    signal = row[j]
                    if baseline == .vimco { signal -= (sum - row[j]) / Scalar(K - 1) }
                    signal /= Scalar(K)
                }
                a[b * K + j] = -scale * (signal - omega[b, j])
            }
        }
        return a
    }

    /// From M = ∂loss/∂z (B·K, k) with q's direct terms folded in: μ̄, and
    /// log s̄ (diagonal) or L̄ (full); `directScale` g adds Σ_j g_j diag(1/L_ii).
    private func reparameterizationBackward(sampleGradient m: UnsafeMutablePointer<Scalar>, directScale g: UnsafePointer<Scalar>?) {
        let K = samplesPerExample, k = configuration.latentDimension
        let eps = epsilon.pointer, dMu = meanGradient.pointer, dScale = scaleGradient.pointer
        for b in 0..<examples {
            var gSum: Scalar = 0
            if let g { for j in 0..<K { gSum += g[b * K + j] } }
            for i in 0..<k {
                var s: Scalar = 0
                for j in 0..<K { s += m[(b * K + j) * k + i] }
                dMu[b * k + i] = s
            }
            if isFull {
                // L̄ = lower(M_bᵀ E_b) + (Σ_j g_j) diag(1/L_ii)
                let lBar = dScale + b * k * k
                gemm(MatrixView(lBar, rows: k, columns: k), MatrixView(m + b * K * k, rows: K, columns: k), .transposed,
                     MatrixView(eps + b * K * k, rows: K, columns: k), .none)
                for i in 0..<k {
                    for j in (i + 1)..<Swift.max(i + 1, k) { lBar[i * k + j] = 0 }
                    lBar[i * k + i] += gSum / scale[b * k * k + i * k + i]
                }
            } else {
                // log s̄ = Σ_j M_j ⊙ s ε_j + Σ_j g_j   (∂z/∂ log s = s ε)
                for i in 0..<k {
                    let si = scale[b * k + i]
                    var s: Scalar = 0
                    for j in 0..<K { s += m[(b * K + j) * k + i] * si * eps[(b * K + j) * k + i] }
                    dScale[b * k + i] = s + gSum
                }
            }
        }
    }

    /// Adds `scale ·` ∂KL/∂(μ, L or log s, λ) (`klDivergence`):
    ///
    ///     ∂KL/∂μ = (μ − λ₁)/λ₂,   ∂KL/∂L_ij = L_ij/λ₂ᵢ − δ_ij/L_ii,   ∂KL/∂ log s_i = s_i²/λ₂ᵢ − 1
    ///     ∂KL/∂λ₁ = (λ₁ − μ)/λ₂,  ∂KL/∂ρ = ½(1 − (Σ_ii + (λ₁ − μ)²)/λ₂)
    private func klBackward(scale c: Scalar) {
        let k = configuration.latentDimension
        let dPriorMean = priorMean.map { store.gradient($0) }, dPriorLogVariance = priorLogVariance.map { store.gradient($0) }
        for b in 0..<examples {
            for i in 0..<k {
                let (m, v) = priorParameters(i)
                let diff = mean[b * k + i] - m
                meanGradient[b * k + i] += c * diff / v
                var sigmaII: Scalar = 0
                if isFull {
                    let l = scale.pointer + b * k * k, lBar = scaleGradient.pointer + b * k * k
                    for j in 0...i {
                        lBar[i * k + j] += c * l[i * k + j] / v
                        sigmaII += l[i * k + j] * l[i * k + j]
                    }
                    lBar[i * k + i] -= c / l[i * k + i]
                } else {
                    let s = scale[b * k + i]
                    sigmaII = s * s
                    scaleGradient[b * k + i] += c * (sigmaII / v - 1)
                }
                dPriorMean?[i] += c * (-diff / v)
                dPriorLogVariance?[i] += c * 0.5 * (1 - (sigmaII + diff * diff) / v)
            }
        }
    }

    /// Full encoder: L̄ → Σ̄ (Murray, MATH.md §4) → Ā = 2 Σ̄ A, d̄ = diag(Σ̄) ⊙ σ(d).
    private func covarianceBackward() {
        let k = configuration.latentDimension, kk = k * k
        do {
            for b in 0..<examples {
                let sigmaBar = covarianceGradient.pointer + b * kk
                choleskyBackward(factor: scale.pointer + b * kk, factorGradient: scaleGradient.pointer + b * kk, n: k,
                                 into: sigmaBar, work: choleskyWork.pointer)
                gemm(MatrixView(scaleRawGradient.pointer + b * kk, rows: k, columns: k), MatrixView(sigmaBar, rows: k, columns: k), .none,
                     MatrixView(scaleRaw.pointer + b * kk, rows: k, columns: k), .none, alpha: 2)
            }
            // ∂ softplus(d)/∂d = σ(d) = 1 − exp(−softplus(d)).
            for b in 0..<examples { for i in 0..<k {
                let sp = covarianceDiagonal[b * k + i]
                diagonalRawGradient[b * k + i] = covarianceGradient[b * kk + i * k + i] * -Scalar.expMinusOne(-sp)
            } }
        }
    }

    /// μ̄ and the scale gradient back through the heads and the trunk.
    private func encoderHeadsBackward() {
        let k = configuration.latentDimension
        let h = encoderTrunk?.output ?? input!
        let dh = encoderTrunk?.outputGradient
        let ones = encoderTrunk?.onesVector ?? decoder.onesVector
        meanHead.backward(dx: dh, dy: view(meanGradient, k), x: h, store, ones: ones)
        scaleHead.backward(dx: dh, dy: view(isFull ? scaleRawGradient : scaleGradient, scaleWidth), x: h, store, ones: ones,
                           accumulateInput: true)
        diagonalHead?.backward(dx: dh, dy: view(diagonalRawGradient, k), x: h, store, ones: ones, accumulateInput: true)
        encoderTrunk?.backward(dx: nil, store)
    }

    /// One training-step gradient: encode, sample K, log weights, bound and
    /// backward. Accumulates ∇(−lossScale · Σ_b bound_b) into
    /// `store.gradients` (lossScale defaults to 1/B: the mean) and returns the
    /// per-example bounds (B), valid until the next call.
    @discardableResult
    @_specialize(exported: true, where Scalar == Float)
    public func accumulateGradient(
        _ x: MatrixView<Scalar>, objective: Objective, samplesPerExample K: Int, using rng: Xoshiro256,
        lossScale: Scalar? = nil, estimator: GradientEstimator = .reparam, baseline: ScoreBaseline = .none
    ) throws -> UnsafeMutableBufferPointer<Scalar> {
        try estimator.validate(objective: objective, samplesPerExample: K, baseline: baseline)
        try encode(x)
        sample(samplesPerExample: K, using: rng)
        let lw = computeLogWeights(keepProbabilities: true)
        let bounds = boundsBuffer.pointer
        bound(objective, into: bounds)
        let omega = MatrixView(weights.pointer, rows: examples, columns: K)
        boundWeights(objective, logWeights: lw, into: omega)
        backward(boundWeights: omega, scale: lossScale ?? 1 / Scalar(examples), objective: objective,
                 estimator: estimator, baseline: baseline)
        return UnsafeMutableBufferPointer(start: bounds, count: examples)
    }

    /// The per-example bound of `objective` from the last `computeLogWeights`.
    public func bound(_ objective: Objective, into result: UnsafeMutablePointer<Scalar>) {
        switch objective {
        case .iwae:
            iwaeBound(logWeights: logWeights, into: result)
        case .elbo:
            elboEstimate(logWeights: logWeights, into: result)
        case .elboAnalytic:
            let K = samplesPerExample
            for b in 0..<examples {
                var sum: Scalar = 0
                for j in 0..<K { sum += logLikelihood[b * K + j] }
                result[b] = sum / Scalar(K) - klDivergences[b]
            }
        }
    }

    /// Floating-point operations of the GEMMs of one training step (forward
    /// and backward) with B examples and K samples each, counted exactly from
    /// the layer shapes: 2·rows·in·out per product; the backward has two
    /// products per layer (weights and inputs) except the encoder's first,
    /// which needs no input gradient. Bias sums (GEMV) and the per-example
    /// k×k products of the full-covariance encoder are not counted.
    public func gemmFlopsPerStep(examples B: Int, samplesPerExample K: Int) -> Double {
        let encoderLayers = (encoderTrunk?.layers ?? []) + [meanHead, scaleHead] + (diagonalHead.map { [$0] } ?? [])
        var flops = 0.0
        for (i, layer) in encoderLayers.enumerated() {
            let product = 2 * Double(B) * Double(layer.inputSize) * Double(layer.outputSize)
            flops += product * (i == 0 && encoderTrunk != nil ? 2 : 3)
        }
        for layer in decoder.layers {
            flops += 3 * 2 * Double(B * K) * Double(layer.inputSize) * Double(layer.outputSize)
        }
        return flops
    }

    /// Floating-point operations of the GEMMs that evaluate log weights for
    /// N examples with k samples each (forward only).
    public func gemmFlopsForLogWeights(examples N: Int, samplesPerExample k: Int) -> Double {
        let encoderLayers = (encoderTrunk?.layers ?? []) + [meanHead, scaleHead] + (diagonalHead.map { [$0] } ?? [])
        let encoder = encoderLayers.reduce(0.0) { $0 + 2 * Double(N) * Double($1.inputSize * $1.outputSize) }
        let decoderFlops = decoder.layers.reduce(0.0) { $0 + 2 * Double(N) * Double(k) * Double($1.inputSize * $1.outputSize) }
        return encoder + decoderFlops
    }

    // MARK: Views

    private func view(_ t: Tensor<Scalar>, _ columns: Int) -> MatrixView<Scalar> { MatrixView(t.pointer, rows: examples, columns: columns) }
    public var logWeights: MatrixView<Scalar> { MatrixView(logWeightsBuffer.pointer, rows: examples, columns: samplesPerExample) }
    var zView: MatrixView<Scalar> { MatrixView(z.pointer, rows: examples * samplesPerExample, columns: configuration.latentDimension) }
    var epsilonView: MatrixView<Scalar> { MatrixView(epsilon.pointer, rows: examples * samplesPerExample, columns: configuration.latentDimension) }
    var latentGradientView: MatrixView<Scalar> { MatrixView(latentGradient.pointer, rows: examples * samplesPerExample, columns: configuration.latentDimension) }

    /// μ (B, k) of the last `encode`.
    public var encoderMean: MatrixView<Scalar> { view(mean, k) }
    /// The scale of the last `encode`: s (B, k) for the diagonal encoder, L (B, k·k) row-major for the full one.
    public var encoderScale: MatrixView<Scalar> { view(scale, scaleWidth) }
    /// z (B·K, k) of the last `sample`.
    public var latentSamples: MatrixView<Scalar> { zView }
    /// KL(q ‖ r) per example of the last `encode`.
    public var klPerExample: UnsafeBufferPointer<Scalar> { UnsafeBufferPointer(start: klDivergences.pointer, count: examples) }
    /// log p(x|z) per sample row of the last `computeLogWeights`.
    public var logLikelihoodPerSample: UnsafeBufferPointer<Scalar> {
        UnsafeBufferPointer(start: logLikelihood.pointer, count: examples * samplesPerExample)
    }

    /// Named parameter tensors, in layout order.
    public var parameterSlots: [ParameterSlot] { store.layout.slots }
}
