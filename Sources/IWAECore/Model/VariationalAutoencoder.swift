import IWAELinearAlgebra
import RealModule

/// The model of MATH.md §1, composed of its components:
///
///     encoder     q_φ(z|x)   GaussianConditional (diagonal or full covariance)
///     prior       r_λ(z)     DiagonalGaussianPrior (standard or learned)
///     likelihood  p_θ(x|z)   Likelihood (Bernoulli or Gaussian, through the decoder network)
///
/// Parameters live in one flat buffer (`store`), in the order encoder, prior,
/// decoder, σ², with the checkpoint's names (see each component).
///
/// A training step reads top-down:
///
///     let encoded = try model.encode(x)                            q(z|x) for B examples, KL
///     let lw = model.logWeights(encoded, samplesPerExample: K)     z (B·K, k), log w (B, K)
///     lw.bound(objective, into:), lw.boundWeights(objective, into: ω)
///     model.backward(lw, boundWeights: ω, …)                       into store.gradients
///
/// `accumulateGradient` does all four. Buffers grow on demand and are reused;
/// nothing is allocated per step.
public final class VariationalAutoencoder<Scalar: BLASScalar> {
    public let configuration: ModelConfiguration
    public let store: ParameterStore<Scalar>
    public let encoder: GaussianConditional<Scalar>
    public let prior: DiagonalGaussianPrior<Scalar>
    public let likelihood: Likelihood<Scalar>

    private var exampleCapacity = 0
    private var drawCapacity = 0
    /// KL(q ‖ r) per example and the bounds of `accumulateGradient` (B).
    let klDivergences = Tensor<Scalar>(shape: [0])
    let bounds = Tensor<Scalar>(shape: [0])
    // Per draw (B·K).
    let logLikelihood = Tensor<Scalar>(shape: [0])
    let logPrior = Tensor<Scalar>(shape: [0])
    let logPosterior = Tensor<Scalar>(shape: [0])
    let logWeightValues = Tensor<Scalar>(shape: [0])
    /// ω = ∂bound/∂ log w.
    let boundWeightValues = Tensor<Scalar>(shape: [0])
    /// g = ∂loss/∂ log w = −scale · ω.
    let lossWeights = Tensor<Scalar>(shape: [0])
    /// Path weights of the doubly reparameterized estimator, g ⊙ ω.
    let pathWeights = Tensor<Scalar>(shape: [0])
    /// Score-function coefficients.
    let scoreWeights = Tensor<Scalar>(shape: [0])

    /// Optional timing of the step's phases (GEMM, elementwise, sampling, covariance).
    public var profiler: PhaseProfiler? {
        didSet {
            encoder.profiler = profiler
            likelihood.profiler = profiler
        }
    }

    /// Builds the model and initializes it from `seed`: Glorot weights, zero
    /// biases, the prior at N(0, I), σ at `configuration.sigma`.
    public convenience init(_ configuration: ModelConfiguration, seed: UInt64 = 0) {
        self.init(configuration, sharingValuesOf: nil)
        let rng = Xoshiro256(seed: seed)
        encoder.initialize(store, using: rng)
        likelihood.initialize(store, using: rng)
    }

    /// A model with the same parameters (shared memory, not a copy) and its
    /// own gradients and buffers, for a worker of a data-parallel step.
    public func replica() -> VariationalAutoencoder {
        VariationalAutoencoder(configuration, sharingValuesOf: store)
    }

    private init(_ configuration: ModelConfiguration, sharingValuesOf shared: ParameterStore<Scalar>?) {
        self.configuration = configuration
        let c = configuration
        var layout = ParameterLayout()
        encoder = GaussianConditional(inputDimension: c.dataDimension, hidden: c.encoderHidden, dimension: c.latentDimension,
                                      activation: c.activation, covariance: c.encoder, name: "encoder", layout: &layout)
        prior = DiagonalGaussianPrior(c.prior, dimension: c.latentDimension, layout: &layout)
        likelihood = Likelihood(c, inputDimension: c.latentDimension, layout: &layout)
        store = shared.map { ParameterStore(sharingValuesOf: $0) } ?? ParameterStore(layout: layout)
    }

    /// Sets the decoder's output bias so that the untrained model predicts
    /// the training-set mean: its logit (clipped to [10⁻³, 1 − 10⁻³]) for a
    /// Bernoulli likelihood, the mean itself for a Gaussian one.
    public func initializeOutputBias(dataMean: [Scalar]) {
        precondition(dataMean.count == configuration.dataDimension)
        let bias = store.value(likelihood.decoder.layers.last!.bias)
        for d in 0..<dataMean.count {
            if case .gaussian = likelihood { bias[d] = dataMean[d]; continue }
            let p = Swift.min(Swift.max(dataMean[d], 1e-3), 1 - 1e-3)
            bias[d] = Scalar.log(p) - Scalar.log(onePlus: -p)
        }
    }

    private func reserve(examples b: Int, draws rows: Int) {
        if b > exampleCapacity {
            exampleCapacity = b
            for t in [klDivergences, bounds] { t.replace(shape: [b]) }
        }
        if rows > drawCapacity {
            drawCapacity = rows
            for t in [logLikelihood, logPrior, logPosterior, logWeightValues, boundWeightValues, lossWeights, pathWeights,
                      scoreWeights] { t.replace(shape: [rows]) }
        }
    }

    /// Frees every buffer of the model and its components (after a large
    /// evaluation); they grow again on the next use.
    public func releaseBuffers() {
        exampleCapacity = 0
        drawCapacity = 0
        for t in [klDivergences, bounds, logLikelihood, logPrior, logPosterior, logWeightValues, boundWeightValues,
                  lossWeights, pathWeights, scoreWeights] { t.replace(shape: [0]) }
        encoder.releaseBuffers()
        likelihood.releaseBuffers()
    }

    /// Bytes held by the buffers of the model and its components.
    public var bufferBytes: Int {
        [klDivergences, bounds, logLikelihood, logPrior, logPosterior, logWeightValues, boundWeightValues, lossWeights,
         pathWeights, scoreWeights].reduce(encoder.bufferBytes + likelihood.bufferBytes) {
            $0 + $1.capacity * MemoryLayout<Scalar>.stride
        }
    }

    // MARK: Forward

    /// q(z|x) for the rows of x (B, D), and KL(q ‖ r) per example. Throws
    /// `IWAEError.notPositiveDefinite` when a covariance cannot be factored.
    public func encode(_ x: MatrixView<Scalar>) throws -> EncodedBatch<Scalar> {
        precondition(x.columns == configuration.dataDimension)
        reserve(examples: x.rows, draws: 0)
        try encoder.forward(x, store)
        encoder.klDivergence(to: prior, store, into: klDivergences.pointer)
        return EncodedBatch(input: x)
    }

    /// K draws per example from q(z|x) of `encoded`, the decoder forward and
    /// `log w = log p(x|z) + log r(z) − log q(z|x)` (B, K). With
    /// `keepForBackward` the likelihood keeps what its backward needs.
    public func logWeights(_ encoded: EncodedBatch<Scalar>, samplesPerExample K: Int, using rng: Xoshiro256,
                           keepForBackward: Bool = true) -> LogWeights<Scalar> {
        precondition(encoded.examples == encoder.examples, "logWeights of a batch that is not the last encoded one")
        let x = encoded.input, rows = x.rows * K
        reserve(examples: x.rows, draws: rows)
        let z = encoder.sample(samplesPerExample: K, using: rng)
        likelihood.logLikelihood(z, targets: x, samplesPerExample: K, keepForBackward: keepForBackward, store,
                                 into: logLikelihood.pointer)
        let t = profiler.start()
        defer { profiler.stop(.elementwise, t) }
        prior.logDensity(z, store, into: logPrior.pointer)
        encoder.logDensityOfSamples(samplesPerExample: K, into: logPosterior.pointer)
        logImportanceWeights(logLikelihood: logLikelihood.pointer, logPrior: logPrior.pointer,
                             logPosterior: logPosterior.pointer, count: rows, into: logWeightValues.pointer)
        return LogWeights(values: MatrixView(logWeightValues.pointer, rows: x.rows, columns: K),
                          logLikelihood: UnsafeBufferPointer(start: logLikelihood.pointer, count: rows),
                          klDivergence: UnsafeBufferPointer(start: klDivergences.pointer, count: x.rows), input: x)
    }

    // MARK: Backward

    /// Accumulates into `store.gradients` the gradient of
    ///
    ///     loss = −scale · Σ_b Σ_j ω_bj · log w_bj                       (ω held fixed)
    ///     loss = −scale · [ Σ_b Σ_j ω_bj · log p(x_b|z_bj) − Σ_b KL_b ]  (elbo-analytic)
    ///
    /// where ω (B, K) is ∂bound/∂ log w; with ω from `boundWeights` and
    /// scale = 1/B this is the gradient of −mean bound (MATH.md §3): θ through
    /// log p(x|z), λ through log r, φ by `estimator`.
    public func backward(_ lw: LogWeights<Scalar>, boundWeights omega: MatrixView<Scalar>, scale lossScale: Scalar,
                         objective: Objective, estimator: GradientEstimator = .reparam, baseline: ScoreBaseline = .none) {
        let K = lw.samplesPerExample, rows = lw.examples * K, k = configuration.latentDimension
        precondition(omega.rows == lw.examples && omega.columns == K)
        let g = lossWeights.pointer
        for b in 0..<lw.examples { for j in 0..<K { g[b * K + j] = -lossScale * omega[b, j] } }

        // θ: the likelihood's backward, and its path into z unless z is held fixed.
        let dz = encoder.sampleGradientView(K)
        likelihood.backward(weights: g, targets: lw.input, samplesPerExample: K, store, dz: estimator == .score ? nil : dz)
        if objective == .elboAnalytic {
            encoder.backward(samplesPerExample: K, directScale: nil, klPrior: prior, klScale: lossScale, store)
            return
        }
        // λ, and φ through log r and log q by the estimator.
        let z = encoder.samplesView(K), m = dz.pointer
        var directScale: UnsafePointer<Scalar>?
        switch estimator {
        case .reparam:
            // −log q's path through z and its direct term cancel; what is left
            // of q is its log-determinant, weighted by g.
            prior.backward(z, weights: g, path: g, sampleGradient: m, store)
            directScale = UnsafePointer(g)
        case .stl:
            // The path only: −log q contributes +g·v through z, nothing direct.
            prior.backward(z, weights: g, path: g, sampleGradient: m, store)
            let v = encoder.whiten(samplesPerExample: K)
            for r in 0..<rows { for i in 0..<k { m[r * k + i] += g[r] * v[r * k + i] } }
        case .dreg:
            // STL's path terms with every draw weighted once more by w̃.
            let path = pathWeights.pointer
            for r in 0..<rows {
                path[r] = g[r] * omega[r / K, r % K]
                for i in 0..<k { m[r * k + i] *= omega[r / K, r % K] }
            }
            prior.backward(z, weights: g, path: path, sampleGradient: m, store)
            let v = encoder.whiten(samplesPerExample: K)
            for r in 0..<rows { for i in 0..<k { m[r * k + i] += path[r] * v[r * k + i] } }
        case .score:
            // z fixed: a_j ∇_φ log q(z_j|x), with ∇_μ log q = v and
            // ∇_L log q = lower(v εᵀ) − diag(1/L_ii): M_j = a_j v_j, direct scale −a_j.
            prior.backward(z, weights: g, path: nil, sampleGradient: m, store)
            let a = scoreWeights.pointer, v = encoder.whiten(samplesPerExample: K)
            scoreCoefficients(lw, boundWeights: omega, scale: lossScale, objective: objective, baseline: baseline, into: a)
            for r in 0..<rows {
                for i in 0..<k { m[r * k + i] = a[r] * v[r * k + i] }
                a[r] = -a[r]
            }
            directScale = UnsafePointer(a)
        }
        encoder.backward(samplesPerExample: K, directScale: directScale, store)
    }

    /// One training-step gradient: encode, K draws, log weights, bound and
    /// backward. Accumulates ∇(−lossScale · Σ_b bound_b) into
    /// `store.gradients` (lossScale defaults to 1/B: the mean) and returns the
    /// per-example bounds (B), valid until the next call.
    @discardableResult
    @_specialize(exported: true, where Scalar == Float)
    public func accumulateGradient(
        _ x: MatrixView<Scalar>, objective: Objective, samplesPerExample K: Int, using rng: Xoshiro256,
        lossScale: Scalar? = nil, estimator: GradientEstimator = .reparam, baseline: ScoreBaseline = .none
    ) throws -> UnsafeMutableBufferPointer<Scalar> {
        precondition(estimator.unsupported(objective: objective, samplesPerExample: K, baseline: baseline) == nil,
                     "estimator options are validated by TrainingOptions.validate")
        let encoded = try encode(x)
        let lw = logWeights(encoded, samplesPerExample: K, using: rng)
        lw.bound(objective, into: bounds.pointer)
        let omega = MatrixView(boundWeightValues.pointer, rows: x.rows, columns: K)
        lw.boundWeights(objective, into: omega)
        backward(lw, boundWeights: omega, scale: lossScale ?? 1 / Scalar(x.rows), objective: objective,
                 estimator: estimator, baseline: baseline)
        return UnsafeMutableBufferPointer(start: bounds.pointer, count: x.rows)
    }

    /// The decoder's mean for latent rows z (N, k) into `out` (N, D):
    /// σ(f_θ(z)) for a Bernoulli likelihood, f_θ(z) for a Gaussian one.
    public func decodeMeans(_ z: MatrixView<Scalar>, into out: UnsafeMutablePointer<Scalar>) {
        precondition(z.columns == configuration.latentDimension)
        likelihood.mean(z, store, into: out)
    }

    /// Named parameter tensors, in layout order.
    public var parameterSlots: [ParameterSlot] { store.layout.slots }

    /// φ: the encoder's positions in the flat parameter buffer.
    public var encoderParameters: Range<Int> { encoder.layers.flatMap(\.slots).span }
    /// θ: the decoder's (and σ²'s) positions in the flat parameter buffer.
    public var decoderParameters: Range<Int> { likelihood.parameterSlots.span }
}

/// A batch whose q(z|x) the model has just computed: the token that
/// `logWeights` takes, valid until the model's next `encode`.
public struct EncodedBatch<Scalar: BLASScalar> {
    /// x (B, D).
    public let input: MatrixView<Scalar>
    /// B.
    public var examples: Int { input.rows }
}
