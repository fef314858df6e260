import Foundation

/// How a checkpoint's model was trained: everything `iwae train --resume`
/// needs besides the tensors, as typed values.
public struct TrainingRecord: Codable, Equatable, Sendable {
    public var options: TrainingOptions
    public var data: DataSource
    /// The first N training images only (`--train-examples`), or all.
    public var trainExamplesLimit: Int?
    /// Training images held out for the validation bound (requested).
    public var validationExamples: Int
    /// Worker threads of the run (bit-exact resume needs the same count).
    public var threads: Int
    /// Images actually used for training and validation.
    public var trainCount: Int
    public var validationCount: Int

    public init(options: TrainingOptions, data: DataSource, trainExamplesLimit: Int?, validationExamples: Int,
                threads: Int, trainCount: Int, validationCount: Int) {
        self.options = options
        self.data = data
        self.trainExamplesLimit = trainExamplesLimit
        self.validationExamples = validationExamples
        self.threads = threads
        self.trainCount = trainCount
        self.validationCount = validationCount
    }

    enum CodingKeys: String, CodingKey {
        case options, data, trainExamplesLimit, validationExamples, threads, trainCount, validationCount
    }

    public init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(options: try c.decode(TrainingOptions.self, forKey: .options), data: try c.decode(DataSource.self, forKey: .data),
                  trainExamplesLimit: try c.decodeIfPresent(Int.self, forKey: .trainExamplesLimit),
                  validationExamples: try c.decode(Int.self, forKey: .validationExamples), threads: try c.decode(Int.self, forKey: .threads),
                  trainCount: try c.decode(Int.self, forKey: .trainCount), validationCount: try c.decode(Int.self, forKey: .validationCount))
    }

    /// Checks the values the options and the data source (checked when
    /// they were decoded) do not hold, and the counts against each other;
    /// throws a one-line error naming the bad one.
    package func validate() throws {
        if let n = trainExamplesLimit, !(1...TrainingState.maximumCount).contains(n) {
            throw IWAEError.invalidArgument("--train-examples must be at least 1, got \(n)")
        }
        guard (0...TrainingState.maximumCount).contains(validationExamples) else {
            throw IWAEError.invalidArgument("--validation-examples must be at least 0, got \(validationExamples)")
        }
        guard (1...TrainingOptions.maximumWorkers).contains(threads) else {
            throw IWAEError.invalidArgument("threads must be between 1 and \(TrainingOptions.maximumWorkers), got \(threads)")
        }
        guard (1...TrainingState.maximumCount).contains(trainCount), (0...validationExamples).contains(validationCount),
              trainCount <= (trainExamplesLimit ?? TrainingState.maximumCount) else {
            throw IWAEError.invalidArgument("the run's example counts do not fit together (\(trainCount) trained, \(validationCount) held out of \(validationExamples) requested, limit \(trainExamplesLimit.map(String.init) ?? "none"))")
        }
    }
}

/// Adam's step and moments, for resuming.
public struct OptimizerState: Equatable, Sendable {
    public var step: Int
    public var firstMoment: [Float]
    public var secondMoment: [Float]

    public init(_ adam: Adam<Float>) {
        step = adam.step
        firstMoment = adam.firstMoment.array
        secondMoment = adam.secondMoment.array
    }

    init(step: Int, firstMoment: [Float], secondMoment: [Float]) {
        self.step = step
        self.firstMoment = firstMoment
        self.secondMoment = secondMoment
    }
}
