import Foundation
@testable import IWAE
import XCTest

/// Annealed importance sampling (Mathematics §9) against its oracles: the
/// gradient of log p(x, z) against central differences in Double, the
/// leapfrog's energy error against ε², HMC's invariance against a Gaussian
/// target known in closed form, and AIS against the exact linear-Gaussian
/// log-likelihood.
final class AISTests: XCTestCase {
    /// A model in Double with every parameter drawn in [−½, ½) (the prior's too).
    func model(likelihood: LikelihoodKind, prior: PriorKind, upper: [StochasticLayer] = [], decoderHidden: [Int] = [4],
               sigmaPerFeature: Bool = false, encoder: CovarianceKind = .diagonal) -> VariationalAutoencoder<Double> {
        var configuration = ModelConfiguration(dataDimension: 6, latentDimension: 3, encoderHidden: [4], decoderHidden: decoderHidden,
                                               encoder: encoder, prior: prior, likelihood: likelihood, sigma: 0.7,
                                               learnSigma: likelihood == .gaussian)
        configuration.upperLayers = upper
        configuration.sigmaPerFeature = sigmaPerFeature
        let model = VariationalAutoencoder<Double>(configuration, seed: 3)
        let rng = Xoshiro256(seed: 4)
        for i in 0..<model.store.values.count { model.store.values[i] = rng.uniform(Double.self) - 0.5 }
        return model
    }

    /// x (N, 6): binary for a Bernoulli model, real otherwise.
    func data(_ model: VariationalAutoencoder<Double>, examples n: Int, seed: UInt64 = 5) -> Tensor<Double> {
        let rng = Xoshiro256(seed: seed)
        let binary = model.configuration.likelihood == .bernoulli
        return Tensor(shape: [n, 6], values: (0..<n * 6).map { _ in binary ? (rng.uniform(Double.self) < 0.5 ? 1 : 0) : rng.uniform(Double.self) * 2 - 1 })
    }

    /// ∂/∂z of log p(z) and of log p(x|z₁), from the model's backward
    /// passes, against central differences in Double: every likelihood and
    /// prior, one layer, and two layers with a hidden and a linear
    /// conditional prior.
    func testJointDensityGradientMatchesCentralDifferences() throws {
        let upper = [[], [StochasticLayer(dimension: 2, encoderHidden: [3], decoderHidden: [3])],
                     [StochasticLayer(dimension: 2, encoderHidden: [], decoderHidden: [])]]
        for likelihood in LikelihoodKind.allCases {
            for prior in PriorKind.allCases {
                for layers in upper {
                    for perFeature in likelihood == .gaussian ? [false, true] : [false] {
                        let model = model(likelihood: likelihood, prior: prior, upper: layers, sigmaPerFeature: perFeature)
                        let x = data(model, examples: 2)
                        let C = 3, rows = 2 * C
                        let state = LatentState<Double>(rows: rows, dimensions: model.configuration.latentDimensions)
                        let rng = Xoshiro256(seed: 9)
                        for z in state.z { for i in 0..<z.count { z[i] = rng.uniform(Double.self) * 3 - 1.5 } }
                        let ones = Tensor<Double>(shape: [rows]), scratch = Tensor<Double>(shape: [rows])
                        ones.fill(1)
                        func evaluate() { try! model.jointDensity(state, data: x.matrix, chainsPerExample: C, ones: ones.pointer, scratch: scratch.pointer) }
                        evaluate()
                        let prior = state.startGradient.map { Array(UnsafeBufferPointer(start: $0.pointer, count: $0.count)) }
                        let lik = Array(UnsafeBufferPointer(start: state.ratioGradient[0].pointer, count: state.ratioGradient[0].count))
                        let label = "\(likelihood) \(prior) \(layers.count + 1) layers\(perFeature ? " σ per feature" : "")"
                        for (l, z) in state.z.enumerated() {
                            let expectedPrior = centralDifferences(z.pointer, 0..<z.count) {
                                evaluate()
                                return (0..<rows).reduce(0.0) { $0 + state.logStart[$1] }
                            }
                            for i in 0..<z.count { XCTAssertEqual(prior[l][i], expectedPrior[i], accuracy: 1e-6 * max(1, abs(expectedPrior[i])), "\(label): ∂log p(z)/∂z\(l + 1)[\(i)]") }
                            guard l == 0 else { continue }
                            let expectedLikelihood = centralDifferences(z.pointer, 0..<z.count) {
                                evaluate()
                                return (0..<rows).reduce(0.0) { $0 + state.logRatio[$1] }
                            }
                            for i in 0..<z.count { XCTAssertEqual(lik[i], expectedLikelihood[i], accuracy: 1e-6 * max(1, abs(expectedLikelihood[i])), "\(label): ∂log p(x|z₁)/∂z₁[\(i)]") }
                        }
                    }
                }
            }
        }
    }

    /// From the encoder, log p₀ = log q(z|x) and ℓ = log p(x, z) − log q(z|x):
    /// their gradients in z against central differences, for a diagonal and
    /// a full-covariance q(z₁|x) and a diagonal two-layer encoder.
    func testEncoderStartGradientMatchesCentralDifferences() throws {
        let two = [StochasticLayer(dimension: 2, encoderHidden: [3], decoderHidden: [3])]
        for (encoder, upper) in [(CovarianceKind.diagonal, [StochasticLayer]()), (.full, []), (.diagonal, two)] {
            let model = model(likelihood: .bernoulli, prior: .learned, upper: upper, encoder: encoder)
            let x = data(model, examples: 2)
            let (chains, _) = try chains(model, x, chains: 3, stepSize: 0.1, start: .encoder)
            let state = chains.state
            let rng = Xoshiro256(seed: 9)
            for z in state.z { for i in 0..<z.count { z[i] += rng.uniform(Double.self) - 0.5 } }
            try chains.evaluate()
            let start = state.startGradient.map { Array(UnsafeBufferPointer(start: $0.pointer, count: $0.count)) }
            let ratio = state.ratioGradient.map { Array(UnsafeBufferPointer(start: $0.pointer, count: $0.count)) }
            for (l, z) in state.z.enumerated() {
                for (part, analytic) in [("log q", start[l]), ("ℓ", ratio[l])] {
                    let expected = centralDifferences(z.pointer, 0..<z.count) {
                        try! chains.evaluate()
                        let values = part == "log q" ? state.logStart : state.logRatio
                        return (0..<state.rows).reduce(0.0) { $0 + values[$1] }
                    }
                    for i in 0..<z.count {
                        XCTAssertEqual(analytic[i], expected[i], accuracy: 1e-6 * max(1, abs(expected[i])), "\(encoder) \(upper.count + 1) layers: ∂\(part)/∂z\(l + 1)[\(i)]")
                    }
                }
            }
        }
    }

    /// Chains of `model` on x with `chains` per example, at a fixed step size.
    func chains(_ model: VariationalAutoencoder<Double>, _ x: Tensor<Double>, chains C: Int, stepSize: Double, seed: UInt64 = 7,
                start: AISSettings.Start = .prior) throws -> (AISChains<Double>, [Xoshiro256]) {
        let streams = (0..<x.matrix.rows).map { Xoshiro256(seed: seed &+ UInt64($0)) }
        let state = LatentState<Double>(rows: x.matrix.rows * C, dimensions: model.configuration.latentDimensions)
        return (try AISChains(model: model, state: state, data: x.matrix, chainsPerExample: C, noise: .perExample(streams), start: start,
                              stepSize: stepSize), streams)
    }

    /// The leapfrog integrator's energy error over a fixed trajectory
    /// (L ε = 0.8) shrinks as ε²: halving ε divides the mean |ΔH| by about 4.
    func testLeapfrogEnergyErrorShrinksAsTheStepSquared() throws {
        for (likelihood, upper) in [(LikelihoodKind.bernoulli, [StochasticLayer]()),
                                    (.gaussian, [StochasticLayer(dimension: 2, encoderHidden: [3], decoderHidden: [3])])] {
            let model = model(likelihood: likelihood, prior: .learned, upper: upper)
            let x = data(model, examples: 4)
            var errors = [Double]()
            for (epsilon, steps) in [(0.1, 8), (0.05, 16), (0.025, 32)] {
                let (chains, _) = try chains(model, x, chains: 8, stepSize: epsilon)
                for (l, k) in chains.state.dimensions.enumerated() {
                    Xoshiro256(seed: 11 + UInt64(l)).fillStandardNormal(chains.momentum[l].pointer, count: chains.state.rows * k)
                }
                let start = (0..<chains.state.rows).map { chains.energy($0, beta: 0.7) }
                try chains.leapfrog(beta: 0.7, steps: steps)
                errors.append((0..<chains.state.rows).reduce(0.0) { $0 + abs(chains.energy($1, beta: 0.7) - start[$1]) } / Double(chains.state.rows))
            }
            for i in 1..<errors.count {
                let ratio = errors[i - 1] / errors[i]
                XCTAssertTrue((3.2...4.8).contains(ratio), "\(likelihood): |ΔH| \(errors) (ratio \(ratio), expected about 4)")
            }
        }
    }

    /// With β fixed, HMC leaves f_β ∝ p(z) p(x|z)^β invariant. On a linear-
    /// Gaussian model f_β is N(m, Σ) with Σ⁻¹ = diag(1/λ₂) + β Vᵀ diag(1/σ²) V,
    /// m = Σ (λ₁/λ₂ + β Vᵀ (x − c)/σ²): 4,000 chains started at exact draws
    /// keep its mean and covariance after 20 transitions (4.5 standard errors).
    func testHMCLeavesTheAnnealedGaussianInvariant() throws {
        let model = model(likelihood: .gaussian, prior: .learned, decoderHidden: [])
        let x = data(model, examples: 1)
        let beta = 0.6, k = 3, D = 6, C = 4000
        // Σ⁻¹ and Σ⁻¹ m in Double.
        guard case .gaussian(let gaussian) = model.likelihood else { return XCTFail() }
        let layer = gaussian.decoder.layers[0]
        let V = model.store.value(layer.weight), c = model.store.value(layer.bias)
        let variances = gaussian.featureVariances(model.store)
        var precision = [Double](repeating: 0, count: k * k), shift = [Double](repeating: 0, count: k)
        for i in 0..<k {
            let (mean, variance) = model.prior.parameters(i, model.store)
            precision[i * k + i] += 1 / variance
            shift[i] += mean / variance
        }
        for d in 0..<D {
            let s2 = variances.count == D ? variances[d] : variances[0]
            for i in 0..<k {
                shift[i] += beta * V[d * k + i] * (x[d] - c[d]) / s2
                for j in 0..<k { precision[i * k + j] += beta * V[d * k + i] * V[d * k + j] / s2 }
            }
        }
        // Σ by Gauss–Jordan (3 × 3), L with L Lᵀ = Σ, m = Σ shift.
        var a = precision, covariance = [Double](repeating: 0, count: k * k)
        for i in 0..<k { covariance[i * k + i] = 1 }
        for p in 0..<k {
            let pivot = a[p * k + p]
            for j in 0..<k { a[p * k + j] /= pivot; covariance[p * k + j] /= pivot }
            for r in 0..<k where r != p {
                let f = a[r * k + p]
                for j in 0..<k { a[r * k + j] -= f * a[p * k + j]; covariance[r * k + j] -= f * covariance[p * k + j] }
            }
        }
        let mean = (0..<k).map { i in (0..<k).reduce(0.0) { $0 + covariance[i * k + $1] * shift[$1] } }
        var factor = [Double](repeating: 0, count: k * k)
        for i in 0..<k { for j in 0...i {
            var sum = covariance[i * k + j]
            for m in 0..<j { sum -= factor[i * k + m] * factor[j * k + m] }
            factor[i * k + j] = i == j ? sum.squareRoot() : sum / factor[j * k + j]
        } }
        let (chains, streams) = try chains(model, x, chains: C, stepSize: 0.3)
        let rng = Xoshiro256(seed: 21), z = chains.state.z[0].pointer
        for r in 0..<C {
            let e = rng.standardNormals(count: k, Double.self)
            for i in 0..<k { z[r * k + i] = mean[i] + (0...i).reduce(0.0) { $0 + factor[i * k + $1] * e[$1] } }
        }
        try chains.evaluate()
        var accepted = 0.0
        for _ in 0..<20 { accepted += try chains.transition(beta: beta, leapfrogSteps: 5, streams: streams).reduce(0, +) }
        XCTAssertGreaterThan(accepted / Double(20 * C), 0.3, "the chains move")
        for i in 0..<k {
            let values = (0..<C).map { z[$0 * k + i] }
            let sampleMean = values.reduce(0, +) / Double(C)
            XCTAssertEqual(sampleMean, mean[i], accuracy: 4.5 * (covariance[i * k + i] / Double(C)).squareRoot(), "mean of z[\(i)]")
            for j in 0...i {
                let other = (0..<C).map { z[$0 * k + j] }
                let otherMean = other.reduce(0, +) / Double(C)
                let sampleCovariance = zip(values, other).reduce(0.0) { $0 + ($1.0 - sampleMean) * ($1.1 - otherMean) } / Double(C - 1)
                // Var of a sample covariance ≈ (Σ_ii Σ_jj + Σ_ij²)/C.
                let se = ((covariance[i * k + i] * covariance[j * k + j] + covariance[i * k + j] * covariance[i * k + j]) / Double(C)).squareRoot()
                XCTAssertEqual(sampleCovariance, covariance[i * k + j], accuracy: 4.5 * se, "Σ[\(i), \(j)]")
            }
        }
    }

    /// On linear-Gaussian models, one and two layers, whose log p(x) is
    /// known in closed form and whose posterior is much narrower than the
    /// prior (σ = 0.2), AIS from the prior (T = 1,000, 32 chains) agrees with
    /// it on average over 16 examples within three standard errors of the
    /// mean (from each example's spread of weights; about 0.03 nats), the
    /// pilots steer the acceptance to about 0.65, and with 3 steps AIS falls
    /// far below (a stochastic lower bound).
    func testAISMatchesTheExactLinearGaussianLikelihood() throws {
        let two = [StochasticLayer(dimension: 2, encoderHidden: [3], decoderHidden: [])]
        for (upper, encoder, start) in [([], CovarianceKind.diagonal, AISSettings.Start.prior), (two, .diagonal, .prior),
                                        ([], .full, .encoder), (two, .diagonal, .encoder)] {
            let model = model(likelihood: .gaussian, prior: .learned, upper: upper, decoderHidden: [], encoder: encoder)
            let logVariance = try XCTUnwrap(model.parameterSlots.first { $0.name == "decoder.log_variance" })
            model.store.value(logVariance)[0] = 2 * log(0.2)
            for slot in model.parameterSlots where slot.name == "decoder.0.weight" { for i in 0..<slot.count { model.store.value(slot)[i] *= 4 } }
            let x = data(model, examples: 16)
            let exact = try model.exactLogLikelihood(x.matrix)
            let meanExact = exact.reduce(0, +) / Double(exact.count)
            let settings = try AISSettings(steps: 1000, leapfrogSteps: 5, chains: 32, pilotChains: 4, start: start, initialStepSize: 0.1)
            let ais = try model.annealedImportanceSampling(x.matrix, settings: settings, seed: 1)
            let standardError = ais.standardErrors.reduce(0) { $0 + $1 * $1 }.squareRoot() / Double(ais.examples)
            let label = "\(upper.count + 1) layers, \(encoder) encoder, from the \(start): AIS \(ais.meanLogLikelihood), exact \(meanExact), standard error \(standardError)"
            XCTAssertLessThan(standardError, 0.05, label)
            XCTAssertEqual(ais.meanLogLikelihood, meanExact, accuracy: 3 * standardError, label)
            XCTAssertEqual(ais.divergentProposals, 0)
            let rate = ais.acceptanceRates.reduce(0, +) / Double(ais.examples)
            XCTAssertEqual(rate, AISSettings.targetAcceptance, accuracy: 0.05, "acceptance steered by the pilots")
            let crude = try model.annealedImportanceSampling(x.matrix, settings: try AISSettings(steps: 3, leapfrogSteps: 5, chains: 16, start: start), seed: 1)
            XCTAssertLessThan(crude.meanLogLikelihood, meanExact - 1, "3 steps: \(crude.meanLogLikelihood) against \(meanExact)")
            print(label)
        }
    }

    /// BDMC on data simulated from linear-Gaussian models (one and two
    /// layers, σ = 0.2): forward AIS stays below the exact log p(x) and
    /// reverse AIS from the simulated z above it, within three standard
    /// errors, and the gap between them shrinks as T grows (10 → 300).
    func testBDMCBracketsTheExactLikelihoodAndItsGapShrinks() throws {
        for upper in [[], [StochasticLayer(dimension: 2, encoderHidden: [3], decoderHidden: [])]] {
            let model = model(likelihood: .gaussian, prior: .learned, upper: upper, decoderHidden: [])
            let logVariance = try XCTUnwrap(model.parameterSlots.first { $0.name == "decoder.log_variance" })
            model.store.value(logVariance)[0] = 2 * log(0.2)
            let workers = ModelWorkers(model: model, workers: 2, seed: 1)
            let simulated = try model.simulate(examples: 24, seed: 3)
            let exact = try model.exactLogLikelihood(simulated.data.matrix)
            let meanExact = exact.reduce(0, +) / Double(exact.count)
            var gaps = [Double]()
            for T in [10, 300] {
                let bdmc = try workers.bidirectionalMonteCarlo(examples: 24, settings: try AISSettings(steps: T, leapfrogSteps: 5, chains: 16), seed: 3)
                func se(_ e: AISEstimate) -> Double { e.standardErrors.reduce(0) { $0 + $1 * $1 }.squareRoot() / Double(e.examples) }
                let label = "\(upper.count + 1) layers, T = \(T): lower \(bdmc.lower.meanLogLikelihood), exact \(meanExact), upper \(bdmc.upper.meanLogLikelihood)"
                XCTAssertEqual(bdmc.exactMeanLogLikelihood, meanExact, "the estimate carries the simulated examples' exact log p(x)")
                XCTAssertLessThanOrEqual(bdmc.lower.meanLogLikelihood, meanExact + 3 * se(bdmc.lower), label)
                XCTAssertGreaterThanOrEqual(bdmc.upper.meanLogLikelihood, meanExact - 3 * se(bdmc.upper), label)
                gaps.append(bdmc.gap)
            }
            XCTAssertLessThan(gaps[1], gaps[0] / 3, "the gap shrinks with T: \(gaps)")
            XCTAssertLessThan(gaps[1], 0.15, "T = 300: \(gaps)")
        }
    }

    /// Settings out of range are one line each.
    func testSettingsOutOfRangeAreOneLine() {
        for (make, fragment) in [({ try AISSettings(steps: 0) }, "--ais-steps must be between 1"),
                                 ({ try AISSettings(leapfrogSteps: 0) }, "--leapfrog must be between 1"),
                                 ({ try AISSettings(chains: 0) }, "--chains must be between 1"),
                                 ({ try AISSettings(pilotChains: -1) }, "--pilot-chains must be between 0"),
                                 ({ try AISSettings(initialStepSize: .nan) }, "--step-size must be in (0, 10]"),
                                 ({ try AISSettings(initialStepSize: 0) }, "--step-size must be in (0, 10]")] as [(() throws -> AISSettings, String)] {
            XCTAssertThrowsError(try make()) { XCTAssertTrue("\($0)".contains(fragment), "\($0)") }
        }
        let betas = try! AISSettings(steps: 10).betas
        XCTAssertEqual(betas.first, 0)
        XCTAssertEqual(betas.last, 1)
        XCTAssertTrue(zip(betas, betas.dropFirst()).allSatisfy { $0 < $1 }, "β rises")
    }
}
