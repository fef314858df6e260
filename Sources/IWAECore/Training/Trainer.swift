import Foundation
import IWAELinearAlgebra

/// Examples a `Trainer` draws its minibatches from: N rows of dimension D.
/// `ImageSet` conforms (module IWAE); any array of rows can.
public protocol TrainingExamples {
    /// N.
    var count: Int { get }
    /// D.
    var dimension: Int { get }
    /// Writes the rows `indices` into `out` (indices.count × D values, row
    /// by row, in order). With `binarize`, each value v becomes 1 with
    /// probability v (drawn from `rng`, in row-major order), else 0;
    /// otherwise the values are copied.
    func write(_ indices: ArraySlice<Int>, binarize: Bool, using rng: Xoshiro256, into out: inout MutableSpan<Float>)
    /// The index of the first row holding a NaN or infinity, or nil.
    func firstNonFiniteRow() -> Int?
}

package extension TrainingExamples {
    /// `write` into a buffer the package owns, of indices.count × D values.
    func write(_ indices: ArraySlice<Int>, binarize: Bool, using rng: Xoshiro256, into out: UnsafeMutablePointer<Float>) {
        var span = UnsafeMutableBufferPointer(start: out, count: indices.count * dimension).mutableSpan
        write(indices, binarize: binarize, using: rng, into: &span)
    }
}

/// Trains a model with Adam on minibatches (see `TrainingOptions`),
/// evaluating the bound on a held-out split after every epoch.
///
/// Across ranks (`RankGroup`), every rank runs a Trainer on the same data with
/// the same options: all draw the same epoch order and binarization, each
/// computes its workers' share of every batch, the gradient is summed across
/// ranks, and every rank takes the same Adam step. Failures and stop requests
/// are agreed on, so that all ranks leave together.
public final class Trainer {
    public let model: VariationalAutoencoder<Float>
    public let options: TrainingOptions
    public let optimizer: Adam<Float>
    public let workers: ModelWorkers<Float>
    public var epoch: Int { state.epoch }
    public var step: Int { state.step }
    /// The processes training this model together.
    package var ranks: RankGroup { workers.ranks }
    var state = TrainingState()
    /// Whether the run has begun: the output layer initialized, or a saved state restored.
    var begun = false
    var order: [Int] = []
    let rng: Xoshiro256
    private var batchBuffer: Tensor<Float>
    /// The next batch of the epoch, written during the last Adam update
    /// from `ahead`, a copy of `rng`: `rng` takes `ahead`'s state only when
    /// the batch is used, so a state saved in between is the one a run that
    /// wrote the batch afterwards would save.
    private var nextBatch: Tensor<Float>
    private let ahead = Xoshiro256(seed: 0)
    /// Which batch of the epoch `nextBatch` holds, if any.
    var prefetched: Int?
    private let validationImages: Tensor<Float>?

    /// `validation` holds the held-out examples as the model sees them (binary
    /// images binarized once for a Bernoulli likelihood), or nil for none.
    public convenience init(model: VariationalAutoencoder<Float>, options: TrainingOptions,
                            validation: (any TrainingExamples)?) throws {
        try self.init(model: model, options: options, validation: validation, ranks: SingleRank())
    }

    /// The trainer of this rank of `ranks` (see the class's discussion).
    package init(model: VariationalAutoencoder<Float>, options: TrainingOptions, validation: (any TrainingExamples)?,
                 ranks: RankGroup) throws {
        try options.checkMemory(for: model.configuration)
        try options.objective.check(for: model.configuration)
        if let validation, validation.dimension != model.configuration.dataDimension {
            throw IWAEError.invalidArgument("validation data has dimension \(validation.dimension) but the model expects \(model.configuration.dataDimension)")
        }
        self.model = model
        self.options = options
        optimizer = Adam(count: model.store.values.count, learningRate: options.learningRate, epsilon: options.adamEpsilon)
        rng = Xoshiro256(seed: options.seeds.shuffling)
        workers = ModelWorkers(model: model, workers: options.workers, seed: options.seeds.workers, ranks: ranks)
        if ranks.count > 1 {
            var counts = [UInt64](repeating: 0, count: ranks.count)
            counts[ranks.rank] = UInt64(workers.workerCount)
            counts.withUnsafeMutableBufferPointer { ranks.merge($0) }
            if Set(counts).count > 1 {   // seen alike by every rank: agree() throws on all
                try ranks.agree(IWAEError.invalidArgument("every rank needs the same number of worker threads; the ranks have \(counts.map(String.init).joined(separator: ", "))"))
            }
        }
        state.plan = Trainer.agreedPlan(model: model, options: options, workers: workers)
        workers.plan = state.plan!
        batchBuffer = Tensor(shape: [options.batchSize, model.configuration.dataDimension])
        nextBatch = Tensor(shape: [options.batchSize, model.configuration.dataDimension])
        validationImages = validation.map { v in
            let t = Tensor<Float>(shape: [v.count, v.dimension])
            v.write(Array(0..<v.count)[...], binarize: false, using: Xoshiro256(seed: 0), into: t.pointer)
            return t
        }
    }

    /// The run's compute plan (`options.gemm`, `options.precision`) for a
    /// worker's share of a batch: made by rank 0 and sent to every rank,
    /// which all compute with it.
    private static func agreedPlan(model: VariationalAutoencoder<Float>, options: TrainingOptions,
                                   workers: ModelWorkers<Float>) -> ComputePlan {
        let ranks = workers.ranks
        var plan = ranks.rank == 0 || options.gemm != .auto
            ? workers.trainingPlan(batchSize: options.batchSize, objective: options.objective, gemm: options.gemm, precision: options.precision)
            : ComputePlan(precision: options.precision)
        if ranks.count > 1 {
            let sites = model.productSites(examples: workers.examplesPerWorker(batchSize: options.batchSize),
                                           drawsPerExample: options.objective.drawsPerExample).keys.sorted()
            // Each site's kernel as its index among all kernels, sent by rank 0 (the others send zeros).
            let all = ProductKernel.allCases
            var words = sites.map { ranks.rank == 0 ? UInt64(all.firstIndex(of: plan.kernel(for: $0))!) : 0 }
            words.withUnsafeMutableBufferPointer { ranks.merge($0) }
            plan = ComputePlan(precision: options.precision, Dictionary(uniqueKeysWithValues: zip(sites, words.map { all[Int($0)] })))
        }
        return plan
    }

    /// The compute plan this run computes with.
    public var plan: ComputePlan { state.plan ?? ComputePlan(precision: options.precision) }

    /// Trains until `options.epochs` epochs are complete, from the current state.
    ///
    /// A new run (not `restore`d) begins by initializing the model's output
    /// layer from `train` (`options.outputInitialization`, the bias at the
    /// data mean; `.unchanged` keeps a loaded model's) and handing its
    /// starting state to `onCheckpoint`. Every `checkpointEvery` steps
    /// within an epoch `onCheckpoint` receives the state (the caller saves); at each epoch's end `onEpoch` receives
    /// the metrics and the state. When `shouldStop` turns true (a signal) the
    /// state goes to `onCheckpoint` and `IWAEError.interrupted` is thrown. A
    /// non-finite bound stops training with an error naming the step, before
    /// the bad gradient reaches the parameters.
    public func train(
        _ train: some TrainingExamples,
        checkpointEvery: Int? = nil,
        shouldStop: () -> Bool = { false },
        afterStep: ((Int) -> Void)? = nil,
        onCheckpoint: ((TrainingState) throws -> Void)? = nil,
        onProgress: ((TrainingProgress) -> Void)? = nil,
        onEpoch: ((EpochMetrics, TrainingState) throws -> Void)? = nil
    ) throws {
        try ranks.together {
            guard train.dimension == model.configuration.dataDimension else {
                throw IWAEError.invalidArgument("data has dimension \(train.dimension) but the model expects \(model.configuration.dataDimension)")
            }
            guard train.count > 0 else { throw IWAEError.invalidData("the training set is empty") }
            if let bad = train.firstNonFiniteRow() {
                throw IWAEError.invalidData("training example \(bad) has a NaN or infinite value")
            }
            try checkResumedState(trainCount: train.count)
            if !begun { try model.initializeOutputLayer(from: train, options.outputInitialization) }
        }
        if !begun {
            begun = true
            try handOver { try onCheckpoint?($0) }
        }
        let d = model.configuration.dataDimension
        prefetched = nil
        let batches = TrainingOptions.batchesPerEpoch(examples: train.count, batchSize: options.batchSize)
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
            /// Batch `index` of the epoch's order into `buffer` (binarized from `generator` for a Bernoulli likelihood).
            func write(batch index: Int, using generator: Xoshiro256, into buffer: Tensor<Float>) {
                let lo = index * options.batchSize
                train.write(order[lo..<Swift.min(lo + options.batchSize, train.count)],
                            binarize: model.configuration.likelihood == .bernoulli, using: generator, into: buffer.pointer)
            }
            for batchIndex in state.batchInEpoch..<batches {
                let lo = batchIndex * options.batchSize
                let n = Swift.min(lo + options.batchSize, train.count) - lo
                if prefetched == batchIndex {
                    swap(&batchBuffer, &nextBatch)
                    rng.restore(state: ahead.state)
                } else {
                    write(batch: batchIndex, using: rng, into: batchBuffer)
                }
                prefetched = nil
                let x = MatrixView(batchBuffer.pointer, rows: n, columns: d)
                let bounds = try workers.stepGradient(x, objective: options.objective)
                var batchSum = 0.0
                for b in bounds { batchSum += Double(b) }
                guard batchSum.isFinite else {   // the same on every rank: all agree and stop
                    try ranks.failTogether(IWAEError.numerical("non-finite bound (\(batchSum / Double(n))) at epoch \(state.epoch), step \(state.step + 1); the last checkpoint is kept"))
                }
                // The next batch of this epoch is written while the other workers start on Adam's update.
                let next = batchIndex + 1
                workers.updateParameters(with: optimizer) {
                    guard next < batches else { return }
                    ahead.restore(state: rng.state)
                    write(batch: next, using: ahead, into: nextBatch)
                    prefetched = next
                }
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
                    if ranks.anyRank(shouldStop()) {
                        try handOver { try onCheckpoint?($0) }
                        throw IWAEError.interrupted("stopped at epoch \(state.epoch), step \(state.step)")
                    }
                    if let every = checkpointEvery, state.step % every == 0 {
                        try handOver { try onCheckpoint?($0) }
                    }
                }
            }
            state.batchInEpoch = 0
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            var validationBound: Double?
            if let v = validationImages, v.count > 0 {
                validationBound = try workers.meanBound(v.matrix, objective: options.objective,
                                                        seed: SeedStreams.validationBound)
                guard validationBound!.isFinite else {
                    try ranks.failTogether(IWAEError.numerical("non-finite validation bound after epoch \(state.epoch), step \(state.step); the last checkpoint is kept"))
                }
            }
            let metrics = EpochMetrics(epoch: state.epoch, step: state.step, objective: options.objective.label,
                                       k: options.objective.samplesPerExample, trainBound: state.boundSum / Double(state.seen),
                                       validationBound: validationBound,
                                       examplesPerSecond: Double(state.seen - seenAtStart) / seconds,
                                       seconds: seconds, learningRate: optimizer.learningRate)
            try handOver { try onEpoch?(metrics, $0) }
            if ranks.anyRank(shouldStop()) && state.epoch < options.epochs {
                throw IWAEError.interrupted("stopped after epoch \(state.epoch), step \(state.step)")
            }
        }
    }
}
