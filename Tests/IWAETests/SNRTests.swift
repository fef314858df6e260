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
}
