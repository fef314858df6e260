import RealModule
import IWAELinearAlgebra

/// The architecture of a model (Mathematics §1): what a checkpoint must carry to
/// rebuild it.
public struct ModelConfiguration: Codable, Equatable, Sendable {
    /// D, the data dimension (784 for 28×28 images).
    public var dataDimension: Int
    /// k, the latent dimension.
    public var latentDimension: Int
    /// Hidden widths of the encoder trunk, D → … → (μ, log s).
    public var encoderHidden: [Int]
    /// Hidden widths of the decoder, k → … → D.
    public var decoderHidden: [Int]
    /// Nonlinearity after every hidden layer.
    public var activation: Activation
    /// q_φ(z|x): diagonal or full covariance.
    public var encoder: CovarianceKind
    /// r_λ(z): the standard normal, or learned N(λ₁, diag(λ₂)).
    public var prior: PriorKind
    /// p_θ(x|z): Bernoulli logits, or Gaussian N(f(z), σ²I).
    public var likelihood: LikelihoodKind
    /// σ of the Gaussian likelihood (its initial value when learned).
    public var sigma: Double
    /// Whether σ² of the Gaussian likelihood is a trained parameter.
    public var learnSigma: Bool
    /// With `learnSigma`: one learned variance per feature, N(f(z), diag(σ₁², …, σ_D²)),
    /// instead of one for all (features whose residual noise differs: a user's table).
    public var sigmaPerFeature = false
    /// Stochastic layers above z₁ (empty: the one-layer model). Layer l adds
    /// z_{l+1} with q(z_{l+1}|z_l) (covariance `encoder`) and a diagonal
    /// Gaussian p(z_l|z_{l+1}); the prior is over the top layer.
    public var upperLayers: [StochasticLayer] = []

    /// The IWAE paper's one-stochastic-layer model: encoder D–200–200–(μ, σ)
    /// with k = 50, decoder 50–200–200–D, tanh.
    public init(dataDimension: Int, latentDimension: Int = 50, encoderHidden: [Int] = [200, 200],
                decoderHidden: [Int] = [200, 200], activation: Activation = .tanh,
                encoder: CovarianceKind = .diagonal, prior: PriorKind = .standard,
                likelihood: LikelihoodKind = .bernoulli, sigma: Double = 1, learnSigma: Bool = false) {
        self.dataDimension = dataDimension
        self.latentDimension = latentDimension
        self.encoderHidden = encoderHidden
        self.decoderHidden = decoderHidden
        self.activation = activation
        self.encoder = encoder
        self.prior = prior
        self.likelihood = likelihood
        self.sigma = sigma
        self.learnSigma = learnSigma
    }

    /// The IWAE paper's two-stochastic-layer model: q(z₁|x) D–200–200–100,
    /// q(z₂|z₁) 100–100–100–50, p(z₁|z₂) 50–100–100–100, p(x|z₁) 100–200–200–D, tanh.
    public static func twoLayer(dataDimension: Int) -> ModelConfiguration {
        var c = ModelConfiguration(dataDimension: dataDimension, latentDimension: 100)
        c.upperLayers = [StochasticLayer(dimension: 50, encoderHidden: [100, 100], decoderHidden: [100, 100])]
        return c
    }

    /// The dimensions of z₁ … z_L.
    public var latentDimensions: [Int] { [latentDimension] + upperLayers.map(\.dimension) }
    /// L, the number of stochastic layers.
    public var stochasticLayers: Int { 1 + upperLayers.count }
    /// The dimension of the top layer, where the prior lives.
    public var topDimension: Int { upperLayers.last?.dimension ?? latentDimension }

    enum CodingKeys: String, CodingKey {
        case dataDimension, latentDimension, encoderHidden, decoderHidden, activation, encoder, prior, likelihood, sigma,
             learnSigma, sigmaPerFeature, upperLayers
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(dataDimension, forKey: .dataDimension)
        try c.encode(latentDimension, forKey: .latentDimension)
        try c.encode(encoderHidden, forKey: .encoderHidden)
        try c.encode(decoderHidden, forKey: .decoderHidden)
        try c.encode(activation, forKey: .activation)
        try c.encode(self.encoder, forKey: .encoder)
        try c.encode(prior, forKey: .prior)
        try c.encode(likelihood, forKey: .likelihood)
        try c.encode(sigma, forKey: .sigma)
        try c.encode(learnSigma, forKey: .learnSigma)
        // Written only when set: the checkpoints of every other model keep their bytes.
        if sigmaPerFeature { try c.encode(true, forKey: .sigmaPerFeature) }
        try c.encode(upperLayers, forKey: .upperLayers)
    }

    public init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(dataDimension: try c.decode(Int.self, forKey: .dataDimension),
                  latentDimension: try c.decode(Int.self, forKey: .latentDimension),
                  encoderHidden: try c.decode([Int].self, forKey: .encoderHidden),
                  decoderHidden: try c.decode([Int].self, forKey: .decoderHidden),
                  activation: try c.decode(Activation.self, forKey: .activation),
                  encoder: try c.decode(CovarianceKind.self, forKey: .encoder),
                  prior: try c.decode(PriorKind.self, forKey: .prior),
                  likelihood: try c.decode(LikelihoodKind.self, forKey: .likelihood),
                  sigma: try c.decode(Double.self, forKey: .sigma), learnSigma: try c.decode(Bool.self, forKey: .learnSigma))
        upperLayers = try c.decodeIfPresent([StochasticLayer].self, forKey: .upperLayers) ?? []
        sigmaPerFeature = try c.decodeIfPresent(Bool.self, forKey: .sigmaPerFeature) ?? false
    }

    /// The number of parameters of the model this configuration builds
    /// (its flat buffer), by checked arithmetic: nil when it overflows.
    public var parameterCount: Int? {
        /// Weights and biases of an affine stack through `sizes`.
        func stack(_ sizes: [Int]) -> [[Int]] {
            (0..<Swift.max(sizes.count - 1, 0)).flatMap { [[sizes[$0], sizes[$0 + 1]], [sizes[$0 + 1]]] }
        }
        /// A Gaussian conditional from `input` through `hidden` to dimension k.
        func conditional(_ input: Int, _ hidden: [Int], _ k: Int, full: Bool, constantVariance: Bool) -> [[Int]]? {
            let h = hidden.last ?? input
            guard let kk = CheckedSize.product([k, k]) else { return nil }
            let heads: [[Int]] = full ? [[k, h], [k], [kk, h], [kk], [k, h], [k]]
                                      : [[k, h], [k]] + (constantVariance ? [[k]] : [[k, h], [k]])
            return stack([input] + hidden) + heads
        }
        let full = encoder == .full, dimensions = latentDimensions
        guard var terms = conditional(dataDimension, encoderHidden, latentDimension, full: full, constantVariance: false) else { return nil }
        for (below, layer) in zip(dimensions, upperLayers) {
            guard let q = conditional(below, layer.encoderHidden, layer.dimension, full: full, constantVariance: false),
                  let p = conditional(layer.dimension, layer.decoderHidden, below, full: false,
                                      constantVariance: layer.decoderHidden.isEmpty) else { return nil }
            terms += q + p
        }
        if prior == .learned { terms += [[topDimension], [topDimension]] }
        terms += stack([latentDimension] + decoderHidden + [dataDimension])
        if likelihood == .gaussian && learnSigma { terms.append([sigmaPerFeature ? dataDimension : 1]) }
        return CheckedSize.sumOfProducts(terms)
    }

    /// Checks every extent; throws a one-line error naming the bad value.
    public func validate() throws {
        guard dataDimension >= 1 else { throw IWAEError.invalidArgument("data dimension must be at least 1, got \(dataDimension)") }
        guard latentDimension >= 1 else { throw IWAEError.invalidArgument("latent dimension must be at least 1, got \(latentDimension)") }
        for width in encoderHidden + decoderHidden + upperLayers.flatMap({ $0.encoderHidden + $0.decoderHidden }) where width < 1 {
            throw IWAEError.invalidArgument("hidden widths must be at least 1, got \(width)")
        }
        for layer in upperLayers where layer.dimension < 1 {
            throw IWAEError.invalidArgument("latent dimension must be at least 1, got \(layer.dimension)")
        }
        guard sigma.isFinite, sigma > 0 else { throw IWAEError.invalidArgument("sigma must be finite and positive, got \(sigma)") }
        if sigmaPerFeature && !(likelihood == .gaussian && learnSigma) {
            throw IWAEError.invalidArgument("a variance per feature needs a Gaussian likelihood with a learned σ² (--likelihood gaussian --learn-sigma)")
        }
        guard let count = parameterCount, count < 1 << 31 else {
            throw IWAEError.invalidArgument("the model is too large (more than 2^31 parameters)")
        }
    }
}

/// A stochastic layer z_{l+1} above z_l: its dimension, the hidden widths of
/// q(z_{l+1}|z_l) (z_l → … → z_{l+1}) and of p(z_l|z_{l+1}) (z_{l+1} → … → z_l).
/// p(z_l|z_{l+1}) is a diagonal Gaussian whose mean and log-standard
/// deviation come from its network; with no hidden layers it is the
/// linear-Gaussian N(W z_{l+1} + b, diag(s²)) with s a parameter of its own.
public struct StochasticLayer: Codable, Equatable, Sendable {
    public var dimension: Int
    public var encoderHidden: [Int]
    public var decoderHidden: [Int]

    public init(dimension: Int, encoderHidden: [Int], decoderHidden: [Int]) {
        self.dimension = dimension
        self.encoderHidden = encoderHidden
        self.decoderHidden = decoderHidden
    }

    enum CodingKeys: String, CodingKey { case dimension, encoderHidden, decoderHidden }

    public init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(dimension: try c.decode(Int.self, forKey: .dimension), encoderHidden: try c.decode([Int].self, forKey: .encoderHidden),
                  decoderHidden: try c.decode([Int].self, forKey: .decoderHidden))
    }
}

/// The covariance of a Gaussian conditional such as the encoder (Mathematics §1).
public enum CovarianceKind: String, Codable, Sendable, CaseIterable {
    /// `diag(s²)` from a log-standard-deviation head.
    case diagonal
    /// `Σ = A Aᵀ + diag(softplus(d))`, factored by Cholesky.
    case full
}

/// The prior r_λ(z) (Mathematics §1).
public enum PriorKind: String, Codable, Sendable, CaseIterable {
    /// N(0, I), fixed.
    case standard
    /// N(λ₁, diag(λ₂)), λ₂ = exp(ρ), trained.
    case learned
}

/// The decoder's likelihood p_θ(x|z) (Mathematics §1).
public enum LikelihoodKind: String, Codable, Sendable, CaseIterable {
    /// Bernoulli with logits f_θ(z), for binary images.
    case bernoulli
    /// N(f_θ(z), σ²I), for real-valued data.
    case gaussian
}
