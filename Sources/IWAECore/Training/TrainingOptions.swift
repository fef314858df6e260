import Foundation
import IWAELinearAlgebra

/// How the learning rate moves over epochs.
public enum LearningRateSchedule: String, Codable, Sendable, CaseIterable {
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

/// What a training run does: made by one throwing initializer, which holds
/// every default and every check (the command-line tools take their
/// defaults from `TrainingOptions.defaults`), so a value that exists is valid.
public struct TrainingOptions: Codable, Equatable, Sendable {
    /// The bound, K, the estimator and its baseline, checked together when made.
    public let objective: Objective
    public let epochs: Int
    public let batchSize: Int
    public let learningRate: Double
    public let schedule: LearningRateSchedule
    /// Adam's ε (the IWAE paper uses 10⁻⁴).
    public let adamEpsilon: Double
    /// The decoder's output layer at the start of a run (`Trainer` applies it).
    public let outputInitialization: OutputInitialization
    /// The seed of every random stream of the run (see `seeds`).
    package let seed: UInt64
    /// Cores to split each batch over (nil: all active cores). Results
    /// are reproducible for a given seed and worker count.
    public let workers: Int?
    /// The library of the Float products; the plan it gives (with
    /// `precision`) is made once and recorded in `TrainingState.plan`.
    public let gemm: GEMMChoice
    /// The inputs of the layers' products: fp32, or bf16 with fp32
    /// accumulation (`Precision`), asked of the planner with `gemm`.
    /// Recorded in checkpoints; a resumed run keeps it.
    public let precision: Precision

    /// Checks every value (the objective was checked when it was made);
    /// throws a one-line error naming the bad one.
    public init(objective: Objective = .standard, epochs: Int = 5, batchSize: Int = 100,
                learningRate: Double = 1e-3, schedule: LearningRateSchedule = .constant, adamEpsilon: Double = 1e-4,
                outputInitialization: OutputInitialization = .glorot, seed: UInt64 = 1, workers: Int? = nil,
                gemm: GEMMChoice = .auto, precision: Precision = .fp32) throws {
        guard batchSize >= 1 else { throw IWAEError.invalidArgument("batch must be at least 1, got \(batchSize)") }
        guard epochs >= 0 else { throw IWAEError.invalidArgument("epochs must be at least 0, got \(epochs)") }
        guard learningRate.isFinite, learningRate > 0 else {
            throw IWAEError.invalidArgument("learning rate must be finite and positive, got \(learningRate)")
        }
        if let workers, !(1...TrainingOptions.maximumWorkers).contains(workers) {
            throw IWAEError.invalidArgument("threads must be between 1 and \(TrainingOptions.maximumWorkers), got \(workers)")
        }
        guard adamEpsilon.isFinite, adamEpsilon > 0 else {
            throw IWAEError.invalidArgument("Adam epsilon must be finite and positive, got \(adamEpsilon)")
        }
        self.objective = objective
        self.epochs = epochs
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.schedule = schedule
        self.adamEpsilon = adamEpsilon
        self.outputInitialization = outputInitialization
        self.seed = seed
        self.workers = workers
        self.gemm = gemm
        self.precision = precision
    }

    /// The defaults, as `TrainingOptions()` makes them (they pass its checks).
    public static let defaults = try! TrainingOptions()

    /// These options with the ones given changed, checked again.
    public func with(objective: Objective? = nil, epochs: Int? = nil, batchSize: Int? = nil, learningRate: Double? = nil,
                     schedule: LearningRateSchedule? = nil, adamEpsilon: Double? = nil,
                     outputInitialization: OutputInitialization? = nil, seed: UInt64? = nil, workers: Int?? = nil,
                     gemm: GEMMChoice? = nil, precision: Precision? = nil) throws -> TrainingOptions {
        try TrainingOptions(objective: objective ?? self.objective, epochs: epochs ?? self.epochs, batchSize: batchSize ?? self.batchSize,
                            learningRate: learningRate ?? self.learningRate, schedule: schedule ?? self.schedule,
                            adamEpsilon: adamEpsilon ?? self.adamEpsilon,
                            outputInitialization: outputInitialization ?? self.outputInitialization, seed: seed ?? self.seed,
                            workers: workers ?? self.workers, gemm: gemm ?? self.gemm, precision: precision ?? self.precision)
    }

    /// The record's keys. The objective's fields sit beside the others
    /// (`objective` names its bound), as checkpoints have always held them;
    /// `groups` (M) and `beta` (β) are written only for the bounds that have them.
    enum CodingKeys: String, CodingKey {
        case objective, samplesPerExample, estimator, baseline, groups, beta
        case epochs, batchSize, learningRate, schedule, adamEpsilon, outputInitialization, seed, workers, gemm, precision
    }

    /// Decodes a record through the checking initializers (the objective's and this one);
    /// one written before `outputInitialization` existed reads as `.glorot`,
    /// one before `gemm` as `.openblas`, one before `precision` as `.fp32`:
    /// what those runs did.
    public init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(objective: Objective(c.decode(BoundKind.self, forKey: .objective),
                                           samplesPerExample: c.decode(Int.self, forKey: .samplesPerExample),
                                           estimator: c.decode(GradientEstimator.self, forKey: .estimator),
                                           baseline: c.decode(ScoreBaseline.self, forKey: .baseline),
                                           groups: c.decodeIfPresent(Int.self, forKey: .groups) ?? 1,
                                           beta: c.decodeIfPresent(Double.self, forKey: .beta)),
                      epochs: c.decode(Int.self, forKey: .epochs),
                      batchSize: c.decode(Int.self, forKey: .batchSize),
                      learningRate: c.decode(Double.self, forKey: .learningRate),
                      schedule: c.decode(LearningRateSchedule.self, forKey: .schedule),
                      adamEpsilon: c.decode(Double.self, forKey: .adamEpsilon),
                      outputInitialization: c.decodeIfPresent(OutputInitialization.self, forKey: .outputInitialization) ?? .glorot,
                      seed: c.decode(UInt64.self, forKey: .seed),
                      workers: c.decodeIfPresent(Int.self, forKey: .workers),
                      gemm: c.decodeIfPresent(GEMMChoice.self, forKey: .gemm) ?? .openblas,
                      precision: c.decodeIfPresent(Precision.self, forKey: .precision) ?? .fp32)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(objective.bound, forKey: .objective)
        try c.encode(objective.samplesPerExample, forKey: .samplesPerExample)
        try c.encode(objective.estimator, forKey: .estimator)
        try c.encode(objective.baseline, forKey: .baseline)
        if objective.groups != 1 { try c.encode(objective.groups, forKey: .groups) }
        try c.encodeIfPresent(objective.beta, forKey: .beta)
        try c.encode(epochs, forKey: .epochs)
        try c.encode(batchSize, forKey: .batchSize)
        try c.encode(learningRate, forKey: .learningRate)
        try c.encode(schedule, forKey: .schedule)
        try c.encode(adamEpsilon, forKey: .adamEpsilon)
        try c.encode(outputInitialization, forKey: .outputInitialization)
        try c.encode(seed, forKey: .seed)
        try c.encodeIfPresent(workers, forKey: .workers)
        try c.encode(gemm, forKey: .gemm)
        try c.encode(precision, forKey: .precision)
    }

    /// Batches of an epoch over `examples`: ⌈examples / batchSize⌉, the last
    /// one short. Never overflows, whatever the sizes a file holds.
    package static func batchesPerEpoch(examples: Int, batchSize: Int) -> Int {
        examples / batchSize + (examples % batchSize == 0 ? 0 : 1)
    }

    /// The most worker threads a run may ask for (each holds a model replica).
    package static let maximumWorkers = 256

    /// The run's named random streams, all derived from `seed`.
    public var seeds: SeedStreams { SeedStreams(seed: seed) }
}

/// The random streams of a training run, each derived from one seed. A
/// stream's seed never changes meaning: checkpoints and resumed runs rely on it.
public struct SeedStreams: Sendable {
    public let seed: UInt64
    /// Glorot initialization of the parameters.
    public var initialization: UInt64 { seed }
    /// The epoch orders and the dynamic binarization of training batches (one stream).
    public var shuffling: UInt64 { seed }
    /// The samplers of the data-parallel workers (worker w offsets it, see `ModelWorkers`).
    public var workers: UInt64 { seed &+ 1 }
    /// The choice of held-out validation examples.
    public var validationSplit: UInt64 { seed ^ 0x5B11 }
    /// The draws of the per-epoch validation bound (the same every epoch and run).
    public static let validationBound: UInt64 = 0xFA11D
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

/// Where a run stands, beyond parameters and optimizer moments: what a
/// checkpoint needs so that a resumed run continues bit for bit.
public struct TrainingState: Codable, Sendable, Equatable {
    /// The largest step, epoch or example count a saved state may hold (2⁴⁰:
    /// far beyond any run, far from overflow).
    package static let maximumCount = 1 << 40

    /// The epoch in progress (1-based), or the last completed one when `batchInEpoch` is 0.
    public var epoch = 0
    /// Optimizer steps taken.
    public var step = 0
    /// Batches of `epoch` done; 0 at an epoch boundary.
    package var batchInEpoch = 0
    /// The current epoch's order of training examples (empty at a boundary).
    package var order: [Int32] = []
    /// Running sums of the epoch's train bound.
    package var boundSum = 0.0
    package var seen = 0
    /// States of the shuffling/binarization generator and of each worker's sampler.
    package var generator: [UInt64] = []
    package var workerGenerators: [[UInt64]] = []
    /// The kernel of each product site, made at the run's start and kept
    /// to its end (nil in states saved before plans existed: all OpenBLAS).
    /// Saved under `gemmPlan`, the name it has always had in checkpoints.
    public var plan: ComputePlan?

    package init() {}

    enum CodingKeys: String, CodingKey {
        case epoch, step, batchInEpoch, order, boundSum, seen, generator, workerGenerators
        case plan = "gemmPlan"
    }

    public init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        epoch = try c.decode(Int.self, forKey: .epoch)
        step = try c.decode(Int.self, forKey: .step)
        batchInEpoch = try c.decode(Int.self, forKey: .batchInEpoch)
        order = try c.decode([Int32].self, forKey: .order)
        boundSum = try c.decode(Double.self, forKey: .boundSum)
        seen = try c.decode(Int.self, forKey: .seen)
        generator = try c.decode([UInt64].self, forKey: .generator)
        workerGenerators = try c.decode([[UInt64]].self, forKey: .workerGenerators)
        plan = try c.decodeIfPresent(ComputePlan.self, forKey: .plan)
    }

    /// Checks the state against the run it belongs to: counters in range,
    /// the order a permutation of the training examples, and what derives
    /// from them (the examples seen in the epoch, the step count, Adam's
    /// step) equal to what the trainer would have made. Throws one line.
    package func validate(batchSize: Int, trainCount: Int, optimizerStep: Int?) throws {
        guard (0...TrainingState.maximumCount).contains(step), (0...TrainingState.maximumCount).contains(epoch),
              (0...TrainingState.maximumCount).contains(seen), boundSum.isFinite, batchSize >= 1, trainCount >= 1 else {
            throw IWAEError.invalidArgument("the training state's counters are out of range")
        }
        let batches = TrainingOptions.batchesPerEpoch(examples: trainCount, batchSize: batchSize)
        guard batchInEpoch >= 0, batchInEpoch < batches, batchInEpoch == 0 || epoch >= 1 else {
            throw IWAEError.invalidArgument("the training state is at batch \(batchInEpoch) of an epoch of \(batches)")
        }
        if batchInEpoch > 0, order.count != trainCount {
            throw IWAEError.invalidArgument("the epoch's order holds \(order.count) examples, the run trains on \(trainCount)")
        }
        let expectedSeen = batchInEpoch > 0 ? batchInEpoch * batchSize : (epoch == 0 ? 0 : trainCount)
        guard seen == expectedSeen else {
            throw IWAEError.invalidArgument("the training state counts \(seen) examples seen in the epoch; its position (batch \(batchInEpoch) of \(batchSize) examples) says \(expectedSeen)")
        }
        let completed = batchInEpoch > 0 ? epoch - 1 : epoch
        guard completed <= TrainingState.maximumCount / batches, completed * batches + batchInEpoch == step else {
            throw IWAEError.invalidArgument("the training state's step \(step) does not match epoch \(epoch), batch \(batchInEpoch) (\(batches) batches per epoch)")
        }
        if let optimizerStep, optimizerStep != step {
            throw IWAEError.invalidArgument("Adam has taken \(optimizerStep) steps but the training state \(step)")
        }
    }
}

