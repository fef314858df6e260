import Foundation
import IWAE
import XCTest

/// Training on a slice of real data lowers the bound.
final class TrainingTests: XCTestCase {
    func testShortRunOnFashionMNISTImprovesTheValidationBound() throws {
        guard hasFashionMNIST else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("CI must install dataset-fashion-mnist") }
            throw XCTSkip("Debian's dataset-fashion-mnist is not installed")
        }
        let dataset = try MNISTFormatDataset.load("fashion-mnist")
        XCTAssertEqual(dataset.train.count, 60_000)
        XCTAssertEqual(dataset.test.count, 10_000)
        XCTAssertEqual(dataset.train.dimension, 784)
        let slice = try dataset.train.prefix(2500).splitValidation(count: 500, seed: 1)
        let validation = slice.validation.binarizedOnce(seed: 2)
        let x = Tensor<Float>(shape: [validation.count, validation.dimension], values: validation.pixels)

        let configuration = ModelConfiguration(dataDimension: 784, latentDimension: 10, encoderHidden: [64], decoderHidden: [64])
        let model = VariationalAutoencoder<Float>(configuration, seed: 1)
        model.initializeOutputBias(dataMean: slice.train.pixelMean)
        let before = try model.meanBound(x.matrix, objective: Objective(.iwae, samplesPerExample: 5), seed: 3)
        var options = TrainingOptions()
        options.epochs = 3
        options.batchSize = 50
        options.objective = try Objective(.iwae, samplesPerExample: 5)
        var epochs = [EpochMetrics]()
        let trainer = try Trainer(model: model, options: options, validation: validation)
        try trainer.train(slice.train, onEpoch: { metrics, _ in epochs.append(metrics) })
        let after = try model.meanBound(x.matrix, objective: Objective(.iwae, samplesPerExample: 5), seed: 3)
        XCTAssertEqual(epochs.count, 3)
        XCTAssertEqual(trainer.step, 3 * 40)
        // From the data-mean decoder (about −450 nats) the bound climbs by tens of nats.
        XCTAssertGreaterThan(after, before + 30, "before \(before), after \(after)")
        XCTAssertGreaterThan(epochs[2].validationBound!, epochs[0].validationBound!)
        XCTAssertTrue(epochs.allSatisfy { $0.trainBound.isFinite && $0.examplesPerSecond > 0 })
    }
}
