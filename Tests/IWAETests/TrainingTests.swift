import Foundation
import IWAE
import XCTest

/// Training on a slice of real data lowers the bound.
final class TrainingTests: XCTestCase {
    /// The run as a library user drives it (`TrainingRun`, no command line):
    /// one epoch, then `TrainingRun.resuming` to a second, ends with the
    /// bytes of two epochs straight; the events report the run and each epoch.
    func testTrainingRunInTheLibraryResumesBitForBit() throws {
        let (data, root) = try smallTrainingFixture(self)
        let source = try DataSource(name: data)
        let images = try source.load(.train)
        let options = try TrainingOptions(objective: try Objective(.iwae, samplesPerExample: 2), epochs: 2, batchSize: 20,
                                          workers: 2, gemm: .openblas)
        let configuration = ModelConfiguration(dataDimension: images.dimension, latentDimension: 2, encoderHidden: [8], decoderHidden: [8])
        func run(_ name: String, epochs: Int) throws -> TrainingRun {
            XCTAssertTrue(try RunDirectory.create(root + "/" + name))
            return try TrainingRun(directory: root + "/" + name, configuration: configuration, options: options.with(epochs: epochs),
                                   data: source, validationExamples: 20)
        }
        var lines = [String]()
        try run("straight", epochs: 2).train(examples: .images(images), resuming: nil, events: .init(log: { lines.append($0) }))
        XCTAssertTrue(lines.first!.hasPrefix("training iwae K=2 on 280 images (20 held out), batch 20, 2 epochs"), lines[0])
        XCTAssertEqual(lines.filter { $0.hasPrefix("epoch ") }.count, 2)
        XCTAssertTrue(lines.last!.hasPrefix("done in"), lines.last!)
        try run("resumed", epochs: 1).train(examples: .images(images), resuming: nil)
        XCTAssertEqual(try Checkpoint.load(from: root + "/resumed").trainingState?.epoch, 1)
        let (again, againImages, checkpoint) = try TrainingRun.resuming(root + "/resumed", epochs: 2)
        XCTAssertEqual(again.options.epochs, 2)
        try again.train(examples: againImages, resuming: checkpoint)
        XCTAssertEqual(try trainedBytes(root + "/resumed"), try trainedBytes(root + "/straight"))
        // A run directory another run holds is refused in one line.
        XCTAssertFalse(try RunDirectory.create(root + "/straight"), "found, not created")
    }

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
        let options = try TrainingOptions(objective: try Objective(.iwae, samplesPerExample: 5), epochs: 3, batchSize: 50)
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
