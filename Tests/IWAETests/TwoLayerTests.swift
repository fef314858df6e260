import IWAE
import RealModule
import XCTest

/// The two-stochastic-layer model (Burda et al.'s second architecture):
/// log w = log p(x|z₁) + log p(z₁|z₂) + log p(z₂) − log q(z₁|x) − log q(z₂|z₁).
final class TwoLayerTests: XCTestCase {
    /// `upperHidden` [] makes both upper networks linear (p(z₁|z₂) with a constant variance).
    func model(encoder: CovarianceKind = .diagonal, prior: PriorKind = .standard, likelihood: LikelihoodKind = .bernoulli,
               upperHidden: [Int] = [3], seed: UInt64 = 3) -> VariationalAutoencoder<Double> {
        var c = ModelConfiguration(dataDimension: 5, latentDimension: 3, encoderHidden: [4], decoderHidden: [4],
                                   encoder: encoder, prior: prior, likelihood: likelihood, sigma: 0.8,
                                   learnSigma: likelihood == .gaussian)
        c.upperLayers = [StochasticLayer(dimension: 2, encoderHidden: upperHidden, decoderHidden: upperHidden)]
        let model = VariationalAutoencoder<Double>(c, seed: seed)
        let rng = Xoshiro256(seed: seed + 1)
        for i in 0..<model.store.values.count { model.store.values[i] += 0.3 * (rng.uniform(Double.self) - 0.5) }
        return model
    }

    func batch(_ likelihood: LikelihoodKind = .bernoulli) -> Tensor<Double> {
        let rng = Xoshiro256(seed: 8)
        return Tensor(shape: [3, 5], values: (0..<15).map { _ in
            likelihood == .bernoulli ? Double(rng.next() % 2) : rng.uniform(Double.self) })
    }


    func finiteDifferences(_ model: VariationalAutoencoder<Double>, _ indices: Range<Int>, _ f: () -> Double) -> [Double] {
        centralDifferences(model.store.values.pointer, indices, f)
    }

    /// The log weights against the definition, term by term, computed here
    /// from the model's own μ, s and draws with the densities written out.
    func testLogWeightsAreTheSumOfTheFiveTerms() throws {
        let model = model(prior: .learned)
        let x = batch()
        let encoded = try model.encode(x.matrix)
        let K = 4
        let lw = try model.logWeights(encoded, drawsPerExample: K, using: Xoshiro256(seed: 5), keepForBackward: false)
        let q1 = model.encoders[0], q2 = model.encoders[1], p1 = model.conditionalPriors[0]
        let z1 = q1.samplesView(K), z2 = q2.samplesView(1)
        func logNormal(_ y: [Double], _ m: [Double], _ s: [Double]) -> Double {
            zip(zip(y, m), s).reduce(0.0) { acc, e in
                let u = (e.0.0 - e.0.1) / e.1
                return acc - 0.5 * u * u - Double.log(e.1) - 0.5 * Double.log(2 * Double.pi)
            }
        }
        let priorMean = model.store.layout.slot(named: "prior.mean")!, priorLogVariance = model.store.layout.slot(named: "prior.log_variance")!
        for b in 0..<3 {
            for j in 0..<K {
                let r = b * K + j
                let y1 = (0..<3).map { z1[r, $0] }, y2 = (0..<2).map { z2[r, $0] }
                let logQ1 = logNormal(y1, (0..<3).map { q1.means[b, $0] }, (0..<3).map { q1.scales[b, $0] })
                let logQ2 = logNormal(y2, (0..<2).map { q2.means[r, $0] }, (0..<2).map { q2.scales[r, $0] })
                let logP1 = logNormal(y1, (0..<3).map { p1.means[r, $0] }, (0..<3).map { p1.scales[r, $0] })
                let logP2 = logNormal(y2, (0..<2).map { model.store.value(priorMean)[$0] },
                                      (0..<2).map { Double.exp(0.5 * model.store.value(priorLogVariance)[$0]) })
                let expected = lw.logLikelihood[r] + logP1 + logP2 - logQ1 - logQ2
                XCTAssertEqual(lw.values[b, j], expected, accuracy: 1e-11, "b=\(b) j=\(j)")
            }
        }
        XCTAssertTrue(lw.klDivergence.allSatisfy { $0.isNaN }, "no closed-form KL over two layers")
    }

    /// The pathwise gradient of every parameter against central differences,
    /// for both objectives, both encoder covariances, both priors and likelihoods.
    func testPathwiseGradientOfEveryParameter() throws {
        for encoder in CovarianceKind.allCases {
            for (prior, likelihood, upper) in [(PriorKind.standard, LikelihoodKind.bernoulli, [3]), (.learned, .gaussian, []), (.learned, .bernoulli, [3, 2])] {
                for bound in [BoundKind.iwae, .elbo] {
                    let model = model(encoder: encoder, prior: prior, likelihood: likelihood, upperHidden: upper)
                    XCTAssertEqual(model.store.layout.slot(named: "decoder2.log_std") != nil, upper.isEmpty)
                    let x = batch(likelihood)
                    model.store.zeroGradients()
                    let objective = try Objective(bound, samplesPerExample: 3)
                    try model.accumulateGradient(x.matrix, objective: objective, using: Xoshiro256(seed: 7))
                    let numeric = finiteDifferences(model, 0..<model.store.values.count) { loss(model, x, objective, seed: 7) }
                    assertClose(model.store.gradients.array, numeric, rtol: 1e-5, atol: 1e-7, "\(encoder) \(prior) \(likelihood) \(bound)")
                }
            }
        }
    }

    /// θ and λ take the same gradient whatever the encoder's estimator: the
    /// finite difference of the bound with the draws fixed. (φ's estimators
    /// are checked in expectation below.)
    func testGenerativeGradientUnderEveryEstimator() throws {
        for (estimator, baseline, bound) in [(GradientEstimator.score, ScoreBaseline.none, BoundKind.iwae), (.score, .vimco, .elbo),
                                                 (.stl, .none, .elbo), (.stl, .none, .iwae), (.dreg, .none, .iwae)] {
            let model = model(prior: .learned)
            let x = batch()
            model.store.zeroGradients()
            let objective = try Objective(bound, samplesPerExample: 3, estimator: estimator, baseline: baseline)
            try model.accumulateGradient(x.matrix, objective: objective, using: Xoshiro256(seed: 9))
            let theta = model.encoderParameters.upperBound..<model.store.values.count
            let numeric = finiteDifferences(model, theta) { loss(model, x, objective, seed: 9) }
            assertClose(Array(model.store.gradients.array[theta]), numeric, rtol: 1e-5, atol: 1e-7, "\(estimator) \(baseline) \(bound)")
        }
    }

    /// Score (with and without VIMCO), DReG (IWAE) and STL (ELBO) agree with
    /// the pathwise gradient of both encoders in expectation (4.5 standard errors).
    func testEncoderEstimatorsAgreeInExpectation() throws {
        let model = model(seed: 11)
        let x = Tensor<Double>(shape: [2, 5], values: [1, 0, 1, 1, 0, 0, 1, 1, 0, 1])
        let phi = model.encoderParameters
        func moments(_ bound: BoundKind, _ estimator: GradientEstimator, _ baseline: ScoreBaseline = .none,
                     draws: Int, seed: UInt64) throws -> GradientMoments {
            try gradientMoments(model, x, Objective(bound, samplesPerExample: 4, estimator: estimator, baseline: baseline),
                                draws: draws, seed: seed)
        }
        for bound in [BoundKind.iwae, .elbo] {
            let reference = try moments(bound, .reparam, draws: 30_000, seed: 1)
            var candidates = [("score+vimco", try moments(bound, .score, .vimco, draws: 30_000, seed: 3))]
            candidates.append(bound == .iwae ? ("dreg", try moments(bound, .dreg, draws: 20_000, seed: 4))
                                             : ("stl", try moments(bound, .stl, draws: 20_000, seed: 5)))
            for (name, m) in candidates {
                let bad = disagreements(m, reference, phi)
                XCTAssertTrue(bad.isEmpty, "\(bound) \(name): parameters \(bad)")
                // The check has power: the estimates are not all zero.
                XCTAssertGreaterThan(m.summary(phi).meanNorm, 0.01)
            }
        }
    }
}

/// The exact-likelihood check with two stochastic layers: on data from a
/// linear-Gaussian chain z₂ → z₁ → x, a model of the same form (linear
/// decoder and p(z₁|z₂) with constant variances, learned prior and σ) has a
/// closed-form p(x); full-covariance linear q(z₁|x) and q(z₂|z₁) can hold
/// the true posterior, so the trained bound must reach it at every K.
final class TwoLayerTightnessTests: XCTestCase {
    func testBoundReachesTheExactLikelihoodOfALinearGaussianChain() throws {
        let generator = LinearGaussianData(dimension: 6, latentDimension: 3, noise: 0.5, seed: 3, upperDimension: 2)
        let train = generator.examples(3000, sampleSeed: 1), test = generator.examples(300, sampleSeed: 2)
        var c = ModelConfiguration(dataDimension: 6, latentDimension: 3, encoderHidden: [], decoderHidden: [], encoder: .full,
                                   prior: .learned, likelihood: .gaussian, sigma: 1, learnSigma: true)
        c.upperLayers = [StochasticLayer(dimension: 2, encoderHidden: [], decoderHidden: [])]
        let gaps = try tightnessGaps(VariationalAutoencoder<Float>(c, seed: 1), train: train, test: test, epochs: 60)
        print("two-layer linear-Gaussian chain: gaps at K = 1, 5, 50: \(gaps)")
        for (k, gap) in zip([1, 5, 50], gaps) { XCTAssertLessThan(abs(gap), 0.05, "K=\(k): gap \(gap)") }
    }
}

/// The parameter count a configuration announces (what a checkpoint is
/// checked against before anything is allocated) is the layout's.
final class ParameterCountTests: XCTestCase {
    func testParameterCountMatchesTheLayout() {
        var configurations = [ModelConfiguration(dataDimension: 784), ModelConfiguration.twoLayer(dataDimension: 784)]
        for encoder in CovarianceKind.allCases {
            for prior in PriorKind.allCases {
                var c = ModelConfiguration(dataDimension: 7, latentDimension: 3, encoderHidden: [], decoderHidden: [5],
                                           encoder: encoder, prior: prior, likelihood: .gaussian, learnSigma: true)
                configurations.append(c)
                c.upperLayers = [StochasticLayer(dimension: 2, encoderHidden: [4], decoderHidden: []),
                                 StochasticLayer(dimension: 3, encoderHidden: [], decoderHidden: [2, 2])]
                configurations.append(c)
            }
        }
        for c in configurations {
            XCTAssertEqual(c.parameterCount, VariationalAutoencoder<Float>(c).store.values.count, "\(c)")
        }
        var huge = ModelConfiguration(dataDimension: 784, latentDimension: Int.max, encoder: .full)
        XCTAssertNil(huge.parameterCount)
        XCTAssertThrowsError(try huge.validate())
        huge.latentDimension = 1 << 40
        XCTAssertThrowsError(try huge.validate())
    }
}
