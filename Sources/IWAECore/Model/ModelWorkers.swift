import Foundation
import IWAELinearAlgebra

/// Runs a model's per-example work on several cores at once: the examples of
/// a batch are split into contiguous blocks, one per worker (`WorkerPool`),
/// each worker a `replica` of the model (shared parameters, own buffers and
/// gradients) with its own random stream (`WorkerStreams`); OpenBLAS runs
/// single-threaded inside each worker. Their gradients are added by
/// `ReplicaGradients`. An estimate of log p(x) (`estimateLogLikelihood`,
/// AIS) instead hands its passes to whichever worker is free (`PassQueue`),
/// with the same result on any worker count.
///
/// Across processes (a `RankGroup` of R ranks with W workers each) the
/// workers are numbered globally: worker g takes the same block of the batch
/// and draws from the same stream as worker g of one process with R·W
/// workers. Results depend on the seed and the worker count, and on nothing else:
/// not on whether a training step's workers run at once or in turn on one
/// thread (`WorkerLayout`, chosen by timing the steps as they run).
///
/// A gradient is computed one way: `stepGradient`, then either
/// `updateParameters(with:)` (a training step: the sum fused into Adam's
/// pass) or `collectGradient()` (the sum in `model.store.gradients`, to read).
public final class ModelWorkers<Scalar: BLASScalar> {
    public let model: VariationalAutoencoder<Scalar>
    /// This process's workers; replicas[0] is `model` itself, and its
    /// gradients receive the others'.
    package let replicas: [VariationalAutoencoder<Scalar>]
    /// The processes that share each batch.
    package let ranks: RankGroup
    /// How the rows of a batch are split among the workers.
    package let pool: WorkerPool
    /// The workers' random streams.
    package let streams: WorkerStreams
    private let gradients: ReplicaGradients<Scalar>
    private let bounds = Tensor<Scalar>(shape: [0])
    /// Bounds and failure flags in transit between ranks, by bit pattern
    /// (kept from step to step: a step allocates nothing).
    private var exchange = [UInt64]()
    /// A training step's `WorkerLayout` when fixed; nil (the default): the
    /// one `layouts` chooses from the steps' times where `choosesLayout`
    /// (otherwise `spread`). Either gives the same bits.
    package var fixedLayout: WorkerLayout?
    /// Whether steps may run in either layout: one process with several
    /// workers (across ranks, a rank's wait on the others would be timed).
    package var choosesLayout: Bool { pool.count > 1 && ranks.count == 1 }
    /// The training steps' times by layout, and the choice they make.
    package private(set) var layouts = LayoutChooser()
    /// The layout of the step under way, and when its gradient began (0: no step to time).
    private var stepLayout = WorkerLayout.spread
    private var stepStart: UInt64 = 0

    /// `workers` (per rank) defaults to the number of active cores. With more
    /// than one worker in all, OpenBLAS is set to one thread per call. Every
    /// rank must have the same number of workers (`Trainer` checks it).
    public convenience init(model: VariationalAutoencoder<Scalar>, workers: Int? = nil, seed: UInt64) {
        self.init(model: model, workers: workers, seed: seed, ranks: SingleRank())
    }

    /// The workers of this rank of `ranks`, numbered among all ranks' workers.
    package init(model: VariationalAutoencoder<Scalar>, workers: Int?, seed: UInt64, ranks: RankGroup) {
        let count = Swift.max(1, workers ?? ProcessInfo.processInfo.activeProcessorCount)
        self.model = model
        self.ranks = ranks
        pool = WorkerPool(count: count, rank: ranks.rank, ranks: ranks.count)
        replicas = [model] + (1..<count).map { _ in model.replica() }
        streams = WorkerStreams(base: seed, pool: pool)
        gradients = ReplicaGradients(replicas: replicas, ranks: ranks)
        if pool.total > 1 { BLASLibrary.threads = 1 }
        BLASLibrary.warnIfFallback()
    }

    /// The compute plan (precision and kernels) of the model and every
    /// replica. Set it between steps, never while the workers compute.
    public var plan: ComputePlan {
        get { model.plan }
        set { for replica in replicas { replica.plan = newValue } }
    }

    /// This process's workers (W).
    public var workerCount: Int { pool.count }
    /// Workers over all ranks (R·W).
    package var totalWorkerCount: Int { pool.total }
    /// The global index of this process's first worker.
    package var firstWorker: Int { pool.first }
    /// The workers' random streams (worker `firstWorker + j` is `generators[j]`).
    package var generators: [Xoshiro256] { streams.generators }

    /// A training step's gradient of ∇(−mean_b bound_b) over all B rows of
    /// `x`, each local worker's block on its replica. In one process the
    /// replicas' gradients stay apart, for `updateParameters(with:)` or
    /// `collectGradient()`; across ranks they are added, and the sum
    /// exchanged, so that every rank leaves with the same summed gradient and
    /// all B bounds. An error on any rank is thrown on all
    /// (`RankGroup.agree`). Returns the B bounds. The workers run in the
    /// step's `WorkerLayout`, and `updateParameters` times the step.
    @discardableResult
    @_specialize(exported: true, where Scalar == Float)
    package func stepGradient(_ x: MatrixView<Scalar>, objective: Objective) throws -> UnsafeMutableBufferPointer<Scalar> {
        let n = x.rows
        if bounds.capacity < n { bounds.replace(shape: [n]) }
        let busy = pool.busyWorkers(in: n)
        let scale = 1 / Scalar(n)
        let out = bounds.pointer
        gradients.beginStep()
        stepLayout = fixedLayout ?? (choosesLayout ? layouts.next : .spread)
        stepStart = DispatchTime.now().uptimeNanoseconds
        let errors = WorkerPool.run(busy, inTurn: stepLayout == .inTurn,
                                    firstRow: { self.pool.rows(ofLocal: $0, in: n).lowerBound }) { j in
            let rows = self.pool.rows(ofLocal: j, in: n)
            if rows.isEmpty { return }   // a rank whose workers all sit out a short batch
            let b = try self.replicas[j].accumulateGradient(x.rows(rows), objective: objective,
                                                            using: self.streams.generators[j], lossScale: scale)
            (out + rows.lowerBound).update(from: b.baseAddress!, count: rows.count)
        }
        gradients.finishStep(busy: busy, sum: ranks.count > 1)
        if ranks.count > 1 {
            try exchangeAcrossRanks(bounds: out, count: n, errors: errors)
        } else {
            try errors.rethrow()
        }
        return UnsafeMutableBufferPointer(start: out, count: n)
    }

    /// The plan `Trainer` computes with for batches of `batchSize` rows under
    /// `objective`: each worker's share of a batch planned by `gemm` (`auto`
    /// times each product site on this machine, once, and caches it) in
    /// `precision`, one thread per product when there are several workers.
    public func trainingPlan(batchSize: Int, objective: Objective, gemm: GEMMChoice = .auto,
                             precision: Precision = .fp32) -> ComputePlan {
        let threads = totalWorkerCount > 1 ? 1 : BLASLibrary.threads
        return model.computePlan(gemm, precision: precision, examples: examplesPerWorker(batchSize: batchSize),
                                 drawsPerExample: objective.drawsPerExample, threads: threads)
    }

    /// The most examples one worker takes of a batch of `batchSize` (over all ranks' workers).
    package func examplesPerWorker(batchSize: Int) -> Int {
        (batchSize + totalWorkerCount - 1) / totalWorkerCount
    }

    /// The gradient of the last `stepGradient`, summed into
    /// `model.store.gradients` (for reading it: a training step fuses the sum
    /// into `updateParameters`).
    package func collectGradient() {
        gradients.collect()
    }

    /// The cross-rank half of a step: one exchange of the bounds and the
    /// failure flags, then (with no failure) the gradient sum.
    private func exchangeAcrossRanks(bounds out: UnsafeMutablePointer<Scalar>, count n: Int, errors: WorkerErrors) throws {
        let count = n + ranks.count
        if exchange.count < count { exchange = [UInt64](repeating: 0, count: count) }
        try exchange.withUnsafeMutableBufferPointer { buffer in
            let words = UnsafeMutableBufferPointer(rebasing: buffer[0..<count])
            words.update(repeating: 0)
            for i in pool.rowsOfThisProcess(in: n) { words[i] = Double(out[i]).bitPattern }
            let failure = errors.first
            if failure != nil { words[n + ranks.rank] = 1 }
            ranks.merge(words)
            if (0..<ranks.count).contains(where: { words[n + $0] != 0 }) { try ranks.agree(failure) }
            for i in 0..<n { out[i] = Scalar(Double(bitPattern: words[i])) }
        }
        gradients.sumAcrossRanks()
    }

    /// Data-parallel `estimateLogLikelihood` of the rows of `x`, row b
    /// drawing from stream `firstRow + b`: the workers take the passes
    /// (examplesPerPass rows, from row 0) one at a time (`PassQueue`). Each
    /// row's draws are its own and each pass holds the same rows whatever
    /// the worker count, so the result is the same on any number of threads,
    /// and the same for rows cut into calls at multiples of examplesPerPass
    /// (`firstRow` saying where each call starts).
    @_specialize(exported: true, where Scalar == Float)
    public func estimateLogLikelihood(_ x: MatrixView<Scalar>, samples: EvaluationSamples, seed: UInt64, firstRow: Int = 0,
                                      progress: ((Int) -> Void)? = nil) throws -> LogLikelihoodEstimate {
        let rowsPerPass = EvaluationSamples.rowsPerPass
        let passes = PassQueue(rows: x.rows, perPass: samples.examplesPerPass(rowsPerPass: rowsPerPass))
        let parts = try onWorkers(passes, progress: progress) { replica, progress in
            try replica.estimateLogLikelihood(x, samples: samples, seed: seed, firstRow: firstRow, rowsPerPass: rowsPerPass,
                                              passes: passes, progress: progress)
        }
        return LogLikelihoodEstimate(samples: samples.perExample, layerDimensions: model.configuration.latentDimensions,
                                     concatenating: parts)
    }

    /// Runs `body` on the workers at once (no more of them than passes),
    /// each with its replica, all taking passes from `passes` (the weights
    /// rounded for a bf16 plan's products first, once); worker 0
    /// gets `progress`. `body` returns the results of the passes it took,
    /// by pass; this returns the results of all passes, in pass order.
    package func onWorkers<Result>(_ passes: PassQueue, progress: ((Int) -> Void)?,
                                   _ body: (VariationalAutoencoder<Scalar>, ((Int) -> Void)?) throws -> [Int: Result]) throws -> [Result] {
        model.store.roundValuesForProducts()   // the replicas share the copy
        let active = Swift.max(1, Swift.min(workerCount, passes.count))
        var taken = [[Int: Result]](repeating: [:], count: active)
        let errors = taken.withUnsafeMutableBufferPointer { slots in
            let slotBase = slots.baseAddress!
            // Errors carry their example counted from the first row already.
            return WorkerPool.run(active, firstRow: { _ in 0 }) { w in
                slotBase[w] = try body(self.replicas[w], w == 0 ? progress : nil)
            }
        }
        try errors.rethrow()
        return passes.inPassOrder(taken)
    }

    /// Data-parallel `meanBound` (forward only), over all ranks: global
    /// worker g takes its block with seed `seed + g`, and the workers' sums
    /// are added in worker order on every rank.
    @_specialize(exported: true, where Scalar == Float)
    public func meanBound(_ x: MatrixView<Scalar>, objective: Objective, seed: UInt64) throws -> Double {
        let busy = pool.busyWorkers(in: x.rows)
        var sums = [UInt64](repeating: 0, count: pool.total)
        let errors = sums.withUnsafeMutableBufferPointer { sums in
            let base = sums.baseAddress!
            return WorkerPool.run(busy, firstRow: { self.pool.rows(ofLocal: $0, in: x.rows).lowerBound }) { j in
                let rows = self.pool.rows(ofLocal: j, in: x.rows)
                if rows.isEmpty { return }
                let mean = try self.replicas[j].meanBound(x.rows(rows), objective: objective, seed: seed &+ UInt64(self.pool.first + j))
                base[self.pool.first + j] = (Double(rows.count) * mean).bitPattern
            }
        }
        try ranks.agree(errors.first)
        sums.withUnsafeMutableBufferPointer { ranks.merge($0) }
        return sums.reduce(0.0) { $0 + Double(bitPattern: $1) } / Double(Swift.max(x.rows, 1))
    }
}

// The training step for code outside the package, in Float (the engine's
// training precision): concrete functions, so that a caller in another
// module runs the specialized step, not the generic one.
extension ModelWorkers where Scalar == Float {
    /// A training step's bounds and gradient for a loop of one's own, on
    /// every worker as `Trainer` computes them: the bound of `objective` for
    /// each of the B rows of `x` (returned, B values) and the gradient of
    /// −mean_b bound_b, left in the workers for `updateParameters(with:)`:
    ///
    ///     workers.plan = workers.trainingPlan(batchSize: 100, objective: objective)
    ///     let bounds = try workers.boundsAndGradient(batch.matrix, objective: objective)
    ///     workers.updateParameters(with: adam)
    ///
    /// Throws, and leaves the parameters as they were, when `objective` does
    /// not fit the model or `x` has the wrong width.
    @discardableResult
    public func boundsAndGradient(_ x: MatrixView<Scalar>, objective: Objective) throws -> [Scalar] {
        try objective.check(for: model.configuration)
        guard x.rows >= 1, x.columns == model.configuration.dataDimension else {
            throw IWAEError.invalidArgument("a batch of \(x.rows) rows of \(x.columns) values; the model takes rows of \(model.configuration.dataDimension)")
        }
        return Array(try stepGradient(x, objective: objective))
    }

    /// The Adam step after `stepGradient`: the replicas' gradients (or,
    /// across ranks, their summed gradient) added and applied in one pass;
    /// the next step writes its gradients over them. The sum is added left
    /// to right as `collectGradient` adds it: the same bits.
    public func updateParameters(with optimizer: Adam<Scalar>) {
        updateParameters(with: optimizer) {}
    }

    /// `updateParameters(with:)`, the calling thread running `meanwhile`
    /// first while the other workers start on the update (the trainer
    /// writes the next batch there).
    package func updateParameters(with optimizer: Adam<Scalar>, meanwhile: () -> Void) {
        gradients.update(model.store, with: optimizer, inTurn: stepLayout == .inTurn, meanwhile: meanwhile)
        if stepStart != 0 {   // the whole step, gradient and update, timed for the next step's layout
            layouts.record(stepLayout, seconds: Double(DispatchTime.now().uptimeNanoseconds - stepStart) / 1e9)
            stepStart = 0
        }
    }
}
