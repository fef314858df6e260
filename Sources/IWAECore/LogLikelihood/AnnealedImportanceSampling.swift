import IWAELinearAlgebra
import RealModule

/// The AIS estimate of log p(x) per example (Mathematics §9) and how its
/// chains fared.
public struct AISEstimate: Sendable {
    public var settings: AISSettings
    /// log p̂(x) = log mean_c exp(w_c) over the C chains of each example (nats).
    public var logLikelihoods: [Double]
    /// The Monte Carlo standard error of each, from the spread of its C
    /// weights (`monteCarloStandardError`; NaN for C = 1).
    public var standardErrors: [Double]
    /// The estimating chains' mean HMC acceptance probability, per example.
    public var acceptanceRates: [Double]
    /// Each example's step size at the last transition.
    public var finalStepSizes: [Double]
    /// HMC proposals whose energy was NaN or infinite (each rejected).
    public var divergentProposals: Int

    public var examples: Int { logLikelihoods.count }
    /// Mean log p̂(x).
    public var meanLogLikelihood: Double { logLikelihoods.reduce(0, +) / Double(Swift.max(examples, 1)) }
    /// Standard error of the mean over examples.
    public var standardError: Double { standardErrorOfMean(logLikelihoods) }
}

extension AISEstimate {
    /// The estimate over the union of disjoint sets of examples, `parts` in order.
    package init(settings: AISSettings, concatenating parts: [AISEstimate]) {
        self.init(settings: settings, logLikelihoods: parts.flatMap(\.logLikelihoods), standardErrors: parts.flatMap(\.standardErrors),
                  acceptanceRates: parts.flatMap(\.acceptanceRates), finalStepSizes: parts.flatMap(\.finalStepSizes),
                  divergentProposals: parts.reduce(0) { $0 + $1.divergentProposals })
    }
}

extension VariationalAutoencoder {
    /// Estimates log p(x) for each row of x (N, D) by annealed importance
    /// sampling (Mathematics §9): C + P chains per example start at
    /// z ~ p₀ and move through f_t(z) = p₀(z) exp(β_t ℓ(z)) by HMC (L leapfrog
    /// steps of size ε_b), p₀ = p(z) and ℓ = log p(x|z₁) from the prior,
    /// p₀ = q(z|x) and ℓ = log p(x, z) − log q(z|x) from the encoder; the
    /// estimating chains' weights
    ///
    ///     w_c = Σ_{t=1}^{T} (β_t − β_{t−1}) ℓ(z_{c,t−1}),     log p̂(x) = log mean_c exp(w_c)
    ///
    /// make the estimate. Example b's step size ε_b is steered after each
    /// transition by its P pilot chains' acceptance ā,
    /// ε_b ← ε_b · exp(0.3 (ā − 0.65)); the pilots never enter the
    /// estimate, so the estimating chains' kernels do not depend on their
    /// own draws and the estimate stays unbiased.
    ///
    /// With `reverseFrom`, exact posterior samples z* of x's rows (one
    /// (N, k_l) matrix per layer, as `simulate` makes them), AIS runs the
    /// other way (BDMC's reverse chain, Grosse et al. 2015): every chain
    /// starts at z*, the transitions follow β_{T−1} … β_1, and
    ///
    ///     w_c = Σ_{t=T}^{1} (β_{t−1} − β_t) log p(x | z_c),   E[exp(w_c)] = 1/p(x),   log p̂ = −log mean_c exp(w_c)
    ///
    /// a stochastic upper bound of log p(x).
    ///
    /// Rows of all chains of `examplesPerPass` examples go through the same
    /// products at once; example b draws from its own stream
    /// `Xoshiro256.rowSeed(seed, row: firstRow + b)`. The parameters'
    /// gradients are not computed. Buffers are released at the end.
    public func annealedImportanceSampling(_ x: MatrixView<Scalar>, settings: AISSettings, seed: UInt64, firstRow: Int = 0,
                                           reverseFrom posterior: [MatrixView<Scalar>]? = nil,
                                           progress: ((Int) -> Void)? = nil) throws -> AISEstimate {
        store.roundValuesForProducts()
        let passes = PassQueue(rows: x.rows, perPass: Self.aisExamplesPerPass(settings))
        let parts = try annealedImportanceSampling(x, settings: settings, seed: seed, firstRow: firstRow, reverseFrom: posterior,
                                                   passes: passes, progress: progress)
        return AISEstimate(settings: settings, concatenating: passes.inPassOrder([parts]))
    }

    /// `annealedImportanceSampling` of the passes this model takes from
    /// `passes` (made for the rows of `x` and `aisExamplesPerPass`), one
    /// estimate per pass, by pass; `progress` is called with the examples
    /// all takers of `passes` have done. After an error no one takes another
    /// pass. The buffers are released at the end.
    package func annealedImportanceSampling(_ x: MatrixView<Scalar>, settings: AISSettings, seed: UInt64, firstRow: Int,
                                            reverseFrom posterior: [MatrixView<Scalar>]?, passes: PassQueue,
                                            progress: ((Int) -> Void)?) throws -> [Int: AISEstimate] {
        precondition(passes.rows == x.rows && passes.perPass == Self.aisExamplesPerPass(settings))
        precondition(posterior.map { $0.count == configuration.stochasticLayers && $0.allSatisfy { $0.rows == x.rows } } ?? true)
        precondition(x.columns == configuration.dataDimension)
        if settings.start == .encoder && !encoderStartIsSupported {
            throw IWAEError.invalidArgument("--ais-start encoder needs diagonal encoders above z₁ (this model's are full-covariance); use --ais-start prior")
        }
        store.accumulatesParameterGradients = false
        defer {
            store.accumulatesParameterGradients = true
            releaseBuffers()
        }
        let C = settings.chains, M = C + settings.pilotChains, perPass = passes.perPass
        let betas = settings.betas, dimensions = configuration.latentDimensions
        let rowsCapacity = Swift.min(perPass, Swift.max(x.rows, 1)) * M
        let current = LatentState<Scalar>(rows: rowsCapacity, dimensions: dimensions)
        let streams = (0..<perPass).map { _ in Xoshiro256(seed: 0) }
        return try passes.takeEach(progress: progress) { rows in
            let start = rows.lowerBound, n = rows.count
            var estimate = AISEstimate(settings: settings, logLikelihoods: [], standardErrors: [], acceptanceRates: [],
                                       finalStepSizes: [], divergentProposals: 0)
            for b in 0..<n { streams[b].reseed(Xoshiro256.rowSeed(seed, row: firstRow + start + b)) }
            let state = n * M == current.rows ? current : LatentState<Scalar>(rows: n * M, dimensions: dimensions)
            let chains = try AISChains(model: self, state: state, data: x.rows(start..<start + n), chainsPerExample: M,
                                       noise: .perExample(Array(streams[0..<n])), start: settings.start, stepSize: settings.initialStepSize)
            if let posterior {
                for (l, k) in dimensions.enumerated() {
                    for r in 0..<n * M { (state.z[l].pointer + r * k).update(from: posterior[l].pointer + (start + r / M) * posterior[l].rowStride, count: k) }
                }
                try chains.evaluate()
            }
            var logWeights = [Double](repeating: 0, count: n * C), acceptance = [Double](repeating: 0, count: n)
            for i in 1...settings.steps {
                // Forward: t = i, weight by β_t − β_{t−1}, then move under f_t. Reverse: t = T + 1 − i, weight by
                // β_{t−1} − β_t, then move under f_{t−1}.
                let t = posterior == nil ? i : settings.steps + 1 - i
                let step = posterior == nil ? betas[t] - betas[t - 1] : betas[t - 1] - betas[t]
                for b in 0..<n { for c in 0..<C { logWeights[b * C + c] += step * Double(state.logRatio[b * M + c]) } }
                guard i < settings.steps else { break }
                let accepted = try chains.transition(beta: posterior == nil ? betas[t] : betas[t - 1], leapfrogSteps: settings.leapfrogSteps,
                                                     streams: streams)
                for b in 0..<n {
                    for c in 0..<C { acceptance[b] += accepted[b * M + c] }
                    if settings.pilotChains > 0 {
                        let rate = (C..<M).reduce(0.0) { $0 + accepted[b * M + $1] } / Double(settings.pilotChains)
                        chains.stepSizes[b] = Swift.min(10, Swift.max(1e-6, chains.stepSizes[b] * Double.exp(0.3 * (rate - AISSettings.targetAcceptance))))
                    }
                }
            }
            for b in 0..<n {
                let w = Array(logWeights[b * C..<(b + 1) * C])
                let logSum = logSumExp(w), logSumOfSquares = logSumExp(w.map { 2 * $0 })
                let logMean = logSum - Double.log(Double(C))
                estimate.logLikelihoods.append(posterior == nil ? logMean : -logMean)
                estimate.standardErrors.append(monteCarloStandardError(logSum: logSum, logSumOfSquares: logSumOfSquares, count: C))
                estimate.acceptanceRates.append(settings.steps > 1 ? acceptance[b] / Double(C * (settings.steps - 1)) : .nan)
                estimate.finalStepSizes.append(chains.stepSizes[b])
            }
            estimate.divergentProposals += chains.divergentProposals
            return estimate
        }
    }

    /// Examples an AIS pass holds: about 512 chain rows, at least one
    /// example (enough rows for the products to run near their peak, few
    /// enough that 100 examples make passes for both workers).
    package static func aisExamplesPerPass(_ settings: AISSettings) -> Int {
        Swift.max(1, 512 / (settings.chains + settings.pilotChains))
    }
}

/// The HMC chains of one AIS pass: their state, a saved copy for rejected
/// proposals, momenta and per-example step sizes (Mathematics §9).
package final class AISChains<Scalar: BLASScalar> {
    package let model: VariationalAutoencoder<Scalar>
    package let state: LatentState<Scalar>
    let saved: LatentState<Scalar>
    package let momentum: [Tensor<Scalar>]
    let data: MatrixView<Scalar>
    let chainsPerExample: Int
    let noise: Noise
    let start: AISSettings.Start
    package var stepSizes: [Double]
    package var divergentProposals = 0
    private let ones: Tensor<Scalar>
    private let scratch: Tensor<Scalar>
    /// log q(z|x) and its gradient by layer (encoder start only).
    private let logQ: Tensor<Scalar>
    private let qGradient: [Tensor<Scalar>]
    private var startEnergy: [Double]
    private var acceptance: [Double]

    /// Chains started from the prior or the encoder, their densities evaluated.
    package init(model: VariationalAutoencoder<Scalar>, state: LatentState<Scalar>, data: MatrixView<Scalar>, chainsPerExample M: Int,
                 noise: Noise, start: AISSettings.Start = .prior, stepSize: Double) throws {
        self.model = model
        self.state = state
        self.data = data
        chainsPerExample = M
        self.noise = noise
        self.start = start
        logQ = Tensor(shape: [start == .encoder ? state.rows : 0])
        qGradient = start == .encoder ? state.dimensions.map { Tensor(shape: [state.rows * $0]) } : []
        saved = LatentState(rows: state.rows, dimensions: state.dimensions)
        momentum = state.dimensions.map { Tensor(shape: [state.rows * $0]) }
        stepSizes = [Double](repeating: stepSize, count: data.rows)
        ones = Tensor(shape: [state.rows])
        ones.fill(1)
        scratch = Tensor(shape: [state.rows])
        startEnergy = [Double](repeating: 0, count: state.rows)
        acceptance = [Double](repeating: 0, count: state.rows)
        switch start {
        case .prior: try model.drawFromPrior(state, noise: noise)
        case .encoder: try model.drawFromEncoder(state, data: data, chainsPerExample: M, noise: noise)
        }
        try evaluate()
    }

    /// The state's start and ratio parts and their gradients at its z.
    package func evaluate() throws {
        try model.jointDensity(state, data: data, chainsPerExample: chainsPerExample, ones: ones.pointer, scratch: scratch.pointer)
        if start == .encoder {
            try model.moveStartToEncoder(state, chainsPerExample: chainsPerExample, qGradient: qGradient, logQ: logQ.pointer,
                                         scratch: scratch.pointer, ones: ones.pointer)
        }
    }

    /// U(z) + ½‖p‖², U = −(log p₀(z) + β ℓ(z)), per row, in Double.
    package func energy(_ r: Int, beta: Double) -> Double {
        var kinetic = 0.0
        for (l, k) in state.dimensions.enumerated() {
            let p = momentum[l].pointer + r * k
            for i in 0..<k { kinetic += Double(p[i]) * Double(p[i]) }
        }
        return -(Double(state.logStart[r]) + beta * Double(state.logRatio[r])) + 0.5 * kinetic
    }

    /// p ← p + (fraction · ε_b) ∇ log f_β(z) for every row,
    /// ∇ log f_β = ∇ log p₀ + β ∇ℓ.
    func kick(_ fraction: Double, beta: Double) {
        let M = chainsPerExample, b0 = Scalar(beta)
        for (l, k) in state.dimensions.enumerated() {
            let p = momentum[l].pointer, g = state.startGradient[l].pointer, gr = state.ratioGradient[l].pointer
            for r in 0..<state.rows {
                let s = Scalar(fraction * stepSizes[r / M])
                for i in 0..<k { p[r * k + i] += s * (g[r * k + i] + b0 * gr[r * k + i]) }
            }
        }
    }

    /// z ← z + ε_b p for every row.
    func drift() {
        let M = chainsPerExample
        for (l, k) in state.dimensions.enumerated() {
            let z = state.z[l].pointer, p = momentum[l].pointer
            for r in 0..<state.rows {
                let s = Scalar(stepSizes[r / M])
                for i in 0..<k { z[r * k + i] += s * p[r * k + i] }
            }
        }
    }

    /// L leapfrog steps of the Hamiltonian U(z) + ½‖p‖², from the state's
    /// gradient: half a kick, then L drifts each followed by a kick (the last
    /// a half), the density evaluated after each drift.
    package func leapfrog(beta: Double, steps L: Int) throws {
        kick(0.5, beta: beta)
        for step in 1...L {
            drift()
            try evaluate()
            kick(step < L ? 1 : 0.5, beta: beta)
        }
    }

    /// One HMC transition leaving f_β invariant, for every row: momenta
    /// p ~ N(0, I), L leapfrog steps, and a Metropolis test on the change of
    /// U + ½‖p‖² (a NaN or infinite energy is rejected and counted).
    /// Returns each row's acceptance probability min(1, e^{−ΔH}).
    package func transition(beta: Double, leapfrogSteps L: Int, streams: [Xoshiro256]) throws -> [Double] {
        saved.copy(from: state)
        for (l, k) in state.dimensions.enumerated() { noise.fillStandardNormal(momentum[l].pointer, count: state.rows * k) }
        for r in 0..<state.rows { startEnergy[r] = energy(r, beta: beta) }
        try leapfrog(beta: beta, steps: L)
        let M = chainsPerExample
        for r in 0..<state.rows {
            let end = energy(r, beta: beta), change = end - startEnergy[r]
            let probability = change.isNaN || !end.isFinite ? 0 : Swift.min(1, Double.exp(-change))
            if !end.isFinite || end.isNaN { divergentProposals += 1 }
            acceptance[r] = probability
            let u: Double = streams[r / M].uniform()
            if !(u < probability) { state.copyRow(r, from: saved) }
        }
        return acceptance
    }
}
