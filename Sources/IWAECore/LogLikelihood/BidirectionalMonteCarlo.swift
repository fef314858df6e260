import IWAELinearAlgebra

/// Examples simulated from the model itself, (z, x) ~ p(z) p(x|z): the data
/// x (N, D) and the latent rows that made it, one (N, k_l) tensor per layer.
/// Each z is an exact sample of the posterior p(z|x) of its x.
public struct SimulatedExamples<Scalar: BLASScalar> {
    public let data: Tensor<Scalar>
    public let latents: [Tensor<Scalar>]
}

/// Bidirectional Monte Carlo (Grosse, Ghahramani and Adams 2015) on data
/// simulated from the model: forward AIS from the prior, a stochastic lower
/// bound of log p(x), and reverse AIS from the exact posterior sample, a
/// stochastic upper bound. The true log p(x) lies between them.
public struct BDMCEstimate: Sendable {
    public var lower: AISEstimate
    public var upper: AISEstimate
    /// Mean upper bound − mean lower bound (nats): how far AIS with these
    /// settings can be from log p(x) at most, up to Monte Carlo error.
    public var gap: Double { upper.meanLogLikelihood - lower.meanLogLikelihood }
    /// The simulated examples' exact mean log p(x) (nats) where the model is
    /// linear-Gaussian (`exactLogLikelihood`), which the bounds must contain;
    /// nil otherwise. (Package: the library's users call `exactLogLikelihood`.)
    package var exactMeanLogLikelihood: Double?
}

extension VariationalAutoencoder {
    /// N examples (z, x) ~ p(z) p(x|z): z top down from the prior (as AIS
    /// starts), then x from p(x|z₁) (Bernoulli draws of σ(f(z₁)), or f(z₁) + σ ε),
    /// example n from its own stream `Xoshiro256.rowSeed(seed, row: n)`.
    public func simulate(examples n: Int, seed: UInt64) throws -> SimulatedExamples<Scalar> {
        precondition(n >= 1)
        let streams = (0..<n).map { Xoshiro256(seed: Xoshiro256.rowSeed(seed, row: $0)) }
        let state = LatentState<Scalar>(rows: n, dimensions: configuration.latentDimensions)
        try drawFromPrior(state, noise: .perExample(streams))
        let D = configuration.dataDimension
        let data = Tensor<Scalar>(shape: [n, D])
        decodeMeans(state.latent(0), into: data.pointer)
        switch likelihood {
        case .bernoulli:
            for b in 0..<n { for d in 0..<D { data[b * D + d] = streams[b].uniform(Scalar.self) < data[b * D + d] ? 1 : 0 } }
        case .gaussian(let gaussian):
            let variances = gaussian.featureVariances(store)
            for b in 0..<n {
                let noise = streams[b].standardNormals(count: D, Scalar.self)
                for d in 0..<D { data[b * D + d] += Scalar.sqrt(variances[d]) * noise[d] }
            }
        }
        releaseBuffers()
        return SimulatedExamples(data: data, latents: state.z.enumerated().map { l, z in
            Tensor(shape: [n, state.dimensions[l]], values: Array(UnsafeBufferPointer(start: z.pointer, count: n * state.dimensions[l])))
        })
    }
}

extension ModelWorkers {
    /// BDMC on N examples simulated from the model (`simulate` with `seed`):
    /// forward AIS (seed + 1) and reverse AIS from the simulated z (seed + 2),
    /// both with `settings`, on every worker.
    @_specialize(exported: true, where Scalar == Float)
    public func bidirectionalMonteCarlo(examples n: Int, settings: AISSettings, seed: UInt64) throws -> BDMCEstimate {
        let simulated = try model.simulate(examples: n, seed: seed)
        let lower = try annealedImportanceSampling(simulated.data.matrix, settings: settings, seed: seed &+ 1)
        let upper = try annealedImportanceSampling(simulated.data.matrix, settings: settings, seed: seed &+ 2,
                                                   reverseFrom: simulated.latents.map(\.matrix))
        let exact = model.isLinearGaussian ? try model.exactLogLikelihood(simulated.data.matrix) : nil
        return BDMCEstimate(lower: lower, upper: upper, exactMeanLogLikelihood: exact.map { $0.reduce(0, +) / Double(n) })
    }
}
