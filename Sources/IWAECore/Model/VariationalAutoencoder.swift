import IWAELinearAlgebra
import RealModule

/// The model of MATH.md §1 with a diagonal-Gaussian encoder, the standard
/// normal prior and a Bernoulli decoder, and its pathwise gradient (§3).
///
/// Parameters (one flat buffer, names as in the checkpoint):
///
///     encoder.i.weight (H_{i+1}, H_i), encoder.i.bias   trunk D → H … (activation)
///     encoder.mean.weight (k, H), encoder.log_std.weight (k, H), biases (k)
///     decoder.i.weight, decoder.i.bias                  k → H … → D (activation…, identity: logits)
///
/// A step runs `encode` (B, D) → μ, log s (B, k); `sample` ε, z (B·K, k);
/// `computeLogWeights` (B, K); then `backward` from ∂bound/∂ log w. Buffers
/// are sized by `reserve` and reused; nothing is allocated per step.
public final class VariationalAutoencoder<Scalar: BLASScalar> {
    public let configuration: ModelConfiguration
    public let store: ParameterStore<Scalar>
    let encoderTrunk: MLP<Scalar>
    let meanHead: Linear
    let logStdHead: Linear
    let decoder: MLP<Scalar>

    public private(set) var examples = 0
    public private(set) var samplesPerExample = 0
    private var exampleCapacity = 0
    private var sampleCapacity = 0

    // (B, k)
    let mean = Tensor<Scalar>(shape: [0])
    let logStd = Tensor<Scalar>(shape: [0])
    let std = Tensor<Scalar>(shape: [0])
    // (B·K, k)
    let epsilon = Tensor<Scalar>(shape: [0])
    let z = Tensor<Scalar>(shape: [0])
    // (B·K)
    let logLikelihood = Tensor<Scalar>(shape: [0])
    let logPrior = Tensor<Scalar>(shape: [0])
    let logPosterior = Tensor<Scalar>(shape: [0])
    // (B, K)
    let logWeightsBuffer = Tensor<Scalar>(shape: [0])
    let weights = Tensor<Scalar>(shape: [0])
    // backward
    let probabilities = Tensor<Scalar>(shape: [0])   // (B·K, D)
    let latentGradient = Tensor<Scalar>(shape: [0])  // (B·K, k)
    let meanGradient = Tensor<Scalar>(shape: [0])    // (B, k)
    let logStdGradient = Tensor<Scalar>(shape: [0])  // (B, k)
    let trunkGradient = Tensor<Scalar>(shape: [0])   // (B, H)
    private var input: MatrixView<Scalar>?
    /// Optional timing of the step's phases (GEMM, elementwise, sampling).
    public var profiler: PhaseProfiler? {
        didSet {
            encoderTrunk.profiler = profiler
            decoder.profiler = profiler
        }
    }

    /// Builds the model and initializes it from `seed` (Glorot weights, zero biases).
    public convenience init(_ configuration: ModelConfiguration, seed: UInt64 = 0) {
        self.init(configuration, sharingValuesOf: nil)
        let rng = Xoshiro256(seed: seed)
        encoderTrunk.initialize(store, using: rng)
        meanHead.initialize(store, using: rng)
        logStdHead.initialize(store, using: rng)
        decoder.initialize(store, using: rng)
    }

    /// A model with the same parameters (shared memory, not a copy) and its
    /// own gradients and buffers, for a worker of a data-parallel step.
    public func replica() -> VariationalAutoencoder {
        VariationalAutoencoder(configuration, sharingValuesOf: store)
    }

    private init(_ configuration: ModelConfiguration, sharingValuesOf shared: ParameterStore<Scalar>?) {
        self.configuration = configuration
        var layout = ParameterLayout()
        let c = configuration
        encoderTrunk = MLP(sizes: [c.dataDimension] + c.encoderHidden,
                           activations: Array(repeating: c.activation, count: c.encoderHidden.count),
                           name: "encoder", layout: &layout)
        let trunkOut = c.encoderHidden.last ?? c.dataDimension
        meanHead = Linear(trunkOut, c.latentDimension, name: "encoder.mean", layout: &layout)
        logStdHead = Linear(trunkOut, c.latentDimension, name: "encoder.log_std", layout: &layout)
        decoder = MLP(sizes: [c.latentDimension] + c.decoderHidden + [c.dataDimension],
                      activations: Array(repeating: c.activation, count: c.decoderHidden.count) + [.identity],
                      name: "decoder", layout: &layout)
        store = shared.map { ParameterStore(sharingValuesOf: $0) } ?? ParameterStore(layout: layout)
    }

    /// Sets the decoder's output bias to the logit of the training-set mean
    /// (clipped to [10⁻³, 1 − 10⁻³]), so the untrained model already predicts
    /// the average image.
    public func initializeOutputBias(dataMean: [Scalar]) {
        precondition(dataMean.count == configuration.dataDimension)
        let bias = store.value(decoder.layers.last!.bias)
        for d in 0..<dataMean.count {
            let p = Swift.min(Swift.max(dataMean[d], 1e-3), 1 - 1e-3)
            bias[d] = Scalar.log(p) - Scalar.log(onePlus: -p)
        }
    }

    private var hiddenWidth: Int { configuration.encoderHidden.last ?? configuration.dataDimension }

    /// Sizes every buffer for `examples` examples with `samplesPerExample`
    /// samples each; allocates only when a size grows.
    public func reserve(examples b: Int, samplesPerExample kSamples: Int) {
        let k = configuration.latentDimension, d = configuration.dataDimension
        if b > exampleCapacity {
            exampleCapacity = b
            for t in [mean, logStd, std, meanGradient, logStdGradient] { t.replace(shape: [b, k]) }
            trunkGradient.replace(shape: [b, hiddenWidth])
            encoderTrunk.reserve(rows: b)
        }
        if b * kSamples > sampleCapacity {
            let rows = b * kSamples
            sampleCapacity = rows
            for t in [epsilon, z, latentGradient] { t.replace(shape: [rows, k]) }
            for t in [logLikelihood, logPrior, logPosterior, logWeightsBuffer, weights] { t.replace(shape: [rows]) }
            probabilities.replace(shape: [rows, d])
            decoder.reserve(rows: rows)
        }
    }

    // MARK: Forward

    /// Encoder forward: x (B, D) → μ, log s, s (B, k). Keeps x for the backward.
    public func encode(_ x: MatrixView<Scalar>) {
        precondition(x.columns == configuration.dataDimension)
        reserve(examples: x.rows, samplesPerExample: Swift.max(samplesPerExample, 1))
        examples = x.rows
        input = x
        let h = encoderTrunk.forward(x, store)
        var t = profiler.start()
        meanHead.forward(meanView, h, store)
        logStdHead.forward(logStdView, h, store)
        profiler.stop(.gemm, t)
        t = profiler.start()
        Scalar.exp(logStd.pointer, std.pointer, count: examples * configuration.latentDimension)
        profiler.stop(.elementwise, t)
    }

    /// Reparameterized sampling: ε ~ N(0, I), z = μ + s ⊙ ε, (B·K, k).
    public func sample(samplesPerExample K: Int, using rng: Xoshiro256) {
        precondition(K >= 1)
        reserve(examples: examples, samplesPerExample: K)
        samplesPerExample = K
        let t = profiler.start()
        defer { profiler.stop(.sampling, t) }
        let k = configuration.latentDimension
        rng.fillStandardNormal(epsilon.pointer, count: examples * K * k)
        let mu = mean.pointer, s = std.pointer, eps = epsilon.pointer, zp = z.pointer
        for b in 0..<examples {
            for j in 0..<K {
                let r = (b * K + j) * k
                for i in 0..<k { zp[r + i] = mu[b * k + i] + s[b * k + i] * eps[r + i] }
            }
        }
    }

    /// Decoder forward and log weights `log w = log p(x|z) + log r(z) − log q(z|x)`,
    /// (B, K). With `keepProbabilities` the decoder's σ(ℓ) is kept for the backward.
    @discardableResult
    public func computeLogWeights(keepProbabilities: Bool = true) -> MatrixView<Scalar> {
        guard let x = input else { preconditionFailure("computeLogWeights before encode") }
        let rows = examples * samplesPerExample
        let logits = decoder.forward(zView, store, deferOutputBias: true)
        let t = profiler.start()
        defer { profiler.stop(.elementwise, t) }
        Scalar.bernoulliLogLikelihood(
            logits: logits.pointer, bias: decoder.outputBias(store), targets: x.pointer, rows: rows, dim: configuration.dataDimension,
            repeat: samplesPerExample, logLikelihood: logLikelihood.pointer,
            probabilities: keepProbabilities ? probabilities.pointer : nil)
        standardNormalLogDensity(zView, into: logPrior.pointer)
        diagonalGaussianLogDensity(epsilon: epsilonView, logStd: logStdView, samplesPerExample: samplesPerExample,
                                   into: logPosterior.pointer)
        logImportanceWeights(logLikelihood: logLikelihood.pointer, logPrior: logPrior.pointer,
                             logPosterior: logPosterior.pointer, count: rows, into: logWeightsBuffer.pointer)
        return logWeights
    }

    // MARK: Backward

    /// Accumulates into `store.gradients` the gradient of
    ///
    ///     loss = −scale · Σ_b Σ_k ω_{b,k} · log w_{b,k}     (ω held fixed)
    ///
    /// where ω = `weights` (B, K) is ∂bound/∂ log w (see `boundWeights`).
    /// With ω = w̃ and scale = 1/B this is the pathwise gradient of −mean L_K
    /// (MATH.md §3): θ through log p(x|z), φ through z = μ + s ε and through
    /// q's own parameters.
    public func backward(boundWeights omega: MatrixView<Scalar>, scale: Scalar) {
        guard let x = input else { preconditionFailure("backward before forward") }
        let K = samplesPerExample, k = configuration.latentDimension, d = configuration.dataDimension
        precondition(omega.rows == examples && omega.columns == K)
        // g_{b,j} = ∂loss/∂ log w_{b,j}
        let g = weights.pointer
        for b in 0..<examples { for j in 0..<K { g[b * K + j] = -scale * omega[b, j] } }

        // Decoder: ∂loss/∂ℓ = g · (x − σ(ℓ)), then back to z.
        let dLogits = decoder.outputGradient
        let p = probabilities.pointer, xp = x.pointer
        var t = profiler.start()
        for r in 0..<examples * K {
            let gr = g[r], xr = xp + (r / K) * x.rowStride, pr = p + r * d, dr = dLogits.pointer + r * d
            for i in 0..<d { dr[i] = gr * (xr[i] - pr[i]) }
        }
        profiler.stop(.elementwise, t)
        decoder.backward(dx: latentGradientView, store)

        // Prior and the path of log q through z:
        //   ∂log r/∂z = −z,   ∂(−log q)/∂z = +(z − μ)/s² = ε/s.
        let dz = latentGradient.pointer, zp = z.pointer, eps = epsilon.pointer, s = std.pointer
        for b in 0..<examples {
            for j in 0..<K {
                let r = b * K + j, gr = g[r]
                for i in 0..<k { dz[r * k + i] += gr * (-zp[r * k + i] + eps[r * k + i] / s[b * k + i]) }
            }
        }
        // z = μ + s ε: ∂z/∂μ = 1, ∂z/∂log s = s ε; plus q's direct dependence on (μ, log s):
        //   ∂(−log q)/∂μ|_z = −ε/s,   ∂(−log q)/∂log s|_z = 1 − ε².
        let dMu = meanGradient.pointer, dLogS = logStdGradient.pointer
        for b in 0..<examples {
            for i in 0..<k {
                var sumMu: Scalar = 0, sumLogS: Scalar = 0
                let si = s[b * k + i]
                for j in 0..<K {
                    let r = (b * K + j) * k + i
                    let gr = g[b * K + j]
                    sumMu += dz[r] - gr * eps[r] / si
                    sumLogS += dz[r] * si * eps[r] + gr * (1 - eps[r] * eps[r])
                }
                dMu[b * k + i] = sumMu
                dLogS[b * k + i] = sumLogS
            }
        }

        // Heads and trunk.
        let h = encoderTrunk.output
        let dh = encoderTrunk.outputGradient
        t = profiler.start()
        meanHead.backward(dx: dh, dy: meanView(meanGradient), x: h, store, ones: encoderTrunk.onesVector)
        logStdHead.backward(dx: dh, dy: meanView(logStdGradient), x: h, store, ones: encoderTrunk.onesVector,
                            accumulateInput: true)
        profiler.stop(.gemm, t)
        encoderTrunk.backward(dx: nil, store)
    }

    /// One training-step gradient: encode, sample K, log weights, bound and
    /// backward. Accumulates ∇(−lossScale · Σ_b bound_b) into
    /// `store.gradients` (lossScale defaults to 1/B: the mean) and returns the
    /// per-example bounds (B), valid until the next call.
    @discardableResult
    @_specialize(exported: true, where Scalar == Float)
    public func accumulateGradient(
        _ x: MatrixView<Scalar>, objective: Objective, samplesPerExample K: Int, using rng: Xoshiro256,
        lossScale: Scalar? = nil
    ) -> UnsafeMutableBufferPointer<Scalar> {
        encode(x)
        sample(samplesPerExample: K, using: rng)
        let lw = computeLogWeights(keepProbabilities: true)
        let bounds = boundScratch(examples)
        bound(objective, logWeights: lw, into: bounds)
        let omega = MatrixView(weights.pointer, rows: examples, columns: K)
        boundWeights(objective, logWeights: lw, into: omega)
        backward(boundWeights: omega, scale: lossScale ?? 1 / Scalar(examples))
        return UnsafeMutableBufferPointer(start: bounds, count: examples)
    }

    private let boundsBuffer = Tensor<Scalar>(shape: [0])
    private func boundScratch(_ n: Int) -> UnsafeMutablePointer<Scalar> {
        if boundsBuffer.capacity < n { boundsBuffer.replace(shape: [n]) }
        boundsBuffer.reshape([n])
        return boundsBuffer.pointer
    }

    /// Floating-point operations of the GEMMs of one training step (forward
    /// and backward) with B examples and K samples each, counted exactly from
    /// the layer shapes: 2·rows·in·out per product; the backward has two
    /// products per layer (weights and inputs) except the encoder's first,
    /// which needs no input gradient. Bias sums (GEMV) are not counted.
    public func gemmFlopsPerStep(examples B: Int, samplesPerExample K: Int) -> Double {
        let encoderLayers = encoderTrunk.layers + [meanHead, logStdHead]
        var flops = 0.0
        for (i, layer) in encoderLayers.enumerated() {
            let product = 2 * Double(B) * Double(layer.inputSize) * Double(layer.outputSize)
            flops += product * (i == 0 ? 2 : 3)
        }
        for layer in decoder.layers {
            flops += 3 * 2 * Double(B * K) * Double(layer.inputSize) * Double(layer.outputSize)
        }
        return flops
    }

    /// Floating-point operations of the GEMMs that evaluate log weights for
    /// N examples with k samples each (forward only).
    public func gemmFlopsForLogWeights(examples N: Int, samplesPerExample k: Int) -> Double {
        let encoder = (encoderTrunk.layers + [meanHead, logStdHead]).reduce(0.0) { $0 + 2 * Double(N) * Double($1.inputSize * $1.outputSize) }
        let decoderFlops = decoder.layers.reduce(0.0) { $0 + 2 * Double(N) * Double(k) * Double($1.inputSize * $1.outputSize) }
        return encoder + decoderFlops
    }

    // MARK: Views

    public var logWeights: MatrixView<Scalar> { MatrixView(logWeightsBuffer.pointer, rows: examples, columns: samplesPerExample) }
    public var meanView: MatrixView<Scalar> { meanView(mean) }
    var logStdView: MatrixView<Scalar> { meanView(logStd) }
    var zView: MatrixView<Scalar> { MatrixView(z.pointer, rows: examples * samplesPerExample, columns: configuration.latentDimension) }
    var epsilonView: MatrixView<Scalar> { MatrixView(epsilon.pointer, rows: examples * samplesPerExample, columns: configuration.latentDimension) }
    var latentGradientView: MatrixView<Scalar> { MatrixView(latentGradient.pointer, rows: examples * samplesPerExample, columns: configuration.latentDimension) }
    private func meanView(_ t: Tensor<Scalar>) -> MatrixView<Scalar> { MatrixView(t.pointer, rows: examples, columns: configuration.latentDimension) }

    /// μ (B, k) and log s (B, k) of the last `encode`.
    public var encoderMean: MatrixView<Scalar> { meanView(mean) }
    public var encoderLogStd: MatrixView<Scalar> { meanView(logStd) }

    /// Named parameter tensors, in layout order.
    public var parameterSlots: [ParameterSlot] { store.layout.slots }
}
