import Foundation
import IWAE
import RealModule
import XCTest

/// The tighter-bounds family of Rainforth et al. (2018), MIWAE, CIWAE and
/// PIWAE: each bound and its ω against a naive Double computation from the
/// same log weights, the identities that tie them to IWAE and the ELBO
/// (exactly, bit for bit), and whole-model gradients against central
/// differences, for one and two stochastic layers.
final class TighterBoundsTests: XCTestCase {
    /// log w (B = 3, M·K = 2·4), all different, one row far in the tail.
    let logWeights: [[Double]] = [[-1, 0.5, -3, 2, 0.25, -0.75, 1.5, -2],
                                  [-700, -701, -699.5, -702, -698, -703, -700.5, -699],
                                  [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]

    func naiveLogMeanExp(_ v: ArraySlice<Double>) -> Double {
        let top = v.max()!
        return top + Double.log(v.map { Double.exp($0 - top) }.reduce(0, +) / Double(v.count))
    }

    func bound(_ objective: Objective) -> [Double] {
        let lw = Tensor<Double>(shape: [3, 8], values: logWeights.flatMap { $0 })
        var result = [Double](repeating: 0, count: 3)
        switch objective.bound {
        case .miwae: miwaeBound(logWeights: lw.matrix, groups: objective.groups, into: &result)
        case .ciwae: ciwaeBound(logWeights: lw.matrix, beta: objective.beta!, into: &result)
        default: iwaeBound(logWeights: lw.matrix, into: &result)
        }
        return result
    }

    func testBoundsAgainstNaiveDouble() throws {
        let miwae = try Objective(.miwae, samplesPerExample: 4, groups: 2)
        let ciwae = try Objective(.ciwae, samplesPerExample: 8, beta: 0.3)
        for (b, row) in logWeights.enumerated() {
            let groups = [row[0..<4], row[4..<8]]
            assertClose(bound(miwae)[b], groups.map(naiveLogMeanExp).reduce(0, +) / 2, rtol: 1e-14, "MIWAE row \(b)")
            let elbo = row.reduce(0, +) / 8
            assertClose(bound(ciwae)[b], 0.3 * elbo + 0.7 * naiveLogMeanExp(row[...]), rtol: 1e-14, "CIWAE row \(b)")
        }
        // The order holds on every row: ELBO ≤ CIWAE ≤ IWAE-8, MIWAE(2, 4) ≤ IWAE-8.
        let iwae = bound(try Objective(.iwae, samplesPerExample: 8))
        for b in 0..<3 {
            XCTAssertLessThanOrEqual(bound(ciwae)[b], iwae[b])
            XCTAssertLessThanOrEqual(bound(miwae)[b], iwae[b])
        }
    }

    /// ω = ∂bound/∂ log w against central differences of the naive bound.
    func testBoundWeightsAreTheBoundsDerivatives() throws {
        let objectives = [try Objective(.miwae, samplesPerExample: 4, groups: 2), try Objective(.ciwae, samplesPerExample: 8, beta: 0.3),
                          try Objective(.piwae, samplesPerExample: 4, groups: 2)]
        for objective in objectives {
            let lw = Tensor<Double>(shape: [3, 8], values: logWeights.flatMap { $0 })
            let omega = Tensor<Double>(shape: [3, 8])
            boundWeights(objective, logWeights: lw.matrix, into: omega.matrix)
            // PIWAE's ω is its decoder's, IWAE-(M·K).
            let reference = objective.bound == .piwae ? try Objective(.iwae, samplesPerExample: 8) : objective
            let numeric = centralDifferences(lw.pointer, 0..<24, h: 1e-5) {
                var result = [Double](repeating: 0, count: 3)
                let view = lw.matrix
                switch reference.bound {
                case .miwae: miwaeBound(logWeights: view, groups: 2, into: &result)
                case .ciwae: ciwaeBound(logWeights: view, beta: 0.3, into: &result)
                default: iwaeBound(logWeights: view, into: &result)
                }
                return result.reduce(0, +)
            }
            assertClose(omega.array, numeric, rtol: 1e-5, atol: 1e-7, objective.label)
        }
    }

    /// The identities, bit for bit: MIWAE(1, K) = IWAE-K, MIWAE(M, 1) = the
    /// ELBO over M draws, CIWAE(β = 0) = IWAE-K, CIWAE(β = 1) = ELBO; with
    /// the same ω, hence the same training gradient.
    func testIdentitiesHoldExactly() throws {
        let lw = Tensor<Double>(shape: [3, 8], values: logWeights.flatMap { $0 })
        func values(_ objective: Objective) -> (bound: [Double], omega: [Double]) {
            var result = [Double](repeating: 0, count: 3)
            switch objective.bound {
            case .miwae: miwaeBound(logWeights: lw.matrix, groups: objective.groups, into: &result)
            case .ciwae: ciwaeBound(logWeights: lw.matrix, beta: objective.beta!, into: &result)
            case .elbo: elboEstimate(logWeights: lw.matrix, into: &result)
            default: iwaeBound(logWeights: lw.matrix, into: &result)
            }
            let omega = Tensor<Double>(shape: [3, 8])
            boundWeights(objective, logWeights: lw.matrix, into: omega.matrix)
            return (result, omega.array)
        }
        let iwae = values(try Objective(.iwae, samplesPerExample: 8)), elbo = values(try Objective(.elbo, samplesPerExample: 8))
        for (name, objective, expected) in [("MIWAE(1, 8)", try Objective(.miwae, samplesPerExample: 8, groups: 1), iwae),
                                            ("MIWAE(8, 1)", try Objective(.miwae, samplesPerExample: 1, groups: 8), elbo),
                                            ("CIWAE(0)", try Objective(.ciwae, samplesPerExample: 8, beta: 0), iwae),
                                            ("CIWAE(1)", try Objective(.ciwae, samplesPerExample: 8, beta: 1), elbo)] {
            let actual = values(objective)
            XCTAssertEqual(actual.bound.map(\.bitPattern), expected.bound.map(\.bitPattern), name)
            XCTAssertEqual(actual.omega.map(\.bitPattern), expected.omega.map(\.bitPattern), name)
        }
    }

    func model(layers: Int, seed: UInt64 = 3) -> VariationalAutoencoder<Double> {
        var configuration = ModelConfiguration(dataDimension: 5, latentDimension: 3, encoderHidden: [4], decoderHidden: [4],
                                               prior: .learned)
        if layers == 2 { configuration.upperLayers = [StochasticLayer(dimension: 2, encoderHidden: [3], decoderHidden: [3])] }
        let model = VariationalAutoencoder<Double>(configuration, seed: seed)
        let rng = Xoshiro256(seed: 4)
        for i in 0..<model.store.values.count { model.store.values[i] = rng.uniform(Double.self) - 0.5 }
        return model
    }

    let x = Tensor<Double>(shape: [3, 5], values: [1, 0, 1, 1, 0, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0])

    /// MIWAE and CIWAE: the whole gradient against central differences of
    /// the bound with the draws fixed (pathwise), for one and two layers; and
    /// under STL, DReG (MIWAE) and the score function the generative part,
    /// which every estimator shares.
    func testGradientsAgainstFiniteDifferences() throws {
        for layers in [1, 2] {
            for objective in [try Objective(.miwae, samplesPerExample: 3, groups: 2), try Objective(.ciwae, samplesPerExample: 4, beta: 0.3)] {
                let model = model(layers: layers)
                model.store.zeroGradients()
                let bounds = try model.accumulateGradient(x.matrix, objective: objective, using: Xoshiro256(seed: 7))
                assertClose(-bounds.reduce(0, +) / 3, loss(model, x, objective, seed: 7), rtol: 1e-12, "loss")
                let numeric = centralDifferences(model.store.values.pointer, 0..<model.store.values.count) { loss(model, x, objective, seed: 7) }
                assertClose(model.store.gradients.array, numeric, rtol: 1e-5, atol: 1e-7, "\(objective.label), \(layers) layers")
                for estimator in [GradientEstimator.stl, .score] + (objective.bound == .miwae ? [.dreg] : []) {
                    let other = try Objective(objective.bound, samplesPerExample: objective.samplesPerExample, estimator: estimator,
                                              groups: objective.groups, beta: objective.beta)
                    model.store.zeroGradients()
                    try model.accumulateGradient(x.matrix, objective: other, using: Xoshiro256(seed: 7))
                    let theta = model.encoderParameters.upperBound..<model.store.values.count
                    assertClose(Array(model.store.gradients.array[theta]), Array(numeric[theta]), rtol: 1e-5, atol: 1e-7,
                                "\(other.label) \(estimator), \(layers) layers")
                }
            }
        }
    }

    /// PIWAE's two gradients from one set of draws: θ and λ take IWAE-(M·K)'s,
    /// φ takes MIWAE(M, K)'s, each against central differences of its bound.
    func testPIWAEGivesEachSideItsOwnBound() throws {
        for layers in [1, 2] {
            for estimator in [GradientEstimator.reparam, .dreg] {
                let piwae = try Objective(.piwae, samplesPerExample: 3, estimator: estimator, groups: 2)
                let model = model(layers: layers)
                model.store.zeroGradients()
                try model.accumulateGradient(x.matrix, objective: piwae, using: Xoshiro256(seed: 5))
                let gradient = model.store.gradients.array
                let phi = model.encoderParameters, theta = phi.upperBound..<model.store.values.count
                let decoderBound = try Objective(.iwae, samplesPerExample: 6), encoderBound = try Objective(.miwae, samplesPerExample: 3, groups: 2)
                let numericTheta = centralDifferences(model.store.values.pointer, theta) { loss(model, x, decoderBound, seed: 5) }
                assertClose(Array(gradient[theta]), numericTheta, rtol: 1e-5, atol: 1e-7, "PIWAE θ, \(layers) layers")
                if estimator == .reparam {
                    let numericPhi = centralDifferences(model.store.values.pointer, phi) { loss(model, x, encoderBound, seed: 5) }
                    assertClose(Array(gradient[phi]), numericPhi, rtol: 1e-5, atol: 1e-7, "PIWAE φ, \(layers) layers")
                } else {
                    // DReG's φ gradient is MIWAE's DReG gradient, bit for bit.
                    model.store.zeroGradients()
                    try model.accumulateGradient(x.matrix, objective: try Objective(.miwae, samplesPerExample: 3, estimator: .dreg, groups: 2),
                                                 using: Xoshiro256(seed: 5))
                    assertClose(Array(gradient[phi]), Array(model.store.gradients.array[phi]), rtol: 1e-12, atol: 1e-15, "PIWAE φ, DReG")
                }
            }
        }
    }

    /// In expectation, MIWAE's score-function (with and without VIMCO) and
    /// DReG encoder gradients, and CIWAE's score-function one, equal the
    /// pathwise gradient (4.5 standard errors).
    func testEncoderEstimatorsAgreeInExpectation() throws {
        let model = model(layers: 1, seed: 11)
        let phi = model.encoderParameters
        func moments(_ objective: Objective, draws: Int, seed: UInt64) throws -> GradientMoments {
            try gradientMoments(model, x, objective, draws: draws, seed: seed)
        }
        for (bound, groups, beta) in [(BoundKind.miwae, 2, Double?.none), (.ciwae, 1, 0.4)] {
            func objective(_ estimator: GradientEstimator, _ baseline: ScoreBaseline = .none) throws -> Objective {
                try Objective(bound, samplesPerExample: 3, estimator: estimator, baseline: baseline, groups: groups, beta: beta)
            }
            let reference = try moments(objective(.reparam), draws: 20_000, seed: 1)
            var candidates = [("score", try moments(objective(.score), draws: 30_000, seed: 2))]
            if bound == .miwae {
                candidates.append(("score+vimco", try moments(objective(.score, .vimco), draws: 30_000, seed: 3)))
                candidates.append(("dreg", try moments(objective(.dreg), draws: 20_000, seed: 4)))
            }
            for (name, m) in candidates {
                let bad = disagreements(m, reference, phi)
                XCTAssertTrue(bad.isEmpty, "\(bound) \(name): parameters \(bad)")
                XCTAssertGreaterThan(m.summary(phi).meanNorm, 0.01)
            }
        }
    }

    func testCombinationsAreChecked() {
        func refusal(_ make: () throws -> Objective) -> String? {
            do { _ = try make(); return nil } catch { return "\(error)" }
        }
        XCTAssertEqual(refusal { try Objective(.ciwae, samplesPerExample: 4) }, "ciwae needs --beta, the ELBO's share in [0, 1]")
        XCTAssertEqual(refusal { try Objective(.ciwae, samplesPerExample: 4, beta: 1.5) }, "--beta must be in [0, 1], got 1.5")
        XCTAssertEqual(refusal { try Objective(.iwae, samplesPerExample: 4, beta: 0.5) }, "--beta is for ciwae, not iwae")
        XCTAssertEqual(refusal { try Objective(.iwae, samplesPerExample: 4, groups: 2) }, "--m (groups of K draws) is for miwae and piwae, not iwae")
        XCTAssertEqual(refusal { try Objective(.miwae, samplesPerExample: 4, groups: 0) }, "m must be at least 1, got 0")
        XCTAssertEqual(refusal { try Objective(.ciwae, samplesPerExample: 4, estimator: .dreg, beta: 0.5) },
                       "estimator dreg is for the IWAE bound: use --objective iwae (or miwae, piwae)")
        XCTAssertEqual(refusal { try Objective(.ciwae, samplesPerExample: 4, estimator: .score, baseline: .vimco, beta: 0.5) },
                       "--baseline vimco is not defined for ciwae")
        XCTAssertNotNil(refusal { try Objective(.miwae, samplesPerExample: Int.max, groups: 2) })
        XCTAssertNil(refusal { try Objective(.piwae, samplesPerExample: 8, estimator: .dreg, groups: 8) })
    }
}
