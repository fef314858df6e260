import IWAELinearAlgebra

/// Which bound a training step climbs (Mathematics §2).
public enum BoundKind: String, Codable, Sendable, CaseIterable {
    /// Monte Carlo ELBO, `(1/K) Σ_k log w_k`.
    case elbo
    /// IWAE bound, `logsumexp_k(log w_k) − log K`.
    case iwae
    /// ELBO with the closed-form KL, `(1/K) Σ_k log p(x|z_k) − KL(q ‖ r)`.
    case elboAnalytic = "elbo-analytic"
    /// Rainforth et al. (2018): the mean of M independent IWAE-K bounds over
    /// M·K draws, `(1/M) Σ_m [logsumexp_k(log w_mk) − log K]`.
    case miwae
    /// Rainforth et al. (2018): `β·ELBO + (1−β)·IWAE-K` over the same K draws.
    case ciwae
    /// Rainforth et al. (2018): from one set of M·K draws, the decoder (and
    /// prior) climb IWAE-(M·K), the encoder MIWAE(M, K).
    case piwae
}

/// What a training step maximizes and how its gradient is estimated: the
/// bound (with its M groups or its β), K importance samples per example (per
/// group), the encoder's gradient estimator and the score function's
/// baseline (Mathematics §2–3).
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
    /// K, importance samples per example (per group for MIWAE and PIWAE):
    /// `--k` on the command line, `k` in `metrics.jsonl`; this name below.
    public let samplesPerExample: Int
    /// The encoder's gradient estimator (θ and λ always take the
    /// normalized-weight gradient).
    public let estimator: GradientEstimator
    /// The score function's control variate.
    public let baseline: ScoreBaseline
    /// M, the groups of K draws of MIWAE and PIWAE (1 for the other bounds).
    public let groups: Int
    /// β of CIWAE, the ELBO's share (nil for the other bounds).
    public let beta: Double?

    /// Draws per example, M·K: what the model draws and `LogWeights` holds
    /// per example (`drawsPerExample` wherever M·K is meant).
    public var drawsPerExample: Int { groups * samplesPerExample }

    /// The defaults of `iwae train`: IWAE with K = 5, pathwise gradients.
    public static let standard = Objective(checked: .iwae, samplesPerExample: 5, estimator: .reparam, baseline: .none, groups: 1, beta: nil)

    /// Checks the combination; throws `IWAEError.invalidArgument` with one
    /// line naming what does not fit:
    /// - K is at least 1 (its upper end is the memory a batch of B·K draws
    ///   needs: `TrainingOptions.checkMemory(for:)`);
    /// - `elbo-analytic` differentiates its KL in closed form: pathwise only;
    /// - DReG is for the IWAE bound and its groups (iwae, miwae, piwae);
    /// - the VIMCO baseline goes with the score function and needs K > 1
    ///   (and is not defined for the CIWAE mixture);
    /// - M ≥ 1, and other than 1 only for miwae and piwae; M·K fits in an Int;
    /// - β in [0, 1] for ciwae, and only there.
    public init(_ bound: BoundKind = .iwae, samplesPerExample K: Int = 5, estimator: GradientEstimator = .reparam,
                baseline: ScoreBaseline = .none, groups M: Int = 1, beta: Double? = nil) throws {
        guard K >= 1 else { throw IWAEError.invalidArgument("k must be at least 1, got \(K)") }
        guard M >= 1 else { throw IWAEError.invalidArgument("m must be at least 1, got \(M)") }
        if M != 1 && bound != .miwae && bound != .piwae {
            throw IWAEError.invalidArgument("--m (groups of K draws) is for miwae and piwae, not \(bound.rawValue)")
        }
        guard M.multipliedReportingOverflow(by: K).overflow == false else {
            throw IWAEError.invalidArgument("m × k overflows (m = \(M), k = \(K))")
        }
        if bound == .ciwae {
            guard let beta else { throw IWAEError.invalidArgument("ciwae needs --beta, the ELBO's share in [0, 1]") }
            guard beta.isFinite, (0...1).contains(beta) else {
                throw IWAEError.invalidArgument("--beta must be in [0, 1], got \(beta)")
            }
        } else if beta != nil {
            throw IWAEError.invalidArgument("--beta is for ciwae, not \(bound.rawValue)")
        }
        if bound == .elboAnalytic && estimator != .reparam {
            throw IWAEError.invalidArgument("estimator \(estimator.rawValue) does not apply to elbo-analytic (its KL is differentiated in closed form); use reparam")
        }
        if estimator == .dreg && ![.iwae, .miwae, .piwae].contains(bound) {
            throw IWAEError.invalidArgument("estimator dreg is for the IWAE bound: use --objective iwae (or miwae, piwae)")
        }
        if baseline == .vimco {
            guard estimator == .score else { throw IWAEError.invalidArgument("--baseline vimco goes with --estimator score") }
            guard K > 1 else { throw IWAEError.invalidArgument("--baseline vimco needs k > 1 (leave-one-out)") }
            guard bound != .ciwae else { throw IWAEError.invalidArgument("--baseline vimco is not defined for ciwae") }
        }
        self.init(checked: bound, samplesPerExample: K, estimator: estimator, baseline: baseline, groups: M, beta: beta)
    }

    private init(checked bound: BoundKind, samplesPerExample: Int, estimator: GradientEstimator, baseline: ScoreBaseline,
                 groups: Int, beta: Double?) {
        self.bound = bound
        self.samplesPerExample = samplesPerExample
        self.estimator = estimator
        self.baseline = baseline
        self.groups = groups
        self.beta = beta
    }

    /// This objective with K draws per example (per group) instead (checked again).
    public func with(samplesPerExample K: Int) throws -> Objective {
        try Objective(bound, samplesPerExample: K, estimator: estimator, baseline: baseline, groups: groups, beta: beta)
    }

    /// A name for tables and logs: `iwae`, `miwae(8,8)`, `ciwae(β=0.5)`, …
    public var label: String {
        switch bound {
        case .miwae, .piwae: return "\(bound.rawValue)(\(groups),\(samplesPerExample))"
        case .ciwae: return "ciwae(β=\(beta ?? 0))"
        default: return bound.rawValue
        }
    }

    /// Checks what the objective asks of a model: `elbo-analytic` needs one
    /// stochastic layer (the KL of a stack has no closed form).
    package func check(for configuration: ModelConfiguration) throws {
        if bound == .elboAnalytic && configuration.stochasticLayers > 1 {
            throw IWAEError.invalidArgument("elbo-analytic needs one stochastic layer (the KL of a stack has no closed form); use elbo or iwae")
        }
    }

    /// The estimator and baseline a name of `iwae grad-stats --estimators`
    /// stands for: a `GradientEstimator`, or `score-vimco` (also `vimco`)
    /// for the score function with VIMCO's baseline.
    package static func estimator(named name: String) throws -> (GradientEstimator, ScoreBaseline) {
        if name == "score-vimco" || name == "vimco" { return (.score, .vimco) }
        guard let estimator = GradientEstimator(rawValue: name) else {
            throw IWAEError.invalidArgument("unknown estimator '\(name)' (expected \(GradientEstimator.allCases.map(\.rawValue).joined(separator: ", ")) or score-vimco)")
        }
        return (estimator, .none)
    }
}
