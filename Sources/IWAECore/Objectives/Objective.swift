import IWAELinearAlgebra

/// Which bound a training step climbs (Mathematics §2).
public enum BoundKind: String, Codable, Sendable, CaseIterable {
    /// Monte Carlo ELBO, `(1/K) Σ_k log w_k`.
    case elbo
    /// IWAE bound, `logsumexp_k(log w_k) − log K`.
    case iwae
    /// ELBO with the closed-form KL, `(1/K) Σ_k log p(x|z_k) − KL(q ‖ r)`.
    case elboAnalytic = "elbo-analytic"
}

/// What a training step maximizes and how its gradient is estimated: the
/// bound, K importance samples per example, the encoder's gradient estimator
/// and the score function's baseline (Mathematics §2–3).
///
/// The one place these are checked is the throwing initializer: a value of
/// this type is a combination the engine computes, so the trainer, the
/// workers and the model take it as one argument and check nothing again.
/// The command line builds one from `--objective`, `--k`, `--estimator` and
/// `--baseline`; checkpoints store its four fields in the training record's
/// options (`TrainingOptions`), and decoding goes through the same initializer.
///
///     let objective = try Objective(.iwae, samplesPerExample: 50, estimator: .dreg)
public struct Objective: Equatable, Sendable {
    /// The bound.
    public let bound: BoundKind
    /// K, importance samples per example (`--k`).
    public let samplesPerExample: Int
    /// The encoder's gradient estimator (θ and λ always take the
    /// normalized-weight gradient).
    public let estimator: GradientEstimator
    /// The score function's control variate.
    public let baseline: ScoreBaseline

    /// The defaults of `iwae train`: IWAE with K = 5, pathwise gradients.
    public static let standard = Objective(checked: .iwae, samplesPerExample: 5, estimator: .reparam, baseline: .none)

    /// Checks the combination; throws `IWAEError.invalidArgument` with one
    /// line naming what does not fit:
    /// - K is at least 1 (its upper end is the memory a batch of B·K draws
    ///   needs: `TrainingOptions.checkMemory(for:)`);
    /// - `elbo-analytic` differentiates its KL in closed form: pathwise only;
    /// - DReG is for the IWAE bound;
    /// - the VIMCO baseline goes with the score function and needs K > 1.
    public init(_ bound: BoundKind = .iwae, samplesPerExample K: Int = 5, estimator: GradientEstimator = .reparam,
                baseline: ScoreBaseline = .none) throws {
        guard K >= 1 else { throw IWAEError.invalidArgument("k must be at least 1, got \(K)") }
        if bound == .elboAnalytic && estimator != .reparam {
            throw IWAEError.invalidArgument("estimator \(estimator.rawValue) does not apply to elbo-analytic (its KL is differentiated in closed form); use reparam")
        }
        if estimator == .dreg && bound != .iwae {
            throw IWAEError.invalidArgument("estimator dreg is for the IWAE bound: use --objective iwae")
        }
        if baseline == .vimco {
            guard estimator == .score else { throw IWAEError.invalidArgument("--baseline vimco goes with --estimator score") }
            guard K > 1 else { throw IWAEError.invalidArgument("--baseline vimco needs k > 1 (leave-one-out)") }
        }
        self.init(checked: bound, samplesPerExample: K, estimator: estimator, baseline: baseline)
    }

    private init(checked bound: BoundKind, samplesPerExample: Int, estimator: GradientEstimator, baseline: ScoreBaseline) {
        self.bound = bound
        self.samplesPerExample = samplesPerExample
        self.estimator = estimator
        self.baseline = baseline
    }

    /// This objective with K draws per example instead (checked again).
    public func with(samplesPerExample K: Int) throws -> Objective {
        try Objective(bound, samplesPerExample: K, estimator: estimator, baseline: baseline)
    }

    /// Checks what the objective asks of a model: `elbo-analytic` needs one
    /// stochastic layer (the KL of a stack has no closed form).
    public func check(for configuration: ModelConfiguration) throws {
        if bound == .elboAnalytic && configuration.stochasticLayers > 1 {
            throw IWAEError.invalidArgument("elbo-analytic needs one stochastic layer (the KL of a stack has no closed form); use elbo or iwae")
        }
    }

    /// The estimator and baseline a name of `iwae grad-stats --estimators`
    /// stands for: a `GradientEstimator`, or `score-vimco` (also `vimco`)
    /// for the score function with VIMCO's baseline.
    public static func estimator(named name: String) throws -> (GradientEstimator, ScoreBaseline) {
        if name == "score-vimco" || name == "vimco" { return (.score, .vimco) }
        guard let estimator = GradientEstimator(rawValue: name) else {
            throw IWAEError.invalidArgument("unknown estimator '\(name)' (expected \(GradientEstimator.allCases.map(\.rawValue).joined(separator: ", ")) or score-vimco)")
        }
        return (estimator, .none)
    }
}
