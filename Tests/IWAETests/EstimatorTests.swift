import IWAE
import XCTest

/// The encoder-gradient estimators agree in expectation (MATH.md §3); STL's
/// bias for K > 1 is measured.
final class EstimatorTests: XCTestCase {
    /// Mean and standard errors of `draws` gradient draws of one estimator.
    func moments(_ model: VariationalAutoencoder<Double>, _ x: Tensor<Double>, bound: BoundKind, K: Int,
                 estimator: GradientEstimator, baseline: ScoreBaseline = .none, draws: Int, seed: UInt64) throws -> GradientMoments {
        try gradientMoments(model, x, Objective(bound, samplesPerExample: K, estimator: estimator, baseline: baseline),
                            draws: draws, seed: seed)
    }

    func testUnbiasedEstimatorsAgreeInExpectation() throws {
        for encoder in CovarianceKind.allCases {
            let c = ModelConfiguration(dataDimension: 5, latentDimension: 2, encoderHidden: [3], decoderHidden: [3], encoder: encoder)
            let model = VariationalAutoencoder<Double>(c, seed: 1)
            let x = Tensor<Double>(shape: [2, 5], values: [1, 0, 1, 1, 0, 0, 1, 1, 0, 1])
            let encoderCount = model.store.layout.slots.filter { $0.name.hasPrefix("encoder") }.reduce(0) { $0 + $1.count }
            let encoderRange = 0..<encoderCount
            for bound in [BoundKind.iwae, .elbo] {
                let K = 4
                let reference = try moments(model, x, bound: bound, K: K, estimator: .reparam, draws: 40_000, seed: 1)
                var candidates: [(String, GradientMoments)] = [
                    ("score", try moments(model, x, bound: bound, K: K, estimator: .score, draws: 40_000, seed: 2)),
                    ("score+vimco", try moments(model, x, bound: bound, K: K, estimator: .score, baseline: .vimco, draws: 40_000, seed: 3)),
                ]
                if bound == .iwae {
                    candidates.append(("dreg", try moments(model, x, bound: bound, K: K, estimator: .dreg, draws: 20_000, seed: 4)))
                } else {
                    // STL is unbiased for the ELBO.
                    candidates.append(("stl", try moments(model, x, bound: bound, K: K, estimator: .stl, draws: 20_000, seed: 5)))
                }
                for (name, m) in candidates {
                    let bad = disagreements(m, reference, encoderRange)
                    XCTAssertTrue(bad.isEmpty, "\(encoder) \(bound) \(name) vs reparam: parameters \(bad)")
                }
                // The decoder gradient is the same estimator for all: equal in expectation too.
                let decoderRange = encoderCount..<model.store.values.count
                XCTAssertTrue(disagreements(candidates[0].1, reference, decoderRange).isEmpty)
                // Variance: the score function is far noisier than the pathwise gradient.
                XCTAssertGreaterThan(candidates[0].1.summary(encoderRange).totalVariance,
                                     5 * reference.summary(encoderRange).totalVariance)
            }
        }
    }

    /// STL drops a term whose expectation is zero only for K = 1: with the
    /// IWAE bound and K > 1 it is biased. The bias is measured here (and
    /// quoted in the README): it is many standard errors from zero.
    func testSTLIsBiasedForIWAEWithSeveralSamples() throws {
        let c = ModelConfiguration(dataDimension: 5, latentDimension: 2, encoderHidden: [3], decoderHidden: [3])
        let model = VariationalAutoencoder<Double>(c, seed: 1)
        let x = Tensor<Double>(shape: [2, 5], values: [1, 0, 1, 1, 0, 0, 1, 1, 0, 1])
        let encoderCount = model.store.layout.slots.filter { $0.name.hasPrefix("encoder") }.reduce(0) { $0 + $1.count }
        let reference = try moments(model, x, bound: .iwae, K: 8, estimator: .reparam, draws: 20_000, seed: 1)
        let stl = try moments(model, x, bound: .iwae, K: 8, estimator: .stl, draws: 20_000, seed: 2)
        let bad = disagreements(stl, reference, 0..<encoderCount)
        XCTAssertFalse(bad.isEmpty, "STL with K = 8 should be detectably biased")
        var biasNorm = 0.0, referenceNorm = 0.0
        for i in 0..<encoderCount {
            biasNorm += (stl.mean[i] - reference.mean[i]) * (stl.mean[i] - reference.mean[i])
            referenceNorm += reference.mean[i] * reference.mean[i]
        }
        print("STL bias, IWAE K=8: ‖E g_stl − E g_reparam‖ / ‖E g_reparam‖ = \((biasNorm / referenceNorm).squareRoot()) over \(encoderCount) encoder parameters, \(bad.count) beyond 4.5 SE")
        // With one sample STL is unbiased.
        let reference1 = try moments(model, x, bound: .iwae, K: 1, estimator: .reparam, draws: 20_000, seed: 3)
        let stl1 = try moments(model, x, bound: .iwae, K: 1, estimator: .stl, draws: 20_000, seed: 4)
        XCTAssertTrue(disagreements(stl1, reference1, 0..<encoderCount).isEmpty)
    }

    /// Every combination the objective refuses, and why, in one line each;
    /// the combinations it accepts are all that remain.
    func testObjectivesAreCheckedWhenMade() throws {
        func refusal(_ bound: BoundKind, _ K: Int, _ estimator: GradientEstimator, _ baseline: ScoreBaseline) -> String? {
            do { _ = try Objective(bound, samplesPerExample: K, estimator: estimator, baseline: baseline); return nil }
            catch { return "\(error)" }
        }
        XCTAssertEqual(refusal(.elbo, 5, .dreg, .none), "estimator dreg is for the IWAE bound: use --objective iwae (or miwae, piwae)")
        XCTAssertEqual(refusal(.iwae, 1, .score, .vimco), "--baseline vimco needs k > 1 (leave-one-out)")
        XCTAssertEqual(refusal(.elboAnalytic, 5, .stl, .none),
                       "estimator stl does not apply to elbo-analytic (its KL is differentiated in closed form); use reparam")
        XCTAssertEqual(refusal(.iwae, 5, .reparam, .vimco), "--baseline vimco goes with --estimator score")
        XCTAssertEqual(refusal(.iwae, 0, .reparam, .none), "k must be at least 1, got 0")
        XCTAssertEqual(refusal(.iwae, -3, .reparam, .none), "k must be at least 1, got -3")
        // The accepted set, enumerated: 6 bounds × 4 estimators × 2 baselines at K = 1 and 2 (M = 1, no β:
        // ciwae, which needs its β, is refused throughout; TighterBoundsTests checks its own rules).
        var accepted = Set<String>()
        for bound in BoundKind.allCases {
            for estimator in GradientEstimator.allCases {
                for baseline in ScoreBaseline.allCases {
                    for K in [1, 2] where refusal(bound, K, estimator, baseline) == nil {
                        accepted.insert("\(bound.rawValue) \(estimator.rawValue) \(baseline.rawValue) \(K)")
                    }
                }
            }
        }
        var expected = Set<String>()
        for K in [1, 2] {
            for estimator in ["reparam", "score", "stl"] { expected.insert("elbo \(estimator) none \(K)") }
            for bound in ["iwae", "miwae", "piwae"] {
                for estimator in ["reparam", "score", "stl", "dreg"] { expected.insert("\(bound) \(estimator) none \(K)") }
            }
            expected.insert("elbo-analytic reparam none \(K)")
        }
        expected.formUnion(["elbo score vimco 2", "iwae score vimco 2", "miwae score vimco 2", "piwae score vimco 2"])
        XCTAssertEqual(accepted, expected)
        // Decoding goes through the same check: a record with k = 0 is refused.
        let record = try JSONEncoder().encode(TrainingOptions())
        var fields = try XCTUnwrap(JSONSerialization.jsonObject(with: record) as? [String: Any])
        fields["samplesPerExample"] = 0
        XCTAssertThrowsError(try JSONDecoder().decode(TrainingOptions.self, from: JSONSerialization.data(withJSONObject: fields))) {
            XCTAssertEqual("\($0)", "k must be at least 1, got 0")
        }
        // A model with two stochastic layers refuses elbo-analytic.
        let two = ModelConfiguration.twoLayer(dataDimension: 4)
        XCTAssertThrowsError(try Objective(.elboAnalytic).check(for: two))
        XCTAssertNoThrow(try Objective(.elbo).check(for: two))
        XCTAssertEqual(try Objective.estimator(named: "score-vimco").1, .vimco)
        XCTAssertThrowsError(try Objective.estimator(named: "reinforce"))
    }
}
