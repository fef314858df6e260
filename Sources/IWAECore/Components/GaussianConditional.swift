import IWAELinearAlgebra
import RealModule

/// A Gaussian conditional N(μ(h), Σ(h)) whose parameters come from a network
/// of the conditioning value h (Mathematics §1): the encoder q_φ(z|x), and later
/// q(z₂|z₁) or p(z₁|z₂) of a deeper model.
///
///     h (B, in) → trunk (tanh …) → μ (B, k)
///                                 → log s (B, k)                 diagonal: Σ = diag(s²), L = diag(s)
///                                 → A (B, k·k), d (B, k)         full: Σ = A Aᵀ + diag(softplus(d)) = L Lᵀ
///
/// Parameters (`name` is the prefix, "encoder" for q(z|x)):
///
///     name.i.weight (H_{i+1}, H_i), name.i.bias        trunk in → H … (activation)
///     name.mean.weight (k, H), .bias (k)               μ
///     name.log_std.weight (k, H), .bias (k)            log s      (diagonal)
///     name.cov_factor.weight (k·k, H), .bias (k·k)     A, row-major k×k (full)
///     name.cov_diag.weight (k, H), .bias (k)           d          (full)
///     name.log_std (k)                                 log s      (diagonal, constant: `varianceDependsOnInput` false)
///
/// A pass is `forward` (parameters of the B distributions), `sample` (K
/// draws each, rows example-major: row b·K + j is draw j of example b), the
/// log densities and the KL, then `backward` from ∂loss/∂z. The covariance
/// kind is decided here and nowhere else. Buffers grow on demand and are
/// reused; `releaseBuffers` gives them back.
package final class GaussianConditional<Scalar: BLASScalar> {
    package let covariance: CovarianceKind
    /// k, the dimension of the distribution.
    package let dimension: Int
    package let inputDimension: Int
    let trunk: MLP<Scalar>?
    let meanHead: Linear
    /// log s (diagonal) or A (full); nil for a constant variance.
    let scaleHead: Linear?
    /// log s independent of h (the linear-Gaussian conditional N(W h + b, diag(s²))).
    let constantLogScale: ParameterSlot?
    /// d (full only).
    let diagonalHead: Linear?

    /// B of the last `forward`.
    package private(set) var examples = 0
    var input: MatrixView<Scalar>?
    private var exampleCapacity = 0
    private var sampleCapacity = 0

    // Per example, (B, k) unless noted.
    let mean = Tensor<Scalar>(shape: [0])
    /// log s (diagonal) or A (B, k·k) (full), the raw head output.
    let scaleRaw = Tensor<Scalar>(shape: [0])
    /// d before softplus (full).
    let diagonalRaw = Tensor<Scalar>(shape: [0])
    /// softplus(d), the diagonal added to A Aᵀ (full).
    let covarianceDiagonal = Tensor<Scalar>(shape: [0])
    /// s (diagonal) or L (B, k, k), lower triangular with a zero upper part (full).
    let scale = Tensor<Scalar>(shape: [0])
    /// ½ log det Σ per example (B).
    let halfLogDet = Tensor<Scalar>(shape: [0])
    // Per draw, (B·K, k).
    let epsilon = Tensor<Scalar>(shape: [0])
    let samples = Tensor<Scalar>(shape: [0])
    /// ∂loss/∂z, written by the consumers of z before `backward`.
    let sampleGradient = Tensor<Scalar>(shape: [0])
    /// v = L⁻ᵀ ε (what the score-function and path-only estimators need).
    let whitened = Tensor<Scalar>(shape: [0])
    // Backward, per example.
    let meanGradient = Tensor<Scalar>(shape: [0])
    /// log s̄ (B, k) or L̄ (B, k, k).
    let scaleGradient = Tensor<Scalar>(shape: [0])
    /// Σ̄ (B, k, k) (full).
    let covarianceGradient = Tensor<Scalar>(shape: [0])
    /// Ā (B, k·k) (full).
    let scaleRawGradient = Tensor<Scalar>(shape: [0])
    /// d̄ (B, k) (full).
    let diagonalRawGradient = Tensor<Scalar>(shape: [0])
    let choleskyWork = Tensor<Scalar>(shape: [0])
    /// B ones, for the heads' bias gradients when there is no trunk.
    let ones = Tensor<Scalar>(shape: [0])

    /// Optional timing of the phases (GEMM, elementwise, sampling, covariance).
    package var profiler: PhaseProfiler? { didSet { trunk?.profiler = profiler } }

    /// Registers the trunk and heads under `name` in `layout`. With
    /// `varianceDependsOnInput` false (diagonal only) log s is a parameter of
    /// its own rather than a function of h.
    package init(inputDimension: Int, hidden: [Int], dimension k: Int, activation: Activation,
                covariance: CovarianceKind, name: String, varianceDependsOnInput: Bool = true, layout: inout ParameterLayout) {
        precondition(varianceDependsOnInput || covariance == .diagonal)
        self.covariance = covariance
        self.dimension = k
        self.inputDimension = inputDimension
        trunk = hidden.isEmpty ? nil : MLP(sizes: [inputDimension] + hidden,
                                           activations: Array(repeating: activation, count: hidden.count),
                                           name: name, layout: &layout)
        let trunkOut = hidden.last ?? inputDimension
        meanHead = Linear(trunkOut, k, name: "\(name).mean", layout: &layout)
        switch covariance {
        case .diagonal:
            scaleHead = varianceDependsOnInput ? Linear(trunkOut, k, name: "\(name).log_std", layout: &layout) : nil
            diagonalHead = nil
        case .full:
            scaleHead = Linear(trunkOut, k * k, name: "\(name).cov_factor", layout: &layout)
            diagonalHead = Linear(trunkOut, k, name: "\(name).cov_diag", layout: &layout)
        }
        constantLogScale = varianceDependsOnInput ? nil : layout.register("\(name).log_std", shape: [k])
        heads = [meanHead] + [scaleHead, diagonalHead].compactMap { $0 }
    }

    /// Glorot weights and zero biases from `rng`; a full covariance starts
    /// near the diagonal model's: small A (×0.1) and softplus(d) = 1.
    package func initialize(_ store: ParameterStore<Scalar>, using rng: Xoshiro256) {
        trunk?.initialize(store, using: rng)
        meanHead.initialize(store, using: rng)
        scaleHead?.initialize(store, using: rng)
        diagonalHead?.initialize(store, using: rng)
        if let constantLogScale { store.value(constantLogScale).update(repeating: 0, count: dimension) }
        if let diagonalHead, let scaleHead {
            let a = store.value(scaleHead.weight)
            for i in 0..<scaleHead.weight.count { a[i] *= 0.1 }
            let d = store.value(diagonalHead.bias)
            for i in 0..<dimension { d[i] = Scalar(Double.log(Double.exp(1) - 1)) }
        }
    }

    /// Every affine layer, trunk first (for FLOP counts).
    package var layers: [Linear] { (trunk?.layers ?? []) + heads }
    /// The layers that read the trunk's output.
    let heads: [Linear]
    /// Every parameter slot.
    package var parameterSlots: [ParameterSlot] { layers.flatMap(\.slots) + (constantLogScale.map { [$0] } ?? []) }
    var isFull: Bool { covariance == .full }
    /// Columns of the scale head: k, or k·k.
    var scaleWidth: Int { isFull ? dimension * dimension : dimension }

    /// The buffers of one value set per example: (B, k), (B, k·k or k), …
    private var perExample: [Tensor<Scalar>] {
        [mean, meanGradient, diagonalRaw, diagonalRawGradient, covarianceDiagonal, scaleRaw, scale, scaleGradient,
         scaleRawGradient, covarianceGradient, choleskyWork, halfLogDet, ones]
    }
    /// The buffers of one row per draw, (B·K, k).
    private var perDraw: [Tensor<Scalar>] { [epsilon, samples, sampleGradient, whitened] }

    /// Sizes every buffer for B examples with K draws each (grows only).
    func reserve(examples b: Int, drawsPerExample K: Int) {
        let k = dimension
        if b > exampleCapacity {
            exampleCapacity = b
            for t in [mean, meanGradient, diagonalRaw, diagonalRawGradient, covarianceDiagonal] { t.replace(shape: [b, k]) }
            for t in [scaleRaw, scale, scaleGradient, scaleRawGradient] { t.replace(shape: [b, scaleWidth]) }
            covarianceGradient.replace(shape: [isFull ? b : 0, k, k])
            choleskyWork.replace(shape: [k, k])
            halfLogDet.replace(shape: [b])
            ones.replace(shape: [trunk == nil ? b : 0])
            ones.fill(1)
            trunk?.reserve(rows: b)
        }
        if b * K > sampleCapacity {
            sampleCapacity = b * K
            for t in perDraw { t.replace(shape: [b * K, k]) }
        }
    }

    /// Frees every buffer (they grow again on the next use).
    package func releaseBuffers() {
        exampleCapacity = 0
        sampleCapacity = 0
        for t in perExample + perDraw { t.replace(shape: [0]) }
        trunk?.releaseBuffers()
    }

    /// Bytes held by the buffers.
    package var bufferBytes: Int {
        (perExample + perDraw).reduce(trunk?.bufferBytes ?? 0) { $0 + $1.capacity * MemoryLayout<Scalar>.stride }
    }

    // MARK: Forward

    /// h (B, in) → μ and the scale (s, or L with Σ = L Lᵀ), and ½ log det Σ
    /// per example. Keeps h for the backward.
    ///
    /// Throws `IWAEError.notPositiveDefinite` naming the example when a
    /// covariance cannot be factored.
    package func forward(_ h: MatrixView<Scalar>, _ store: ParameterStore<Scalar>) throws {
        precondition(h.columns == inputDimension)
        reserve(examples: h.rows, drawsPerExample: 1)
        examples = h.rows
        input = h
        let features = trunk.map { $0.forward(h, store, outputReaders: heads) } ?? h
        let roundedFeatures = trunk?.roundedOutput
        var t = profiler.start()
        meanHead.forward(view(mean, dimension), features, store, roundedX: roundedFeatures)
        if let scaleHead {
            scaleHead.forward(view(scaleRaw, scaleWidth), features, store, roundedX: roundedFeatures)
        } else if let constantLogScale {
            for b in 0..<examples { (scaleRaw.pointer + b * dimension).update(from: store.value(constantLogScale), count: dimension) }
        }
        if let diagonalHead { diagonalHead.forward(view(diagonalRaw, dimension), features, store, roundedX: roundedFeatures) }
        profiler.stop(.gemm, t)
        t = profiler.start()
        defer { profiler.stop(.elementwise, t) }
        if isFull {
            let tc = profiler.start()
            defer { profiler.stop(.covariance, tc) }
            try factorCovariances()
        } else {
            let k = dimension
            Scalar.exp(scaleRaw.pointer, scale.pointer, count: examples * k)
            for b in 0..<examples {
                var sum: Scalar = 0
                for i in 0..<k { sum += scaleRaw[b * k + i] }
                halfLogDet[b] = sum
            }
        }
    }

    /// Σ_b = A_b A_bᵀ + diag(softplus(d_b)), then L_b by LAPACK potrf, for every b.
    private func factorCovariances() throws {
        let k = dimension, kk = k * k
        Scalar.softplus(diagonalRaw.pointer, covarianceDiagonal.pointer, count: examples * k)
        batchedGEMM(batch: examples, MatrixView(scale.pointer, rows: k, columns: k), strideC: kk,
                    MatrixView(scaleRaw.pointer, rows: k, columns: k), strideA: kk, .none,
                    MatrixView(scaleRaw.pointer, rows: k, columns: k), strideB: kk, .transposed)
        for b in 0..<examples {
            let sigma = scale.pointer + b * kk
            for i in 0..<k { sigma[i * k + i] += covarianceDiagonal[b * k + i] }
        }
        if let failure = batchedCholesky(scale.pointer, batch: examples, n: k) {
            throw IWAEError.notPositiveDefinite(example: failure.index, info: failure.info)
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

    /// Reparameterized draws: ε ~ N(0, I), z = μ + L ε (L = diag(s) for the
    /// diagonal case); z is (B·K, k), valid until the next `sample`.
    @discardableResult
    package func sample(drawsPerExample K: Int, using rng: Xoshiro256) -> MatrixView<Scalar> {
        sample(drawsPerExample: K, using: .shared(rng))
    }

    /// `sample` with ε from `noise` (one generator, or one per example).
    @discardableResult
    package func sample(drawsPerExample K: Int, using noise: Noise) -> MatrixView<Scalar> {
        precondition(K >= 1)
        reserve(examples: examples, drawsPerExample: K)
        let t = profiler.start()
        defer { profiler.stop(.sampling, t) }
        let k = dimension
        noise.fillStandardNormal(epsilon.pointer, count: examples * K * k)
        let mu = mean.pointer, s = scale.pointer, eps = epsilon.pointer, zp = samples.pointer
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
                let mean = mu + b * k, scale = s + b * k
                for j in 0..<K {
                    let z = zp + (b * K + j) * k, e = eps + (b * K + j) * k
                    for i in 0..<k { z[i] = mean[i] + scale[i] * e[i] }
                }
            }
        }
        return samplesView(K)
    }

    // MARK: Views

    func view(_ t: Tensor<Scalar>, _ columns: Int) -> MatrixView<Scalar> { MatrixView(t.pointer, rows: examples, columns: columns) }
    /// z (B·K, k) of the last `sample` with K draws per example.
    package func samplesView(_ K: Int) -> MatrixView<Scalar> { MatrixView(samples.pointer, rows: examples * K, columns: dimension) }
    func epsilonView(_ K: Int) -> MatrixView<Scalar> { MatrixView(epsilon.pointer, rows: examples * K, columns: dimension) }
    func sampleGradientView(_ K: Int) -> MatrixView<Scalar> { MatrixView(sampleGradient.pointer, rows: examples * K, columns: dimension) }

    /// μ (B, k) of the last `forward`.
    package var means: MatrixView<Scalar> { view(mean, dimension) }
    /// The scale of the last `forward`: s (B, k) diagonal, L (B, k·k) row-major full.
    package var scales: MatrixView<Scalar> { view(scale, scaleWidth) }
}
