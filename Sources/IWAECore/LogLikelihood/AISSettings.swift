import RealModule

/// The settings of annealed importance sampling (Mathematics §9), checked
/// once, when made: T intermediate distributions, L leapfrog steps per HMC
/// transition, C chains per example whose weights make the estimate, P
/// pilot chains per example that adapt the step size and never enter it.
public struct AISSettings: Equatable, Sendable {
    /// How β_t rises from 0 to 1.
    public enum Schedule: String, Sendable, CaseIterable {
        /// β_t = t/T.
        case linear
        /// β_t = (σ(δ(2t/T − 1)) − σ(−δ)) / (σ(δ) − σ(−δ)), δ = 4: small steps
        /// near both ends, where log p(x|z) changes fastest (Grosse et al. 2015).
        case sigmoid
    }

    /// Where the chains start.
    public enum Start: String, Sendable, CaseIterable {
        /// z ~ p(z); f_t = p(z) p(x|z)^{β_t}.
        case prior
        /// z ~ q(z|x); f_t = q(z|x)^{1−β_t} p(x, z)^{β_t}.
        case encoder
    }

    /// T.
    public let steps: Int
    /// L.
    public let leapfrogSteps: Int
    /// C.
    public let chains: Int
    /// P (0: the step size stays at `initialStepSize`).
    public let pilotChains: Int
    public let schedule: Schedule
    public let start: Start
    /// ε at t = 1.
    public let initialStepSize: Double
    /// The pilots' acceptance rate the step size is steered toward.
    package static let targetAcceptance = 0.65

    /// The ranges `iwae evaluate --method ais` accepts.
    package static let stepRange = 1...1_000_000, leapfrogRange = 1...1000, chainRange = 1...100_000, pilotRange = 0...1000

    /// Throws one line naming the first value out of range.
    public init(steps: Int = 1000, leapfrogSteps: Int = 10, chains: Int = 16, pilotChains: Int = 4,
                schedule: Schedule = .sigmoid, start: Start = .prior, initialStepSize: Double = 0.05) throws {
        func check(_ value: Int, _ range: ClosedRange<Int>, _ option: String) throws {
            guard range.contains(value) else {
                throw IWAEError.invalidArgument("\(option) must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
            }
        }
        try check(steps, Self.stepRange, "--ais-steps")
        try check(leapfrogSteps, Self.leapfrogRange, "--leapfrog")
        try check(chains, Self.chainRange, "--chains")
        try check(pilotChains, Self.pilotRange, "--pilot-chains")
        guard initialStepSize.isFinite, initialStepSize > 0, initialStepSize <= 10 else {
            throw IWAEError.invalidArgument("--step-size must be in (0, 10], got \(initialStepSize)")
        }
        self.steps = steps
        self.leapfrogSteps = leapfrogSteps
        self.chains = chains
        self.pilotChains = pilotChains
        self.schedule = schedule
        self.start = start
        self.initialStepSize = initialStepSize
    }

    /// β_0 = 0 < β_1 < … < β_T = 1.
    public var betas: [Double] {
        let T = Double(steps)
        switch schedule {
        case .linear:
            return (0...steps).map { Double($0) / T }
        case .sigmoid:
            let delta = 4.0
            func sigmoid(_ u: Double) -> Double { 1 / (1 + Double.exp(-u)) }
            let low = sigmoid(-delta), high = sigmoid(delta)
            return (0...steps).map { t in t == steps ? 1 : (sigmoid(delta * (2 * Double(t) / T - 1)) - low) / (high - low) }
        }
    }
}
