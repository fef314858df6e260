import Foundation
import IWAELinearAlgebra

/// Runs a model's per-example work on several cores at once: the examples of
/// a batch are split into contiguous blocks, one per worker, each worker a
/// `replica` of the model (shared parameters, own buffers and gradients) with
/// its own random stream; OpenBLAS runs single-threaded inside each worker.
///
/// Results depend on the seed and the worker count, and on nothing else.
public final class ModelWorkers<Scalar: BLASScalar> {
    public let model: VariationalAutoencoder<Scalar>
    /// replicas[0] is `model` itself; its gradients receive the others'.
    public let replicas: [VariationalAutoencoder<Scalar>]
    public let generators: [Xoshiro256]
    private let bounds = Tensor<Scalar>(shape: [0])

    /// `workers` defaults to the number of active cores. With more than one
    /// worker, OpenBLAS is set to one thread per call.
    public init(model: VariationalAutoencoder<Scalar>, workers: Int? = nil, seed: UInt64) {
        let count = Swift.max(1, workers ?? ProcessInfo.processInfo.activeProcessorCount)
        self.model = model
        replicas = [model] + (1..<count).map { _ in model.replica() }
        generators = (0..<count).map { Xoshiro256(seed: seed &+ 0x9E37_79B9 &* UInt64($0)) }
        if count > 1 { BLASLibrary.threads = 1 }
    }

    public var workerCount: Int { replicas.count }

    /// The examples of worker `w` out of `n`.
    func block(_ w: Int, of n: Int, workers: Int) -> Range<Int> {
        let size = (n + workers - 1) / workers
        return Swift.min(n, w * size)..<Swift.min(n, (w + 1) * size)
    }

    /// Data-parallel `accumulateGradient`: adds ∇(−mean_b bound_b) over all
    /// B rows of `x` into `model.store.gradients` and returns the B bounds.
    @discardableResult
    @_specialize(exported: true, where Scalar == Float)
    public func accumulateGradient(_ x: MatrixView<Scalar>, objective: Objective, samplesPerExample K: Int,
                                   estimator: GradientEstimator = .reparam, baseline: ScoreBaseline = .none)
        throws -> UnsafeMutableBufferPointer<Scalar>
    {
        let n = x.rows
        if bounds.capacity < n { bounds.replace(shape: [n]) }
        let active = Swift.min(workerCount, n)
        let scale = 1 / Scalar(n)
        let out = bounds.pointer
        let errors = WorkerErrors(count: active)
        let run = { (w: Int) in
            let rows = self.block(w, of: n, workers: active)
            if rows.isEmpty { return }
            let replica = self.replicas[w]
            if w > 0 { replica.store.zeroGradients() }
            do {
                let b = try replica.accumulateGradient(x.rows(rows), objective: objective, samplesPerExample: K,
                                                       using: self.generators[w], lossScale: scale,
                                                       estimator: estimator, baseline: baseline)
                (out + rows.lowerBound).update(from: b.baseAddress!, count: rows.count)
            } catch {
                errors.record(error, worker: w, firstRow: rows.lowerBound)
            }
        }
        if active == 1 { run(0) } else { DispatchQueue.concurrentPerform(iterations: active, execute: run) }
        try errors.rethrow()
        if active > 1 {
            let total = model.store.gradients.pointer
            forEachChunk(count: model.store.gradients.count) { range in
                for w in 1..<active {
                    let g = self.replicas[w].store.gradients.pointer
                    Scalar.axpy(count: range.count, alpha: 1, x: g + range.lowerBound, y: total + range.lowerBound)
                }
            }
        }
        return UnsafeMutableBufferPointer(start: out, count: n)
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
                let rows = self.block(w, of: x.rows, workers: active)
                do {
                    slotBase[w] = try self.replicas[w].estimateLogLikelihood(
                        x.rows(rows), samples: k, seed: seed &+ UInt64(w), rowsPerPass: 4000,
                        progress: w == 0 ? progress.map { report in { done in report(Swift.min(x.rows, done * active)) } } : nil)
                } catch {
                    errors.record(error, worker: w, firstRow: rows.lowerBound)
                }
            }
        }
        try errors.rethrow()
        return results.dropFirst().reduce(results[0]!) { $0.merged(with: $1!) }
    }

    /// Data-parallel `meanBound` (forward only).
    @_specialize(exported: true, where Scalar == Float)
    public func meanBound(_ x: MatrixView<Scalar>, objective: Objective, samplesPerExample K: Int, seed: UInt64) throws -> Double {
        let active = Swift.max(1, Swift.min(workerCount, x.rows))
        var sums = [Double](repeating: 0, count: active)
        let errors = WorkerErrors(count: active)
        sums.withUnsafeMutableBufferPointer { slots in
            let base = slots.baseAddress!
            DispatchQueue.concurrentPerform(iterations: active) { w in
                let rows = self.block(w, of: x.rows, workers: active)
                if rows.isEmpty { return }
                do {
                    base[w] = Double(rows.count) * (try self.replicas[w].meanBound(
                        x.rows(rows), objective: objective, samplesPerExample: K, seed: seed &+ UInt64(w)))
                } catch {
                    errors.record(error, worker: w, firstRow: rows.lowerBound)
                }
            }
        }
        try errors.rethrow()
        return sums.reduce(0, +) / Double(Swift.max(x.rows, 1))
    }
}

/// The errors of concurrent workers, by worker (recorded under a lock:
/// ThreadSanitizer caught two workers writing the same Swift arrays).
final class WorkerErrors: @unchecked Sendable {
    private var slots: [Error?]
    private var offsets: [Int]
    private let lock = NSLock()

    init(count: Int) {
        slots = [Error?](repeating: nil, count: count)
        offsets = [Int](repeating: 0, count: count)
    }

    func record(_ error: Error, worker: Int, firstRow: Int) {
        lock.lock()
        defer { lock.unlock() }
        slots[worker] = error
        offsets[worker] = firstRow
    }

    /// Rethrows the first worker's error, with an example index counted
    /// from the start of the whole batch.
    func rethrow() throws {
        for (error, offset) in zip(slots, offsets) {
            guard let error else { continue }
            if let error = error as? IWAEError { throw error.shifted(by: offset) }
            throw error
        }
    }
}
