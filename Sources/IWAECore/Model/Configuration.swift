import RealModule
import IWAELinearAlgebra

/// The architecture of a model (MATH.md §1): what a checkpoint must carry to
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

    /// The IWAE paper's one-stochastic-layer model: encoder D–200–200–(μ, σ)
    /// with k = 50, decoder 50–200–200–D, tanh.
    public init(dataDimension: Int, latentDimension: Int = 50, encoderHidden: [Int] = [200, 200],
                decoderHidden: [Int] = [200, 200], activation: Activation = .tanh) {
        self.dataDimension = dataDimension
        self.latentDimension = latentDimension
        self.encoderHidden = encoderHidden
        self.decoderHidden = decoderHidden
        self.activation = activation
    }

    /// Checks every extent; throws a one-line error naming the bad value.
    public func validate() throws {
        guard dataDimension >= 1 else { throw IWAEError.invalidArgument("data dimension must be at least 1, got \(dataDimension)") }
        guard latentDimension >= 1 else { throw IWAEError.invalidArgument("latent dimension must be at least 1, got \(latentDimension)") }
        for width in encoderHidden + decoderHidden where width < 1 {
            throw IWAEError.invalidArgument("hidden widths must be at least 1, got \(width)")
        }
        let parameters = [dataDimension] + encoderHidden + [2 * latentDimension]
        let decoder = [latentDimension] + decoderHidden + [dataDimension]
        var total = 0
        for sizes in [parameters, decoder] {
            for i in 0..<sizes.count - 1 {
                let (product, overflow) = sizes[i].multipliedReportingOverflow(by: sizes[i + 1])
                guard !overflow, product < 1 << 32 else { throw IWAEError.invalidArgument("layer \(sizes[i])×\(sizes[i + 1]) is too large") }
                total += product
            }
        }
        guard total < 1 << 31 else { throw IWAEError.invalidArgument("model has too many parameters (\(total))") }
    }
}

/// Which bound a training step climbs (MATH.md §2).
public enum Objective: String, Codable, Sendable, CaseIterable {
    /// Monte Carlo ELBO, `(1/K) Σ_k log w_k`.
    case elbo
    /// IWAE bound, `logsumexp_k(log w_k) − log K`.
    case iwae
}
