import Foundation

/// One training run in its output directory, as `iwae train` and
/// `iwae resume` run it: the directory's lock, the model made from the seed
/// or restored from the checkpoint, the trainer, the checkpoints (with the
/// typed `TrainingRecord` that a resume reads back), `metrics.jsonl`, and
/// stop requests. The command line parses options, builds a run, and prints
/// what `TrainingRun.Events` reports.
///
///     let run = try TrainingRun(directory: "runs/a", configuration: configuration, options: options,
///                               data: .files("fashion-mnist"))
///     try run.train(examples: .images(try run.data.load(.train)), resuming: nil)
///     let (again, examples, checkpoint) = try TrainingRun.resuming("runs/a")
///     try again.train(examples: examples, resuming: checkpoint)
public struct TrainingRun {
    public let directory: String
    public let configuration: ModelConfiguration
    public let options: TrainingOptions
    public let data: DataSource
    /// The first N training examples only, or all.
    public let trainExamplesLimit: Int?
    /// Training examples held out for the per-epoch validation bound; nil:
    /// as `iwae train` holds out when `--validation-examples` is not given
    /// (5,000 images, a tenth of a table's rows up to 5,000).
    public let validationExamples: Int?
    /// Also a checkpoint every N steps within an epoch (nil: at epoch ends only).
    public let checkpointEvery: Int?

    /// Checks the run's own values (`options` and `configuration` were
    /// checked when they were made); throws one line naming the bad one.
    public init(directory: String, configuration: ModelConfiguration, options: TrainingOptions, data: DataSource,
                trainExamplesLimit: Int? = nil, validationExamples: Int? = nil, checkpointEvery: Int? = nil) throws {
        guard !directory.isEmpty else { throw IWAEError.invalidArgument("missing --out DIR (or --resume DIR)") }
        if let n = trainExamplesLimit, n < 1 { throw IWAEError.invalidArgument("--train-examples must be at least 1, got \(n)") }
        if let n = validationExamples, n < 0 { throw IWAEError.invalidArgument("--validation-examples must be at least 0, got \(n)") }
        if let n = checkpointEvery, n < 1 { throw IWAEError.invalidArgument("--checkpoint-every must be at least 1, got \(n)") }
        self.directory = directory
        self.configuration = configuration
        self.options = options
        self.data = data
        self.trainExamplesLimit = trainExamplesLimit
        self.validationExamples = validationExamples
        self.checkpointEvery = checkpointEvery
    }

    /// The examples held out of `examples`: `validationExamples`, or when
    /// none are asked for 5,000 of a set of images (the paper's protocol), a
    /// tenth of a table's training rows up to 5,000.
    func validationCount(for examples: Examples) -> Int {
        if let validationExamples { return validationExamples }
        if case .images = examples { return TrainingRun.defaultValidationExamples }
        return Swift.min(TrainingRun.defaultValidationExamples, examples.count / 10)
    }

    /// The held-out images of the paper's protocol, and the most held out of a table by default.
    static let defaultValidationExamples = 5000

    /// What a run reports as it goes; the command line prints it.
    public struct Events {
        /// A line for the log (what the run does, each epoch's summary).
        public var log: (String) -> Void
        /// Progress within an epoch, a few times a second.
        public var progress: (TrainingProgress) -> Void

        public init(log: @escaping (String) -> Void = { _ in }, progress: @escaping (TrainingProgress) -> Void = { _ in }) {
            self.log = log
            self.progress = progress
        }
    }

    /// The run in `directory`, to be continued with the options its
    /// checkpoint records (`epochs` may extend it), on `ranks` processes
    /// that share its worker threads: the checkpoint loaded and checked (a
    /// damaged training state or optimizer refuses here, in one line), its
    /// options made again through their checking initializer (the trainer
    /// checks the memory as for a new run), the training images loaded.
    public static func resuming(_ directory: String, epochs: Int? = nil, checkpointEvery: Int? = nil,
                                ranks: Int = 1) throws -> (run: TrainingRun, examples: Examples, checkpoint: Checkpoint) {
        let checkpoint = try Checkpoint.load(from: directory)
        if let damage = checkpoint.resumeDamage {
            throw IWAEError.invalidCheckpoint("\(Checkpoint.path(for: directory)): cannot resume: \(damage) (the parameters are intact: evaluate and sample still read them)")
        }
        guard let record = checkpoint.training, let data = checkpoint.data, checkpoint.optimizer != nil,
              checkpoint.trainingState != nil else {
            throw IWAEError.invalidCheckpoint("\(Checkpoint.path(for: directory)) has no training state to resume from")
        }
        guard record.threads % ranks == 0 else {
            throw IWAEError.invalidArgument("the run used \(record.threads) worker threads in all; resume it on a number of ranks that divides \(record.threads), not \(ranks)")
        }
        let options = try record.options.with(epochs: epochs, workers: record.threads / ranks)
        let run = try TrainingRun(directory: directory, configuration: checkpoint.model.configuration, options: options, data: data,
                                  trainExamplesLimit: record.trainExamplesLimit, validationExamples: record.validationExamples,
                                  checkpointEvery: checkpointEvery)
        return (run, try data.loadTraining().examples, checkpoint)
    }

    /// Trains on `examples` (images or a table's training rows, the first
    /// `trainExamplesLimit` of them): a new run (the model made from the
    /// seed, its output layer initialized by the trainer, a first checkpoint
    /// written), or, from `checkpoint`, the continuation of one, bit for bit
    /// (same seed streams, order and position). When `shouldStop` turns true
    /// (a signal) a checkpoint is written and `IWAEError.interrupted` thrown.
    public func train(examples: Examples, resuming checkpoint: Checkpoint?,
                      shouldStop: @escaping () -> Bool = { false }, events: Events = Events()) throws {
        try train(examples: examples, resuming: checkpoint, ranks: SingleRank(), shouldStop: shouldStop, events: events, faults: .none)
    }

    /// `train(examples:resuming:shouldStop:events:)` on `ranks`, with `faults` injected (the tools' tests).
    ///
    /// Across ranks every rank runs this with the same arguments; rank 0
    /// alone holds the directory's lock and writes checkpoints and metrics.
    /// Each phase that can fail on one rank only ends in an agreement
    /// (`RankGroup.together`), so all ranks stop together.
    package func train(examples: Examples, resuming checkpoint: Checkpoint?, ranks: RankGroup,
                       shouldStop: @escaping () -> Bool, events: Events, faults: FaultInjection) throws {
        let images = trainExamplesLimit.map { examples.prefix($0) } ?? examples
        let writes = ranks.rank == 0
        let seeds = options.seeds
        let (model, split, heldOut) = try ranks.together {
            if writes {
                _ = try RunDirectory.create(directory)
                try RunDirectory.lock(directory)
                RunDirectory.removeOrphanedTemporaries(in: directory)
            }
            let split = try images.splitValidation(count: validationCount(for: images), seed: seeds.validationSplit)
            // The trainer initializes the output layer of a new run; a
            // resumed run takes every parameter from its checkpoint below.
            let model = VariationalAutoencoder<Float>(configuration, seed: seeds.initialization)
            let heldOut: DataTable? = split.validation.count > 0
                ? try DataTable(values: model.evaluationRows(split.validation).array, rows: split.validation.count,
                                columns: split.validation.dimension, name: "validation rows")
                : nil
            return (model, split, heldOut)
        }
        let trainer = try Trainer(model: model, options: options, validation: heldOut, ranks: ranks)
        try ranks.together {
            guard let checkpoint else { return }
            guard let saved = checkpoint.optimizer, let state = checkpoint.trainingState,
                  saved.firstMoment.count == model.store.values.count else {
                throw IWAEError.invalidCheckpoint("the checkpoint in \(directory) does not match its own training record")
            }
            model.store.values.pointer.update(from: checkpoint.model.store.values.pointer, count: model.store.values.count)
            model.store.valuesChanged()
            trainer.optimizer.restore(step: saved.step, firstMoment: saved.firstMoment, secondMoment: saved.secondMoment)
            try trainer.restore(state)
        }
        let record = TrainingRecord(options: options, data: data, trainExamplesLimit: trainExamplesLimit,
                                    validationExamples: validationCount(for: images), threads: trainer.workers.totalWorkerCount,
                                    trainCount: split.train.count, validationCount: split.validation.count)
        let imageSize = images.imageSize.map { Checkpoint.ImageSize(width: $0.width, height: $0.height) }
        events.log(startLine(trainer, split: split, resumed: checkpoint?.trainingState, ranks: ranks))

        func save(_ state: TrainingState) throws {
            try faults.checkSave(at: state.step)
            // Never replace a good checkpoint with values that are no longer finite.
            let finite = { (t: Tensor<Float>) in t.buffer.allSatisfy { $0.isFinite } }
            guard finite(model.store.values), finite(trainer.optimizer.firstMoment), finite(trainer.optimizer.secondMoment) else {
                throw IWAEError.numerical("the parameters or Adam's moments are not finite at epoch \(state.epoch), step \(state.step) (diverged: try a smaller --learning-rate); the last finite checkpoint in \(directory) is kept")
            }
            guard writes else { return }
            try Checkpoint(model: model, data: data, imageSize: imageSize, training: record, optimizer: trainer.optimizer,
                           trainingState: state).save(to: directory)
        }
        let metricsPath = directory + "/metrics.jsonl"
        let started = Date()
        do {
            try trainer.train(split.train, checkpointEvery: checkpointEvery, shouldStop: shouldStop, afterStep: faults.afterStep,
                              onCheckpoint: save, onProgress: events.progress, onEpoch: { m, state in
                try save(state)
                guard writes else { return }
                try RunDirectory.appendLine(Checkpoint.json(m), to: metricsPath)
                let validation = m.validationBound.map { String(format: "  validation %.2f", $0) } ?? ""
                events.log(String(format: "epoch %d/%d  train %.2f", m.epoch, options.epochs, m.trainBound) + validation
                           + String(format: "  %d ex/s  %.1f s", Int(m.examplesPerSecond), m.seconds))
            })
        } catch IWAEError.interrupted(let message) {
            throw IWAEError.interrupted("\(message); checkpoint saved in \(directory); continue with: iwae resume \(directory)")
        }
        if let line = layoutLine(trainer.workers) { events.log(line) }
        events.log(String(format: "done in %.1f s; checkpoint %@/%@", Date().timeIntervalSince(started), directory, Checkpoint.fileName))
    }

    /// Where this run's steps ran their workers (`WorkerLayout`), when it chose.
    private func layoutLine(_ workers: ModelWorkers<Float>) -> String? {
        let spread = workers.layouts.steps(in: .spread), inTurn = workers.layouts.steps(in: .inTurn)
        guard workers.choosesLayout, spread + inTurn > 0 else { return nil }
        let share = 100 * Double(inTurn) / Double(spread + inTurn)
        return String(format: "steps: %.0f %% with a worker per core, %.0f %% with the workers in turn on one core (chosen by timing the steps as they ran; the same bits either way)",
                      100 - share, share)
    }

    /// The log's first line: what is trained, or where it resumes, and how.
    private func startLine(_ trainer: Trainer, split: (train: Examples, validation: Examples), resumed: TrainingState?,
                           ranks: RankGroup) -> String {
        let how = (ranks.count > 1 ? " on \(ranks.count) ranks × \(trainer.workers.workerCount) threads" : "")
            + "; products: \(trainer.plan.grouped) (--gemm \(options.gemm.rawValue)\(options.precision == .bf16 ? ", bf16 inputs" : ""))"
        if let state = resumed {
            return "resuming \(directory) at epoch \(state.epoch), step \(state.step) (\(options.epochs) epochs in all)\(how)"
        }
        let objective = options.objective
        return "training \(objective.label) K=\(objective.samplesPerExample) on \(split.train.count) \(split.train.noun) (\(split.validation.count) held out), batch \(options.batchSize), \(options.epochs) epochs, \(trainer.model.store.values.count) parameters\(how)"
    }
}
