import Foundation
import IWAEData
import IWAELinearAlgebra

/// How the learning rate moves over epochs.
public enum LearningRateSchedule: String, Sendable, CaseIterable {
    /// The base rate throughout.
    case constant
    /// Burda et al. (2015): for i = 0…7, 3ⁱ passes at base · 10^(−i/7)
    /// (3,280 passes in all; epochs past them stay at the last rate).
    case paper

    /// The rate for 1-based `epoch`.
    public func learningRate(epoch: Int, base: Double) -> Double {
        switch self {
        case .constant: return base
        case .paper:
            var end = 0, stage = 0
            for i in 0...7 {
                end += Int(pow(3.0, Double(i)))
                stage = i
                if epoch <= end { break }
            }
            return base * pow(10, -Double(stage) / 7)
        }
    }

    /// Epochs of the whole schedule (nil: open-ended).
    public var totalEpochs: Int? { self == .paper ? 3280 : nil }
}

/// What a training run does.
public struct TrainingOptions: Sendable {
    public var objective: Objective = .iwae
    /// K, importance samples per example.
    public var samplesPerExample = 5
    public var epochs = 5
    public var batchSize = 100
    public var learningRate = 1e-3
    public var schedule = LearningRateSchedule.constant
    /// The encoder's gradient estimator, and the score function's baseline.
    public var estimator = GradientEstimator.reparam
    public var baseline = ScoreBaseline.none
    /// Adam's ε (the IWAE paper uses 10⁻⁴).
    public var adamEpsilon = 1e-4
    public var seed: UInt64 = 1
    /// Cores to split each batch over (default: all active cores). Results
    /// are reproducible for a given seed and worker count.
    public var workers: Int?

    public init(objective: Objective = .iwae, samplesPerExample: Int = 5, epochs: Int = 5, batchSize: Int = 100,
                learningRate: Double = 1e-3, schedule: LearningRateSchedule = .constant, adamEpsilon: Double = 1e-4,
                estimator: GradientEstimator = .reparam, baseline: ScoreBaseline = .none, seed: UInt64 = 1,
                workers: Int? = nil) {
        self.objective = objective
        self.samplesPerExample = samplesPerExample
        self.epochs = epochs
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.schedule = schedule
        self.adamEpsilon = adamEpsilon
        self.estimator = estimator
        self.baseline = baseline
        self.seed = seed
        self.workers = workers
    }

    /// Checks every value; throws a one-line error naming the bad one.
    public func validate() throws {
        guard samplesPerExample >= 1 else { throw IWAEError.invalidArgument("k must be at least 1, got \(samplesPerExample)") }
        guard batchSize >= 1 else { throw IWAEError.invalidArgument("batch must be at least 1, got \(batchSize)") }
        guard epochs >= 0 else { throw IWAEError.invalidArgument("epochs must be at least 0, got \(epochs)") }
        guard learningRate.isFinite, learningRate > 0 else {
            throw IWAEError.invalidArgument("learning rate must be finite and positive, got \(learningRate)")
        }
        try estimator.validate(objective: objective, samplesPerExample: samplesPerExample, baseline: baseline)
        if let workers, workers < 1 { throw IWAEError.invalidArgument("workers must be at least 1, got \(workers)") }
        guard adamEpsilon.isFinite, adamEpsilon > 0 else {
            throw IWAEError.invalidArgument("Adam epsilon must be finite and positive, got \(adamEpsilon)")
        }
    }
}

/// One epoch's summary, appended to `metrics.jsonl`.
public struct EpochMetrics: Codable, Sendable {
    public var epoch: Int
    public var step: Int
    public var objective: String
    public var k: Int
    public var trainBound: Double
    public var validationBound: Double?
    public var examplesPerSecond: Double
    public var seconds: Double
    public var learningRate: Double

    enum CodingKeys: String, CodingKey {
        case epoch, step, objective, k, seconds
        case trainBound = "train_bound", validationBound = "validation_bound"
        case examplesPerSecond = "examples_per_s", learningRate = "learning_rate"
    }
}

/// Progress within an epoch, for a progress bar.
public struct TrainingProgress: Sendable {
    public var epoch: Int
    public var epochs: Int
    public var batch: Int
    public var batches: Int
    /// Mean bound over this epoch's batches so far.
    public var runningBound: Double
    public var examplesPerSecond: Double
}

/// Trains a model with Adam on minibatches of dynamically binarized images
/// (real values as they are for a Gaussian likelihood),
/// evaluating the bound on a held-out split after every epoch and writing a
/// checkpoint and a metrics line to the output directory.
/// Where a run stands, beyond parameters and optimizer moments: what a
/// checkpoint needs so that a resumed run continues bit for bit.
public struct TrainingState: Sendable, Equatable {
    /// The epoch in progress (1-based), or the last completed one when `batchInEpoch` is 0.
    public var epoch = 0
    /// Optimizer steps taken.
    public var step = 0
    /// Batches of `epoch` done; 0 at an epoch boundary.
    public var batchInEpoch = 0
    /// The current epoch's order of training examples (empty at a boundary).
    public var order: [Int32] = []
    /// Running sums of the epoch's train bound.
    public var boundSum = 0.0
    public var seen = 0
    /// States of the shuffling/binarization generator and of each worker's sampler.
    public var generator: [UInt64] = []
    public var workerGenerators: [[UInt64]] = []

    public init() {}
}

/// Trains a model with Adam on minibatches (see `TrainingOptions`),
/// evaluating the bound on a held-out split after every epoch.
public final class Trainer {
    public let model: VariationalAutoencoder<Float>
    public let options: TrainingOptions
    public let optimizer: Adam<Float>
    public let workers: ModelWorkers<Float>
    public var epoch: Int { state.epoch }
    public var step: Int { state.step }
    private var state = TrainingState()
    private var order: [Int] = []
    private let rng: Xoshiro256
    private let batchBuffer: Tensor<Float>
    private let validationImages: Tensor<Float>?

    /// `validation` holds the held-out examples as the model sees them (binary
    /// images binarized once for a Bernoulli likelihood), or nil for none.
    public init(model: VariationalAutoencoder<Float>, options: TrainingOptions, validation: ImageSet?) throws {
        try options.validate()
        self.model = model
        self.options = options
        optimizer = Adam(count: model.store.values.count, learningRate: options.learningRate, epsilon: options.adamEpsilon)
        rng = Xoshiro256(seed: options.seed)
        workers = ModelWorkers(model: model, workers: options.workers, seed: options.seed &+ 1)
        batchBuffer = Tensor(shape: [options.batchSize, model.configuration.dataDimension])
        validationImages = validation.map { Tensor(shape: [$0.count, $0.dimension], values: $0.pixels) }
    }

    /// The run's state now (generators included).
    public var currentState: TrainingState {
        var s = state
        s.order = s.batchInEpoch == 0 ? [] : order.map { Int32($0) }
        s.generator = [rng.state.0, rng.state.1, rng.state.2, rng.state.3]
        s.workerGenerators = workers.generators.map { [$0.state.0, $0.state.1, $0.state.2, $0.state.3] }
        return s
    }

    /// Continues from a saved state (parameters and optimizer are restored by the caller).
    public func restore(_ saved: TrainingState) throws {
        guard saved.generator.count == 4, saved.workerGenerators.count == workers.workerCount,
              saved.workerGenerators.allSatisfy({ $0.count == 4 }) else {
            throw IWAEError.invalidCheckpoint("the training state was saved with \(saved.workerGenerators.count) threads, not \(workers.workerCount); resume with the same thread count")
        }
        state = saved
        order = saved.order.map { Int($0) }
        rng.restore(state: (saved.generator[0], saved.generator[1], saved.generator[2], saved.generator[3]))
        for (g, s) in zip(workers.generators, saved.workerGenerators) { g.restore(state: (s[0], s[1], s[2], s[3])) }
    }

    /// Trains until `options.epochs` epochs are complete, from the current state.
    ///
    /// Every `checkpointEvery` steps within an epoch `onCheckpoint` receives
    /// the state (the caller saves); at each epoch's end `onEpoch` receives
    /// the metrics and the state. When `shouldStop` turns true (a signal) the
    /// state goes to `onCheckpoint` and `IWAEError.interrupted` is thrown. A
    /// non-finite bound stops training with an error naming the step, before
    /// the bad gradient reaches the parameters.
    public func train(
        _ train: ImageSet,
        checkpointEvery: Int? = nil,
        shouldStop: () -> Bool = { false },
        afterStep: ((Int) -> Void)? = nil,
        onCheckpoint: ((TrainingState) throws -> Void)? = nil,
        onProgress: ((TrainingProgress) -> Void)? = nil,
        onEpoch: ((EpochMetrics, TrainingState) throws -> Void)? = nil
    ) throws {
        guard train.dimension == model.configuration.dataDimension else {
            throw IWAEError.invalidArgument("data has dimension \(train.dimension) but the model expects \(model.configuration.dataDimension)")
        }
        guard train.count > 0 else { throw IWAEError.invalidData("the training set is empty") }
        if let bad = train.pixels.firstIndex(where: { !$0.isFinite }) {
            throw IWAEError.invalidData("training example \(bad / train.dimension) has a NaN or infinite value")
        }
        if state.batchInEpoch > 0 && order.count != train.count {
            throw IWAEError.invalidCheckpoint("the saved epoch covers \(order.count) examples but the training set has \(train.count)")
        }
        let d = model.configuration.dataDimension
        let batches = (train.count + options.batchSize - 1) / options.batchSize
        while state.batchInEpoch > 0 || state.epoch < options.epochs {
            if state.batchInEpoch == 0 {
                state.epoch += 1
                order = Array(0..<train.count)
                var generator = rng   // a class: shuffling through the local advances `rng`
                order.shuffle(using: &generator)
                state.boundSum = 0
                state.seen = 0
            }
            optimizer.learningRate = options.schedule.learningRate(epoch: state.epoch, base: options.learningRate)
            let start = DispatchTime.now().uptimeNanoseconds
            var lastReport = start
            let seenAtStart = state.seen
            for batchIndex in state.batchInEpoch..<batches {
                let lo = batchIndex * options.batchSize
                let hi = Swift.min(lo + options.batchSize, train.count)
                let n = hi - lo
                if model.configuration.likelihood == .bernoulli {
                    train.binarize(order[lo..<hi], into: batchBuffer.pointer, using: rng)
                } else {
                    train.copy(order[lo..<hi], into: batchBuffer.pointer)
                }
                let x = MatrixView(batchBuffer.pointer, rows: n, columns: d)
                model.store.zeroGradients()
                let bounds = try workers.accumulateGradient(x, objective: options.objective,
                                                            samplesPerExample: options.samplesPerExample,
                                                            estimator: options.estimator, baseline: options.baseline)
                var batchSum = 0.0
                for b in bounds { batchSum += Double(b) }
                guard batchSum.isFinite else {
                    throw IWAEError.numerical("non-finite bound (\(batchSum / Double(n))) at epoch \(state.epoch), step \(state.step + 1); the last checkpoint is kept")
                }
                optimizer.update(model.store)
                state.step += 1
                state.boundSum += batchSum
                state.seen += n
                state.batchInEpoch = batchIndex + 1
                afterStep?(state.step)
                let now = DispatchTime.now().uptimeNanoseconds
                if let onProgress, now - lastReport > 200_000_000 || batchIndex == batches - 1 {
                    lastReport = now
                    onProgress(TrainingProgress(epoch: state.epoch, epochs: options.epochs, batch: batchIndex + 1, batches: batches,
                                                runningBound: state.boundSum / Double(state.seen),
                                                examplesPerSecond: Double(state.seen - seenAtStart) / (Double(now - start) / 1e9)))
                }
                if batchIndex < batches - 1 {
                    if shouldStop() {
                        try onCheckpoint?(currentState)
                        throw IWAEError.interrupted("stopped at epoch \(state.epoch), step \(state.step)")
                    }
                    if let every = checkpointEvery, state.step % every == 0 { try onCheckpoint?(currentState) }
                }
            }
            state.batchInEpoch = 0
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            var validationBound: Double?
            if let v = validationImages, v.count > 0 {
                validationBound = try workers.meanBound(v.matrix, objective: options.objective,
                                                        samplesPerExample: options.samplesPerExample, seed: 0xFA11D)
                guard validationBound!.isFinite else {
                    throw IWAEError.numerical("non-finite validation bound after epoch \(state.epoch), step \(state.step); the last checkpoint is kept")
                }
            }
            let metrics = EpochMetrics(epoch: state.epoch, step: state.step, objective: options.objective.rawValue,
                                       k: options.samplesPerExample, trainBound: state.boundSum / Double(state.seen),
                                       validationBound: validationBound,
                                       examplesPerSecond: Double(state.seen - seenAtStart) / seconds,
                                       seconds: seconds, learningRate: optimizer.learningRate)
            try onEpoch?(metrics, currentState)
            if shouldStop() && state.epoch < options.epochs {
                throw IWAEError.interrupted("stopped after epoch \(state.epoch), step \(state.step)")
            }
        }
    }
}
