import Foundation
import IWAELinearAlgebra

/// Runs a model's per-example work on several cores at once: the examples of
/// a batch are split into contiguous blocks, one per worker, each worker a
/// `replica` of the model (shared parameters, own buffers and gradients) with
/// its own random stream; OpenBLAS runs single-threaded inside each worker.
///
/// Across processes (a `RankGroup` of R ranks with W workers each) the
/// workers are numbered globally, rank r holding workers r·W ..< (r+1)·W:
/// worker g takes the same block of the batch and draws from the same stream
/// as worker g of one process with R·W workers. Results depend on the seed
/// and the worker count, and on nothing else.
public final class ModelWorkers<Scalar: BLASScalar> {
    public let model: VariationalAutoencoder<Scalar>
    /// This process's workers; replicas[0] is `model` itself, and its
    /// gradients receive the others'.
    public let replicas: [VariationalAutoencoder<Scalar>]
    /// The workers' random streams (worker `firstWorker + j` is `generators[j]`).
    public let generators: [Xoshiro256]
    /// The processes that share each batch.
    public let ranks: RankGroup
    /// The global index of this process's first worker.
    public let firstWorker: Int
    /// Workers over all ranks (R·W).
    public let totalWorkerCount: Int
    private let bounds = Tensor<Scalar>(shape: [0])
    /// The replicas' gradient buffers (replica j's at j), for the fused update.
    private let gradientPointers: [UnsafeMutablePointer<Scalar>]
    /// Whether replica j's gradient buffer holds only zeros (so a step need not clear it).
    private var clean: [Bool]
    /// How many replicas' gradients the next `updateParameters` adds.
    private var pendingReplicas = 0
    /// Bounds and failure flags in transit between ranks, by bit pattern.
    private var exchange = UnsafeMutableBufferPointer<UInt64>(start: nil, count: 0)

    /// `workers` (per rank) defaults to the number of active cores. With more
    /// than one worker in all, OpenBLAS is set to one thread per call. Every
    /// rank must have the same number of workers (`Trainer` checks it).
    public init(model: VariationalAutoencoder<Scalar>, workers: Int? = nil, seed: UInt64, ranks: RankGroup = SingleRank()) {
        let count = Swift.max(1, workers ?? ProcessInfo.processInfo.activeProcessorCount)
        precondition(ranks.count == 1 || Scalar.self == Float.self, "ranks exchange Float gradients")
        self.model = model
        self.ranks = ranks
        firstWorker = ranks.rank * count
        totalWorkerCount = ranks.count * count
        replicas = [model] + (1..<count).map { _ in model.replica() }
        gradientPointers = replicas.map { $0.store.gradients.pointer }
        clean = [false] + [Bool](repeating: true, count: count - 1)   // the model's gradients are the caller's
        generators = (0..<count).map { [firstWorker] in Xoshiro256(seed: ModelWorkers.seed(of: firstWorker + $0, base: seed)) }
        if totalWorkerCount > 1 { BLASLibrary.threads = 1 }
        BLASLibrary.warnIfFallback()
    }

    deinit { exchange.deallocate() }

    /// The sampling seed of global worker `g`.
    static func seed(of g: Int, base: UInt64) -> UInt64 { base &+ 0x9E37_79B9 &* UInt64(g) }

    /// The plan of product libraries of the model and every replica. Set it
    /// between steps, never while the workers compute.
    public var gemmPlan: GEMMPlan {
        get { model.gemmPlan }
        set { for replica in replicas { replica.gemmPlan = newValue } }
    }

    /// The products' inputs, fp32 or bf16, of the model and every replica.
    /// Set it between steps, never while the workers compute.
    public var precision: Precision {
        get { model.precision }
        set { for replica in replicas { replica.precision = newValue } }
    }

    /// This process's workers (W).
    public var workerCount: Int { replicas.count }

    /// The examples of global worker `w` out of `n`.
    func block(_ w: Int, of n: Int, workers: Int) -> Range<Int> {
        let size = (n + workers - 1) / workers
        return Swift.min(n, w * size)..<Swift.min(n, (w + 1) * size)
    }

    /// The rows of a batch of `n` that local worker `j` takes.
    private func rows(ofLocal j: Int, in n: Int) -> Range<Int> {
        let active = Swift.min(totalWorkerCount, n)
        let g = firstWorker + j
        return g < active ? block(g, of: n, workers: active) : n..<n
    }

    /// How many local workers have rows in a batch of `n` (a prefix of them).
    private func busyWorkers(in n: Int) -> Int {
        var count = 0
        while count < workerCount && !rows(ofLocal: count, in: n).isEmpty { count += 1 }
        return count
    }

    /// A scratch of at least `count` words for the exchanges, zeroed.
    private func exchangeWords(_ count: Int) -> UnsafeMutableBufferPointer<UInt64> {
        if exchange.count < count {
            exchange.deallocate()
            exchange = .allocate(capacity: count)
        }
        let words = UnsafeMutableBufferPointer(rebasing: exchange[0..<count])
        words.update(repeating: 0)
        return words
    }

    /// Data-parallel `accumulateGradient`: adds ∇(−mean_b bound_b) over all
    /// B rows of `x` into `model.store.gradients` and returns the B bounds.
    /// With several ranks each computes its workers' rows and every rank
    /// leaves with the same summed gradient and all B bounds; an error on
    /// any rank is thrown on all (`RankGroup.agree`).
    @discardableResult
    @_specialize(exported: true, where Scalar == Float)
    package func accumulateGradient(_ x: MatrixView<Scalar>, objective: Objective, samplesPerExample K: Int,
                                   estimator: GradientEstimator = .reparam, baseline: ScoreBaseline = .none)
        throws -> UnsafeMutableBufferPointer<Scalar>
    {
        // The model's gradients are the caller's; the other replicas are zeroed as they start.
        for j in 0..<workerCount { clean[j] = false }
        return try gradient(x, objective: objective, samplesPerExample: K, estimator: estimator, baseline: baseline,
                            sumReplicas: true)
    }

    /// A training step's gradient, for `updateParameters(with:)`: every
    /// replica starts from zero, and (in one process) the replicas' gradients
    /// stay apart, to be added inside the optimizer's pass. Returns the B bounds.
    @discardableResult
    @_specialize(exported: true, where Scalar == Float)
    package func stepGradient(_ x: MatrixView<Scalar>, objective: Objective, samplesPerExample K: Int,
                             estimator: GradientEstimator = .reparam, baseline: ScoreBaseline = .none)
        throws -> UnsafeMutableBufferPointer<Scalar>
    {
        if !clean[0] { model.store.zeroGradients() }
        clean[0] = false
        return try gradient(x, objective: objective, samplesPerExample: K, estimator: estimator, baseline: baseline,
                            sumReplicas: ranks.count > 1)
    }

    /// The Adam step after `stepGradient`: the replicas' gradients (or,
    /// across ranks, their summed gradient) added, applied and cleared in one
    /// pass, the gradients left zero for the next step. The sum is added left
    /// to right as `accumulateGradient` adds it: the same bits.
    @_specialize(exported: true, where Scalar == Float)
    public func updateParameters(with optimizer: Adam<Scalar>) {
        let sources = Swift.max(1, pendingReplicas)
        optimizer.update(model.store, summingAndClearing: gradientPointers[0..<sources])
        for j in 0..<sources { clean[j] = true }
        pendingReplicas = 0
    }

    /// The gradient of the B rows of `x`: each local worker's block on its
    /// replica (zeroed first unless already zero), then with `sumReplicas`
    /// the replicas added into `model` (and across ranks); without it the
    /// sum is left to `updateParameters`.
    private func gradient(_ x: MatrixView<Scalar>, objective: Objective, samplesPerExample K: Int,
                          estimator: GradientEstimator, baseline: ScoreBaseline, sumReplicas: Bool) throws
        -> UnsafeMutableBufferPointer<Scalar>
    {
        let n = x.rows
        if bounds.capacity < n { bounds.replace(shape: [n]) }
        let local = busyWorkers(in: n)
        let scale = 1 / Scalar(n)
        let out = bounds.pointer
        let errors = WorkerErrors(count: workerCount)
        let run = { (j: Int) in
            let flushing = SubnormalFlushing.begin()
            defer { flushing.end() }
            let rows = self.rows(ofLocal: j, in: n)
            if rows.isEmpty { return }
            let replica = self.replicas[j]
            if j > 0 && !self.clean[j] { replica.store.zeroGradients() }
            do {
                let b = try replica.accumulateGradient(x.rows(rows), objective: objective, samplesPerExample: K,
                                                       using: self.generators[j], lossScale: scale,
                                                       estimator: estimator, baseline: baseline)
                (out + rows.lowerBound).update(from: b.baseAddress!, count: rows.count)
            } catch {
                errors.record(error, worker: j, firstRow: rows.lowerBound)
            }
        }
        if local <= 1 { run(0) } else { DispatchQueue.concurrentPerform(iterations: local, execute: run) }
        for j in 1..<Swift.max(1, local) { clean[j] = false }
        pendingReplicas = sumReplicas ? 1 : Swift.max(1, local)
        if ranks.count == 1 { try errors.rethrow() }
        if sumReplicas && local > 1 {
            let total = model.store.gradients.pointer
            forEachChunk(count: model.store.gradients.count) { range in
                for j in 1..<local {
                    let g = self.replicas[j].store.gradients.pointer
                    Scalar.axpy(count: range.count, alpha: 1, x: g + range.lowerBound, y: total + range.lowerBound)
                }
            }
        }
        if ranks.count > 1 { try exchangeAcrossRanks(bounds: out, count: n, local: local, errors: errors) }
        return UnsafeMutableBufferPointer(start: out, count: n)
    }

    /// The cross-rank half of a step: one exchange of the bounds and the
    /// failure flags, then (with no failure) the gradient sum.
    private func exchangeAcrossRanks(bounds out: UnsafeMutablePointer<Scalar>, count n: Int, local: Int,
                                     errors: WorkerErrors) throws {
        let words = exchangeWords(n + ranks.count)
        let mine = local == 0 ? n..<n : rows(ofLocal: 0, in: n).lowerBound..<rows(ofLocal: local - 1, in: n).upperBound
        for i in mine { words[i] = Double(out[i]).bitPattern }
        let failure = errors.first
        if failure != nil { words[n + ranks.rank] = 1 }
        ranks.merge(words)
        if (0..<ranks.count).contains(where: { words[n + $0] != 0 }) { try ranks.agree(failure) }
        for i in 0..<n { out[i] = Scalar(Double(bitPattern: words[i])) }
        let gradients = model.store.gradients
        ranks.sum(UnsafeMutableBufferPointer(start: UnsafeMutableRawPointer(gradients.pointer).assumingMemoryBound(to: Float.self),
                                             count: gradients.count))
    }

    /// Data-parallel `estimateLogLikelihood`: worker w takes a contiguous
    /// block of the rows of `x` with seed `seed + w`.
    @_specialize(exported: true, where Scalar == Float)
    public func estimateLogLikelihood(_ x: MatrixView<Scalar>, samples k: Int, seed: UInt64,
                                      progress: ((Int) -> Void)? = nil) throws -> LogLikelihoodEstimate {
        let active = Swift.max(1, Swift.min(workerCount, x.rows))
        var results = [LogLikelihoodEstimate?](repeating: nil, count: active)
        let errors = WorkerErrors(count: active)
        results.withUnsafeMutableBufferPointer { slots in
            let slotBase = slots.baseAddress!
            DispatchQueue.concurrentPerform(iterations: active) { w in
                let flushing = SubnormalFlushing.begin()
                defer { flushing.end() }
                let rows = self.block(w, of: x.rows, workers: active)
                do {
                    slotBase[w] = try self.replicas[w].estimateLogLikelihood(
                        x.rows(rows), samples: k, seed: seed &+ UInt64(w),
                        progress: w == 0 ? progress.map { report in { done in report(Swift.min(x.rows, done * active)) } } : nil)
                } catch {
                    errors.record(error, worker: w, firstRow: rows.lowerBound)
                }
            }
        }
        try errors.rethrow()
        return results.dropFirst().reduce(results[0]!) { $0.merged(with: $1!) }
    }

    /// Data-parallel `meanBound` (forward only), over all ranks: global
    /// worker g takes its block with seed `seed + g`, and the workers' sums
    /// are added in worker order on every rank.
    @_specialize(exported: true, where Scalar == Float)
    public func meanBound(_ x: MatrixView<Scalar>, objective: Objective, samplesPerExample K: Int, seed: UInt64) throws -> Double {
        let local = busyWorkers(in: x.rows)
        let sums = exchangeWords(totalWorkerCount)
        let errors = WorkerErrors(count: workerCount)
        let run = { (j: Int) in
            let flushing = SubnormalFlushing.begin()
            defer { flushing.end() }
            let rows = self.rows(ofLocal: j, in: x.rows)
            if rows.isEmpty { return }
            do {
                let mean = try self.replicas[j].meanBound(x.rows(rows), objective: objective, samplesPerExample: K,
                                                          seed: seed &+ UInt64(self.firstWorker + j))
                sums[self.firstWorker + j] = (Double(rows.count) * mean).bitPattern
            } catch {
                errors.record(error, worker: j, firstRow: rows.lowerBound)
            }
        }
        if local <= 1 { run(0) } else { DispatchQueue.concurrentPerform(iterations: local, execute: run) }
        try ranks.agree(errors.first)
        ranks.merge(sums)
        return sums.reduce(0.0) { $0 + Double(bitPattern: $1) } / Double(Swift.max(x.rows, 1))
    }
}
