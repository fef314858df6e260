import IWAELinearAlgebra
import RealModule

/// The model of Mathematics §1, composed of its components, with L ≥ 1
/// stochastic layers z₁ … z_L (Burda et al.'s second architecture has L = 2):
///
///     encoders[0]           q_φ(z₁|x)          GaussianConditional (diagonal or full covariance)
///     encoders[l]           q_φ(z_{l+1}|z_l)   GaussianConditional, one draw per z_l
///     conditionalPriors[l]  p_θ(z_{l+1}|z_{l+2})  GaussianConditional (diagonal), evaluated at the drawn z_{l+1}
///     prior                 r_λ(z_L)           DiagonalGaussianPrior (standard or learned)
///     likelihood            p_θ(x|z₁)          Likelihood (Bernoulli or Gaussian, through the decoder network)
///
///     log w = log p(x|z₁) + log r(z_L) + Σ_l log p(z_l|z_{l+1}) − log q(z₁|x) − Σ_l log q(z_{l+1}|z_l)
///
/// Parameters live in one flat buffer (`store`), in the order encoders,
/// prior, conditional priors, decoder, σ², with the checkpoint's names:
/// `encoder.*`, `encoder2.*`, …, `prior.*`, `decoder2.*`, …, `decoder.*`.
///
/// A training step reads top-down:
///
///     let encoded = try model.encode(x)                            q(z|x) for B examples, KL
///     let lw = try model.logWeights(encoded, drawsPerExample: K, using: rng)   z (B·K, k), log w (B, K): a loop over `layers`
///     lw.bound(objective, into:), lw.boundWeights(objective, into: ω)
///     model.backward(lw, boundWeights: ω, …)                       into store.gradients
///
/// `accumulateGradient` does all four. Buffers grow on demand and are reused:
/// no tensor is allocated per step.
public final class VariationalAutoencoder<Scalar: BLASScalar> {
    public let configuration: ModelConfiguration
    package let store: ParameterStore<Scalar>
    /// q(z₁|x), q(z₂|z₁), …
    package let encoders: [GaussianConditional<Scalar>]
    /// p(z₁|z₂), p(z₂|z₃), … (empty for one layer).
    package let conditionalPriors: [GaussianConditional<Scalar>]
    package let prior: DiagonalGaussianPrior<Scalar>
    package let likelihood: Likelihood<Scalar>
    /// The stochastic layers, bottom up: `encoders[l]` with the likelihood
    /// (l = 0) or `conditionalPriors[l − 1]`.
    package let layers: [LayerDistributions<Scalar>]
    /// q(z₁|x).
    package var encoder: GaussianConditional<Scalar> { encoders[0] }

    /// The number of parameters: the size of Adam's moments (`Adam(count:)`).
    public var parameterCount: Int { store.values.count }
    /// The parameter values, in the order of their slots (a copy).
    public var parameters: [Scalar] { store.values.array }

    private var exampleCapacity = 0
    private var drawCapacity = 0
    /// KL(q ‖ r) per example and the bounds of `accumulateGradient` (B).
    let klDivergences = Tensor<Scalar>(shape: [0])
    let bounds = Tensor<Scalar>(shape: [0])
    // Per draw (B·K).
    /// log p(x|z₁).
    let logLikelihood = Tensor<Scalar>(shape: [0])
    /// log q(z_l|z_{l−1}) of one layer at a time.
    let logPosterior = Tensor<Scalar>(shape: [0])
    let logWeightValues = Tensor<Scalar>(shape: [0])
    /// ω = ∂bound/∂ log w.
    let boundWeightValues = Tensor<Scalar>(shape: [0])
    /// The encoder's ω where it differs (PIWAE: MIWAE's), or DReG's w̃ = M·ω of a MIWAE group.
    let encoderBoundWeightValues = Tensor<Scalar>(shape: [0])
    /// g = ∂loss/∂ log w = −scale · ω.
    let lossWeights = Tensor<Scalar>(shape: [0])
    /// Path weights of the doubly reparameterized estimator, g ⊙ ω.
    let pathWeights = Tensor<Scalar>(shape: [0])
    /// Score-function coefficients.
    let scoreWeights = Tensor<Scalar>(shape: [0])
    /// log p(z_l|z_{l+1}) of one upper layer at a time.
    let layerLogDensity = Tensor<Scalar>(shape: [0])

    /// Optional timing of the step's phases (GEMM, elementwise, sampling, covariance).
    package var profiler: PhaseProfiler? {
        didSet {
            for c in encoders + conditionalPriors { c.profiler = profiler }
            likelihood.profiler = profiler
        }
    }

    /// Builds the model and initializes it from `seed`: Glorot weights, zero
    /// biases, the prior at N(0, I), σ at `configuration.sigma`.
    public convenience init(_ configuration: ModelConfiguration, seed: UInt64 = 0) {
        self.init(configuration, sharingValuesOf: nil)
        let rng = Xoshiro256(seed: seed)
        for c in encoders + conditionalPriors { c.initialize(store, using: rng) }
        likelihood.initialize(store, using: rng)
    }

    /// A model whose parameters are all zero, for a caller that sets every
    /// one of them (a checkpoint's reader): no weights drawn to be overwritten.
    package static func unfilled(_ configuration: ModelConfiguration) -> VariationalAutoencoder {
        VariationalAutoencoder(configuration, sharingValuesOf: nil)
    }

    /// A model with the same parameters (shared memory, not a copy) and its
    /// own gradients and buffers, for a worker of a data-parallel step.
    package func replica() -> VariationalAutoencoder {
        VariationalAutoencoder(configuration, sharingValuesOf: store)
    }

    private init(_ configuration: ModelConfiguration, sharingValuesOf shared: ParameterStore<Scalar>?) {
        self.configuration = configuration
        let c = configuration
        var layout = ParameterLayout()
        let dimensions = c.latentDimensions
        var encoders = [GaussianConditional<Scalar>(inputDimension: c.dataDimension, hidden: c.encoderHidden,
                                                    dimension: c.latentDimension, activation: c.activation,
                                                    covariance: c.encoder, name: "encoder", layout: &layout)]
        for (l, layer) in c.upperLayers.enumerated() {
            encoders.append(GaussianConditional(inputDimension: dimensions[l], hidden: layer.encoderHidden, dimension: layer.dimension,
                                                activation: c.activation, covariance: c.encoder, name: "encoder\(l + 2)",
                                                layout: &layout))
        }
        self.encoders = encoders
        prior = DiagonalGaussianPrior(c.prior, dimension: c.topDimension, layout: &layout)
        let conditionalPriors = c.upperLayers.enumerated().map { l, layer in
            GaussianConditional<Scalar>(inputDimension: layer.dimension, hidden: layer.decoderHidden, dimension: dimensions[l],
                                activation: c.activation, covariance: .diagonal, name: "decoder\(l + 2)",
                                varianceDependsOnInput: !layer.decoderHidden.isEmpty, layout: &layout)
        }
        self.conditionalPriors = conditionalPriors
        let likelihood = Likelihood<Scalar>(c, inputDimension: c.latentDimension, layout: &layout)
        self.likelihood = likelihood
        layers = encoders.indices.map { l in
            LayerDistributions(encoder: encoders[l], generative: l == 0 ? .likelihood(likelihood) : .conditionalPrior(conditionalPriors[l - 1]))
        }
        store = shared.map { ParameterStore(sharingValuesOf: $0) } ?? ParameterStore(layout: layout)
    }

    /// Sets the decoder's output bias so that the untrained model predicts
    /// the training-set mean: its logit (clipped to [10⁻³, 1 − 10⁻³]) for a
    /// Bernoulli likelihood, the mean itself for a Gaussian one.
    public func initializeOutputBias(dataMean: [Scalar]) {
        precondition(dataMean.count == configuration.dataDimension)
        store.valuesChanged()
        let bias = store.value(likelihood.decoder.layers.last!.bias)
        for d in 0..<dataMean.count {
            if case .gaussian = likelihood { bias[d] = dataMean[d]; continue }
            let p = Swift.min(Swift.max(dataMean[d], 1e-3), 1 - 1e-3)
            bias[d] = Scalar.log(p) - Scalar.log(onePlus: -p)
        }
    }

    /// Points the decoder's output layer at the data: column j of its weight
    /// W (D, H) becomes the j-th principal direction of the training data,
    /// at the norm Glorot's draw gives a column on average,
    ///
    ///     W[:, j] = √(2D / (D + H)) · u_{j+1},   j < min(H, D)
    ///
    /// (u_1 of largest variance; `OutputInitialization.pca`).
    /// The scale stays Glorot's; only the directions change, from random
    /// patterns over all D outputs (pixels that are never on included) to
    /// the data's own. Columns past D keep their draw.
    package func initializeOutputWeights(principalComponents pca: PrincipalComponents) {
        let output = likelihood.decoder.layers.last!
        let d = output.outputSize, h = output.inputSize
        precondition(pca.dimension == d)
        let norm = (2 * Double(d) / Double(d + h)).squareRoot()
        store.valuesChanged()
        let w = store.value(output.weight)
        for j in 0..<Swift.min(h, d) {
            for (row, u) in pca.direction(j).enumerated() { w[row * h + j] = Scalar(norm * u) }
        }
    }

    /// The model's own buffers: one value per example (B), one per draw (B·K).
    private var perExample: [Tensor<Scalar>] { [klDivergences, bounds] }
    private var perDraw: [Tensor<Scalar>] {
        [logLikelihood, logPosterior, logWeightValues, boundWeightValues, encoderBoundWeightValues, lossWeights,
         pathWeights, scoreWeights, layerLogDensity]
    }

    private func reserve(examples b: Int, draws rows: Int) {
        if b > exampleCapacity {
            exampleCapacity = b
            for t in perExample { t.replace(shape: [b]) }
        }
        if rows > drawCapacity {
            drawCapacity = rows
            for t in perDraw { t.replace(shape: [rows]) }
        }
    }

    /// Frees every buffer of the model and its components (after a large
    /// evaluation); they grow again on the next use.
    package func releaseBuffers() {
        exampleCapacity = 0
        drawCapacity = 0
        for t in perExample + perDraw { t.replace(shape: [0]) }
        for c in encoders + conditionalPriors { c.releaseBuffers() }
        likelihood.releaseBuffers()
    }

    /// Bytes held by the buffers of the model and its components.
    package var bufferBytes: Int {
        let own = (perExample + perDraw).reduce(0) { $0 + $1.capacity * MemoryLayout<Scalar>.stride }
        return (encoders + conditionalPriors).reduce(own + likelihood.bufferBytes) { $0 + $1.bufferBytes }
    }

    /// The draws encoder l makes per input row when a step has K draws per
    /// example: K of z₁ per example, then one of each layer above per draw
    /// below (so every layer has B·K rows).
    func drawsPerInput(ofLayer l: Int, drawsPerExample K: Int) -> Int { l == 0 ? K : 1 }

    /// z_{l+1} (B·K, k_{l+1}) of the last `logWeights` with K draws per example.
    func latentSamples(_ l: Int, drawsPerExample K: Int) -> MatrixView<Scalar> {
        encoders[l].samplesView(drawsPerInput(ofLayer: l, drawsPerExample: K))
    }

    // MARK: Forward

    /// q(z₁|x) for the rows of x (B, D), and KL(q ‖ r) per example in closed
    /// form for one stochastic layer (NaN for more: no closed form). Throws
    /// `IWAEError.notPositiveDefinite` when a covariance cannot be factored.
    package func encode(_ x: MatrixView<Scalar>) throws -> EncodedBatch<Scalar> {
        precondition(x.columns == configuration.dataDimension)
        reserve(examples: x.rows, draws: 0)
        try encoder.forward(x, store)
        if encoders.count == 1 {
            encoder.klDivergence(to: prior, store, into: klDivergences.pointer)
        } else {
            klDivergences.pointer.update(repeating: .nan, count: x.rows)
        }
        return EncodedBatch(input: x)
    }

    /// K draws per example from q(z|x) of `encoded`, the decoder forward and
    /// the log weights (B, K), a loop over the stochastic layers (z₀ = x):
    ///
    ///     log w = log r(z_L) + Σ_l [ log p(z_{l−1} | z_l) − log q(z_l | z_{l−1}) ]
    ///
    /// With `keepForBackward` the likelihood keeps what its backward needs.
    package func logWeights(_ encoded: EncodedBatch<Scalar>, drawsPerExample K: Int, using rng: Xoshiro256,
                           keepForBackward: Bool = true) throws -> LogWeights<Scalar> {
        try logWeights(encoded, drawsPerExample: K, noise: .shared(rng), keepForBackward: keepForBackward)
    }

    /// `logWeights` with ε from `noise`: one generator for the batch, or one
    /// per example (each example's draws at every layer from its own).
    package func logWeights(_ encoded: EncodedBatch<Scalar>, drawsPerExample K: Int, noise: Noise,
                           keepForBackward: Bool = true) throws -> LogWeights<Scalar> {
        precondition(encoded.examples == encoder.examples, "logWeights of a batch that is not the last encoded one")
        let x = encoded.input, rows = x.rows * K
        reserve(examples: x.rows, draws: rows)
        // z₁ (B·K), then one z_{l+1} per z_l up the stack.
        encoder.sample(drawsPerExample: K, using: noise)
        for l in encoders.indices.dropFirst() {
            do { try encoders[l].forward(latentSamples(l - 1, drawsPerExample: K), store) }
            catch IWAEError.notPositiveDefinite(let row, let info) { throw IWAEError.notPositiveDefinite(example: row / K, info: info) }
            encoders[l].sample(drawsPerExample: 1, using: noise)
        }
        let lw = logWeightValues.pointer
        var t = profiler.start()
        prior.logDensity(latentSamples(layers.count - 1, drawsPerExample: K), store, into: lw)
        profiler.stop(.elementwise, t)
        for (l, layer) in layers.enumerated() {
            // log p(x | z₁) stays apart (the ELBO's reconstruction term).
            let p = l == 0 ? logLikelihood.pointer : layerLogDensity.pointer, q = logPosterior.pointer
            try layer.generative.logDensity(of: l == 0 ? x : latentSamples(l - 1, drawsPerExample: K), repeats: l == 0 ? K : 1,
                                            given: latentSamples(l, drawsPerExample: K), keepForBackward: keepForBackward,
                                            store, into: p)
            t = profiler.start()
            layer.encoder.logDensityOfSamples(drawsPerExample: drawsPerInput(ofLayer: l, drawsPerExample: K), into: q)
            for r in 0..<rows { lw[r] = lw[r] + p[r] - q[r] }
            profiler.stop(.elementwise, t)
        }
        return LogWeights(values: MatrixView(lw, rows: x.rows, columns: K),
                          logLikelihood: UnsafeBufferPointer(start: logLikelihood.pointer, count: rows),
                          klDivergence: UnsafeBufferPointer(start: klDivergences.pointer, count: x.rows), input: x)
    }

    /// The decoder's mean for latent rows z (N, k) into `out` (N, D):
    /// σ(f_θ(z)) for a Bernoulli likelihood, f_θ(z) for a Gaussian one.
    package func decodeMeans(_ z: MatrixView<Scalar>, into out: UnsafeMutablePointer<Scalar>) {
        precondition(z.columns == configuration.latentDimension)
        likelihood.mean(z, store, into: out)
    }

    /// Named parameter tensors, in layout order.
    package var parameterSlots: [ParameterSlot] { store.layout.slots }

    /// φ: the encoders' positions in the flat parameter buffer (contiguous, first).
    package var encoderParameters: Range<Int> { encoders.flatMap(\.parameterSlots).span }
    /// θ: the decoder's (and σ²'s) positions in the flat parameter buffer.
    package var decoderParameters: Range<Int> { likelihood.parameterSlots.span }
}

/// A batch whose q(z|x) the model has just computed: the token that
/// `logWeights` takes, valid until the model's next `encode`.
package struct EncodedBatch<Scalar: BLASScalar> {
    /// x (B, D).
    package let input: MatrixView<Scalar>
    /// B.
    package var examples: Int { input.rows }
}
