import Foundation
import IWAE
import RealModule
import XCTest

/// The pieces of `iwae grad-stats`' SNR analysis: the log–log slope against
/// closed forms, and the parameter groups against the model's layout.
final class SNRTests: XCTestCase {
    func testLogLogSlopeAgainstClosedForms() {
        // An exact power law SNR = 3 K^(−1/2): slope −½, no residual.
        let ks = [1, 4, 16, 64]
        let exact = logLogSlope(ks: ks, snr: ks.map { 3 / Double($0).squareRoot() })
        XCTAssertEqual(exact.slope, -0.5, accuracy: 1e-14)
        XCTAssertEqual(exact.standardError, 0, accuracy: 1e-14)
        // Three points off a line: x = log K = 0, log 4, log 16 (equally spaced by h = log 4),
        // y = 0, 1, 0. Then slope 0, residuals (−⅓, ⅔, −⅓), Σr² = ⅔, Sxx = 2h²,
        // stderr = √(⅔ / 1 / (2h²)) = 1/(h√3).
        let h = Double.log(4)
        let bent = logLogSlope(ks: [1, 4, 16], snr: [1, Double.exp(1), 1])
        XCTAssertEqual(bent.slope, 0, accuracy: 1e-14)
        XCTAssertEqual(bent.standardError, 1 / (h * Double(3).squareRoot()), accuracy: 1e-14)
        // Two points: the line through them, no standard error; a zero SNR: no fit.
        let two = logLogSlope(ks: [2, 8], snr: [1, 4])
        XCTAssertEqual(two.slope, 1, accuracy: 1e-14)
        XCTAssertTrue(two.standardError.isNaN)
        XCTAssertTrue(logLogSlope(ks: [2, 8], snr: [0, 4]).slope.isNaN)
        XCTAssertTrue(logLogSlope(ks: [4, 4], snr: [1, 2]).slope.isNaN)
    }

    /// Encoder, decoder and prior are disjoint and cover every parameter, for
    /// one layer with a learned prior and for two layers (the conditional
    /// prior p(z₁|z₂) counts as prior).
    func testParameterGroupsPartitionTheParameters() {
        var two = ModelConfiguration(dataDimension: 5, latentDimension: 3, encoderHidden: [4], decoderHidden: [4], prior: .learned)
        two.upperLayers = [StochasticLayer(dimension: 2, encoderHidden: [3], decoderHidden: [3])]
        let one = ModelConfiguration(dataDimension: 5, latentDimension: 3, encoderHidden: [4], decoderHidden: [4], prior: .learned)
        for configuration in [one, two] {
            let model = VariationalAutoencoder<Float>(configuration)
            var owner = [ParameterGroup?](repeating: nil, count: model.store.values.count)
            for group in ParameterGroup.allCases {
                for i in model.parameters(of: group).joined() {
                    XCTAssertNil(owner[i], "parameter \(i) in two groups")
                    owner[i] = group
                }
            }
            XCTAssertTrue(owner.allSatisfy { $0 != nil }, "every parameter in a group")
            let priorNames = model.parameterSlots.filter { slot in model.parameters(of: .prior).contains { $0.contains(slot.offset) } }.map(\.name)
            XCTAssertTrue(priorNames.contains("prior.mean") && priorNames.contains("prior.log_variance"), "\(priorNames)")
            XCTAssertEqual(priorNames.count > 2, !configuration.upperLayers.isEmpty, "\(priorNames)")
        }
        // A standard prior on one layer has no parameters of its own.
        let standard = VariationalAutoencoder<Float>(ModelConfiguration(dataDimension: 5, latentDimension: 3, encoderHidden: [4], decoderHidden: [4]))
        XCTAssertTrue(standard.parameters(of: .prior).isEmpty)
    }

    /// ESS = (Σ w)² / Σ w² against closed forms: K equal weights give K, two
    /// equal weights among −∞ give 2, weights 1 and e give (1 + e)²/(1 + e²).
    func testEffectiveSampleSizeAgainstClosedForms() {
        var lw: [Float] = [0.3, 0.3, 0.3, 0.3, -2, -2, -.infinity, -.infinity, 0, 1, -.infinity, -.infinity]
        let ess = effectiveSampleSizes(logWeights: MatrixView(&lw, rows: 3, columns: 4))
        XCTAssertEqual(ess[0], 4, accuracy: 1e-12)
        XCTAssertEqual(ess[1], 2, accuracy: 1e-12)
        let e = Double.exp(1)
        XCTAssertEqual(ess[2], (1 + e) * (1 + e) / (1 + e * e), accuracy: 1e-6)
    }

    /// Rainforth et al.'s rates where their theorem's assumption holds: a
    /// linear-Gaussian model whose diagonal encoder is the exact posterior
    /// with its mean and log-scale moved by a fraction of a standard
    /// deviation, so that K draws have nearly equal weights (effective sample
    /// size near K, printed). There, from the engine's gradients, the
    /// pathwise encoder's SNR falls as K^−½, the decoder's rises as K^½
    /// (Rainforth et al., Theorem 1) and DReG's encoder's rises as K^½
    /// (Tucker et al. 2019): slopes over K = 1 … 64 within ±0.15.
    func testRainforthRatesWhereTheTheoremHolds() throws {
        var (model, x, logLikelihood) = try nearPosteriorLinearGaussianModel(meanShift: 0.3, logScaleShift: 0.15)
        // The encoder is near the posterior: L_200000 at the exact log p(x) (its Monte Carlo
        // standard deviation here is about 0.0013), the ELBO a little below it.
        let estimate = try x.withUnsafeMutableBufferPointer { x in
            try model.estimateLogLikelihood(MatrixView(x.baseAddress!, rows: 1, columns: x.count), samples: 200_000, seed: 1)
        }
        print("log p(x) = \(logLikelihood), L_200000 = \(estimate.logLikelihoods[0]), ELBO = \(estimate.elbos[0])")
        XCTAssertEqual(estimate.logLikelihoods[0], logLikelihood, accuracy: 0.005)
        XCTAssertLessThan(logLikelihood - estimate.elbos[0], 0.2)
        let ks = [1, 4, 16, 64]
        let ess = try x.withUnsafeMutableBufferPointer { x in
            try model.effectiveSampleFraction(MatrixView(x.baseAddress!, rows: 1, columns: x.count), drawsPerExample: 64, repeats: 50, seed: 2)
        }
        print("ESS / K at K = 64: \(ess)")
        XCTAssertGreaterThan(ess, 0.7, "the theorem's regime: nearly equal weights")
        var slopes = [String: Double]()
        for estimator in [GradientEstimator.reparam, .dreg] {
            var encoder = [Double](), decoder = [Double]()
            for k in ks {
                let workers = ModelWorkers(model: model, workers: 1, seed: 11)
                let statistics = try x.withUnsafeMutableBufferPointer { x in
                    try workers.gradientStatistics(MatrixView(x.baseAddress!, rows: 1, columns: x.count),
                                                   objective: Objective(.iwae, samplesPerExample: k, estimator: estimator), draws: 4000)
                }
                encoder.append(statistics[.encoder]!.snr)
                decoder.append(statistics[.decoder]!.snr)
            }
            slopes["\(estimator) encoder"] = logLogSlope(ks: ks, snr: encoder).slope
            slopes["\(estimator) decoder"] = logLogSlope(ks: ks, snr: decoder).slope
            print("SNR at K = \(ks), \(estimator): encoder \(encoder), decoder \(decoder)")
        }
        print("slopes: \(slopes)")
        XCTAssertEqual(slopes["reparam encoder"]!, -0.5, accuracy: 0.15)
        XCTAssertEqual(slopes["reparam decoder"]!, 0.5, accuracy: 0.15)
        XCTAssertEqual(slopes["dreg encoder"]!, 0.5, accuracy: 0.15)
        XCTAssertEqual(slopes["dreg decoder"]!, 0.5, accuracy: 0.15)
    }
}

/// A linear-Gaussian model, p(z) = N(0, I₂), p(x|z) = N(W z + b, σ² I₄) with
/// W's columns orthogonal (so the posterior covariance is diagonal,
/// Σ = (I + WᵀW/σ²)⁻¹, μ = Σ Wᵀ(x − b)/σ²), whose linear diagonal encoder
/// is that posterior for every x, then moved: μ by `meanShift` standard
/// deviations and log s by `logScaleShift`. Returns the model, one data
/// point and the exact log p(x).
func nearPosteriorLinearGaussianModel(meanShift: Double, logScaleShift: Double) throws
    -> (VariationalAutoencoder<Float>, [Float], Double)
{
    let sigma = 0.5
    let configuration = ModelConfiguration(dataDimension: 4, latentDimension: 2, encoderHidden: [], decoderHidden: [],
                                           likelihood: .gaussian, sigma: sigma)
    let model = VariationalAutoencoder<Float>(configuration, seed: 3)
    let w: [[Double]] = [[1, 0], [0, 0.5], [1, 0], [0, -0.5]], b = [0.1, -0.2, 0.3, 0.0]
    let x: [Float] = [0.8, -0.3, 1.1, 0.4]
    // WᵀW = diag(2, 0.5): Σ = diag(1 / (1 + 2/σ²), 1 / (1 + 0.5/σ²)).
    let variance = (0..<2).map { j in 1 / (1 + (0..<4).reduce(0) { $0 + w[$1][j] * w[$1][j] } / (sigma * sigma)) }
    func slot(_ name: String) -> UnsafeMutablePointer<Float> { model.store.value(model.store.layout.slot(named: name)!) }
    let decoderWeight = slot("decoder.0.weight"), decoderBias = slot("decoder.0.bias")
    for i in 0..<4 {
        for j in 0..<2 { decoderWeight[i * 2 + j] = Float(w[i][j]) }
        decoderBias[i] = Float(b[i])
    }
    let meanWeight = slot("encoder.mean.weight"), meanBias = slot("encoder.mean.bias")
    let scaleWeight = slot("encoder.log_std.weight"), scaleBias = slot("encoder.log_std.bias")
    for j in 0..<2 {
        // μ_j = Σ_jj Σ_i W_ij (x_i − b_i)/σ²: weight Σ_jj W_ij/σ², bias −Σ_i weight_ji b_i, then the shift.
        var bias = 0.0
        for i in 0..<4 {
            let a = variance[j] * w[i][j] / (sigma * sigma)
            meanWeight[j * 4 + i] = Float(a)
            scaleWeight[j * 4 + i] = 0
            bias -= a * b[i]
        }
        meanBias[j] = Float(bias + meanShift * variance[j].squareRoot())
        scaleBias[j] = Float(0.5 * Double.log(variance[j]) + logScaleShift)
    }
    // log p(x) = log N(x; b, W Wᵀ + σ² I), by the matrix determinant lemma and Woodbury.
    let r = (0..<4).map { Double(x[$0]) - b[$0] }
    var quadratic = r.reduce(0) { $0 + $1 * $1 } / (sigma * sigma), logDet = 4 * Double.log(sigma * sigma)
    for j in 0..<2 {
        let projection = (0..<4).reduce(0) { $0 + w[$1][j] * r[$1] } / (sigma * sigma)
        quadratic -= variance[j] * projection * projection
        logDet -= Double.log(variance[j])
    }
    return (model, x, -0.5 * quadratic - 0.5 * logDet - 2 * Double.log(2 * Double.pi))
}
