import Foundation
@testable import IWAE
import XCTest

/// The documented Swift path (`TrainingRun`, as the Getting Started article
/// shows it) trains what `iwae train` trains with the same options: the same
/// output initialization and output bias, the same validation split, the
/// same run directory, a byte-identical checkpoint.
final class SwiftPathTests: XCTestCase {
    /// The environment that gives the command line this process's OpenBLAS
    /// kernels: `iwae` relaunches itself with better ones where OpenBLAS fell
    /// back to generic kernels, unless `OPENBLAS_CORETYPE` names a choice.
    var sameKernels: [String: String] {
        BLASLibrary.kernels.isFallback ? ["OPENBLAS_CORETYPE": BLASLibrary.coreName] : [:]
    }

    /// The checkpoint's bytes, after checking that training wrote one.
    func checkpointBytes(_ directory: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: Checkpoint.path(for: directory))))
    }

    /// Fashion-MNIST's training images and their source, or a skip where Debian's package is not installed.
    func fashionMNIST() throws -> (examples: Examples, source: DataSource) {
        do { return try DataSource.files("fashion-mnist").loadTraining() }
        catch { throw XCTSkip("Fashion-MNIST is not installed (Debian's dataset-fashion-mnist): \(error)") }
    }

    /// `iwae train` with the README's model and objective on the first 600
    /// Fashion-MNIST images, one epoch, two threads, into `out`.
    func trainOnTheCommandLine(_ initialization: OutputInitialization, validationExamples: Int, out: String) throws {
        let cli = try runIWAE(["train", "--data", "fashion-mnist", "--objective", "iwae", "--k", "5", "--epochs", "1", "--batch", "100",
                               "--train-examples", "600", "--validation-examples", "\(validationExamples)",
                               "--output-init", initialization.rawValue, "--threads", "2", "--out", out], environment: sameKernels)
        XCTAssertEqual(cli.status, 0, cli.stderr)
    }

    /// The README's model and objective on 600 Fashion-MNIST images, one
    /// epoch, with `--output-init glorot` and `pca`: `TrainingRun` from Swift,
    /// into a directory that does not exist yet, writes the command line's bytes.
    func testTrainingRunWritesTheCheckpointOfTheCommandLine() throws {
        let loaded = try fashionMNIST()
        for initialization in [OutputInitialization.glorot, .pca] {
            let root = temporaryDirectory(self)
            try trainOnTheCommandLine(initialization, validationExamples: 100, out: root + "/cli")
            let run = try TrainingRun(directory: root + "/swift/run",
                                      configuration: ModelConfiguration(dataDimension: loaded.examples.dimension, latentDimension: 50,
                                                                        encoderHidden: [200, 200], decoderHidden: [200, 200]),
                                      options: TrainingOptions(objective: try Objective(.iwae, samplesPerExample: 5), epochs: 1, batchSize: 100,
                                                               outputInitialization: initialization, workers: 2),
                                      data: loaded.source, trainExamplesLimit: 600, validationExamples: 100)
            try run.train(examples: loaded.examples, resuming: nil)
            XCTAssertEqual(try checkpointBytes(root + "/swift/run"), try checkpointBytes(root + "/cli"), "--output-init \(initialization)")
        }
    }

    /// `Trainer` itself, given the 600 images and no validation split, begins
    /// the run as `iwae train` does (the output bias at the data mean, the
    /// weights by `--output-init glorot` and `pca`): the checkpoint it makes
    /// with the command line's record is the command line's, byte for byte.
    func testTrainerWritesTheCheckpointOfTheCommandLine() throws {
        let loaded = try fashionMNIST()
        let images = try loaded.examples.images().subset(0..<600)
        for initialization in [OutputInitialization.glorot, .pca] {
            let root = temporaryDirectory(self)
            try trainOnTheCommandLine(initialization, validationExamples: 0, out: root + "/cli")
            let options = try TrainingOptions(objective: try Objective(.iwae, samplesPerExample: 5), epochs: 1, batchSize: 100,
                                              outputInitialization: initialization, workers: 2)
            let model = VariationalAutoencoder<Float>(ModelConfiguration(dataDimension: images.dimension), seed: options.seeds.initialization)
            let trainer = try Trainer(model: model, options: options, validation: nil)
            try trainer.train(images)
            let record = TrainingRecord(options: options, data: loaded.source, trainExamplesLimit: 600, validationExamples: 0,
                                        threads: 2, trainCount: 600, validationCount: 0)
            try Checkpoint(model: model, data: loaded.source, imageSize: Checkpoint.ImageSize(width: images.width, height: images.height),
                           training: record, optimizer: trainer.optimizer, trainingState: trainer.currentState).save(to: root + "/swift")
            XCTAssertEqual(try checkpointBytes(root + "/swift"), try checkpointBytes(root + "/cli"), "--output-init \(initialization)")
        }
    }

    /// A training loop of one's own, written with the public API alone as
    /// `Trainer` runs its loop (the run's seed streams, the output layer
    /// from the data, each epoch's shuffled order and dynamic binarization
    /// from one generator, the workers' bounds and gradient, Adam at the
    /// schedule's rate), gives `Trainer`'s parameters and bounds to the bit.
    func testAUserLoopGivesTheBitsOfTrainer() throws {
        let side = 4, count = 120, batchSize = 20
        let pixels: [Float] = (0..<count * side * side).map { i in Float((i * 37 + i / 7) % 101) / 100 }
        let images = ImageSet(count: count, width: side, height: side, pixels: pixels, labels: [UInt8](repeating: 0, count: count))
        let configuration = ModelConfiguration(dataDimension: side * side, latentDimension: 3, encoderHidden: [8], decoderHidden: [8])
        let options = try TrainingOptions(objective: try Objective(.iwae, samplesPerExample: 4, estimator: .dreg), epochs: 3,
                                          batchSize: batchSize, schedule: .paper, outputInitialization: .pca, seed: 11, workers: 2,
                                          gemm: .openblas)
        let trained = VariationalAutoencoder<Float>(configuration, seed: options.seeds.initialization)
        var trainerBounds = [Double]()
        try Trainer(model: trained, options: options, validation: nil)
            .train(images, onEpoch: { metrics, _ in trainerBounds.append(metrics.trainBound) })

        let model = VariationalAutoencoder<Float>(configuration, seed: options.seeds.initialization)
        try model.initializeOutputLayer(from: images, options.outputInitialization)
        let workers = ModelWorkers(model: model, workers: options.workers, seed: options.seeds.workers)
        workers.plan = workers.trainingPlan(batchSize: batchSize, objective: options.objective, gemm: options.gemm)
        let adam = Adam<Float>(count: model.parameterCount, learningRate: options.learningRate, epsilon: options.adamEpsilon)
        var rng = Xoshiro256(seed: options.seeds.shuffling)
        let batch = Tensor<Float>(shape: [batchSize, images.dimension])
        var loopBounds = [Double]()
        for epoch in 1...options.epochs {
            let order = Array(0..<count).shuffled(using: &rng)
            adam.learningRate = options.schedule.learningRate(epoch: epoch, base: options.learningRate)
            var sum = 0.0
            for start in stride(from: 0, to: count, by: batchSize) {
                batch.withMutableSpan { images.write(order[start..<start + batchSize], binarize: true, using: rng, into: &$0) }
                for bound in try workers.boundsAndGradient(batch.matrix, objective: options.objective) { sum += Double(bound) }
                workers.updateParameters(with: adam)
            }
            loopBounds.append(sum / Double(count))
        }
        XCTAssertEqual(model.parameters, trained.parameters)
        XCTAssertEqual(loopBounds, trainerBounds)
        XCTAssertNotEqual(model.parameters, VariationalAutoencoder<Float>(configuration, seed: 11).parameters, "it trained")
    }

    /// A binary table with no validation size given: both hold out the same
    /// tenth of its rows, and write the same bytes.
    func testTheValidationDefaultIsTheCommandLines() throws {
        let root = temporaryDirectory(self), file = root + "/rows.npy"
        let rows = 400, columns = 12
        let values = (0..<rows * columns).map { i in Double((i * 7 + i / columns) % 3 == 0 ? 1 : 0) }
        try write(npyBytes(descr: "<f4", shape: [rows, columns], values: values), to: file)
        let cli = try runIWAE(["train", "--data", file, "--k", "3", "--epochs", "2", "--batch", "20", "--latent", "3", "--hidden", "16",
                               "--output-init", "pca", "--threads", "2", "--out", root + "/cli"], environment: sameKernels)
        XCTAssertEqual(cli.status, 0, cli.stderr)
        let loaded = try DataSource.table(try TableSource(file: file)).loadTraining()
        let run = try TrainingRun(directory: root + "/swift",
                                  configuration: ModelConfiguration(dataDimension: columns, latentDimension: 3, encoderHidden: [16], decoderHidden: [16]),
                                  options: TrainingOptions(objective: try Objective(.iwae, samplesPerExample: 3), epochs: 2, batchSize: 20,
                                                           outputInitialization: .pca, workers: 2),
                                  data: loaded.source)
        try run.train(examples: loaded.examples, resuming: nil)
        let checkpoint = try Checkpoint.load(from: root + "/swift")
        XCTAssertEqual(checkpoint.training?.validationExamples, 40, "a tenth of 400 rows")
        XCTAssertEqual(try checkpointBytes(root + "/swift"), try checkpointBytes(root + "/cli"))
    }

    /// Per-row log-likelihoods are the same whatever holds the rows: an
    /// `ImageSet` of intensities, the same values as an array, and the rows
    /// binarized beforehand (which the evaluation binarization leaves as they are).
    func testArrayAndImageSetLogLikelihoodsAgreeBitForBit() throws {
        let side = 5, count = 12
        let pixels = (0..<count * side * side).map { Float(($0 * 37) % 101) / 100 }
        let images = ImageSet(count: count, width: side, height: side, pixels: pixels, labels: [UInt8](repeating: 0, count: count))
        let model = VariationalAutoencoder<Float>(ModelConfiguration(dataDimension: side * side, latentDimension: 3, encoderHidden: [8],
                                                                     decoderHidden: [8]), seed: 4)
        let fromImages = try model.logLikelihood(of: images, samples: 50)
        let fromArray = try model.logLikelihood(of: pixels, examples: count, samples: 50)
        let fromBinary = try model.logLikelihood(of: images.binarizedForEvaluation().pixels, examples: count, samples: 50)
        XCTAssertEqual(fromImages.logLikelihoods.count, count)
        XCTAssertEqual(fromArray.logLikelihoods, fromImages.logLikelihoods)
        XCTAssertEqual(fromBinary.logLikelihoods, fromImages.logLikelihoods)
        XCTAssertEqual(fromArray.standardErrors, fromImages.standardErrors)
    }

    /// A model trained by `Trainer` and saved bare (`Checkpoint(model:)`,
    /// no run state) into a directory that does not exist yet loads with the
    /// plan of kernels and the precision it computed with, and evaluates to
    /// the same bits as before saving; in fp32 on oneDNN and in bf16.
    func testASavedModelEvaluatesToTheSameBitsAfterLoading() throws {
        let side = 4, count = 200
        let pixels = (0..<count * side * side).map { Float(($0 * 37) % 101) / 100 }
        let images = ImageSet(count: count, width: side, height: side, pixels: pixels, labels: [UInt8](repeating: 0, count: count))
        for (gemm, precision) in [(GEMMChoice.onednn, Precision.fp32), (.auto, .bf16)] {
            let model = VariationalAutoencoder<Float>(ModelConfiguration(dataDimension: side * side, latentDimension: 3, encoderHidden: [8],
                                                                         decoderHidden: [8]), seed: 2)
            let options = try TrainingOptions(epochs: 1, batchSize: 20, workers: 2, gemm: gemm, precision: precision)
            let trainer = try Trainer(model: model, options: options, validation: nil)
            try trainer.train(images)
            let before = try model.logLikelihood(of: images, samples: 20)
            let directory = temporaryDirectory(self) + "/saved/model"
            try Checkpoint(model: model).save(to: directory)
            let loaded = try Checkpoint.load(from: directory)
            XCTAssertNil(loaded.trainingState)
            XCTAssertEqual(loaded.model.plan, model.plan, "\(gemm), \(precision)")
            XCTAssertEqual(loaded.model.plan.precision, precision)
            XCTAssertEqual(try loaded.model.logLikelihood(of: images, samples: 20).logLikelihoods, before.logLikelihoods, "\(gemm), \(precision)")
        }
    }
}
