import IWAE
import RealModule
import XCTest

/// Data-parallel workers compute exactly what one model computes on the same
/// blocks with the same random streams.
final class ParallelTests: XCTestCase {
    func testTwoWorkersEqualTheSumOfTheirBlocks() throws {
        let configuration = ModelConfiguration(dataDimension: 12, latentDimension: 3, encoderHidden: [8], decoderHidden: [8])
        let model = VariationalAutoencoder<Double>(configuration, seed: 1)
        let rng = Xoshiro256(seed: 2)
        let x = Tensor<Double>(shape: [7, 12], values: (0..<84).map { _ in Double(rng.next() % 2) })
        let pool = ModelWorkers(model: model, workers: 2, seed: 9)
        let bounds = Array(try pool.stepGradient(x.matrix, objective: Objective(.iwae, samplesPerExample: 4)))
        pool.collectGradient()
        let parallel = model.store.gradients.array

        // The same blocks (4 + 3 rows) on a fresh model with the workers' seeds.
        let reference = VariationalAutoencoder<Double>(configuration, seed: 1)
        let references = ModelWorkers(model: reference, workers: 2, seed: 9)   // for its generators only
        reference.store.zeroGradients()
        var expectedBounds = [Double]()
        for (w, rows) in [0..<4, 4..<7].enumerated() {
            let b = try reference.accumulateGradient(x.matrix.rows(rows), objective: Objective(.iwae, samplesPerExample: 4),
                                                 using: references.generators[w], lossScale: 1.0 / 7)
            expectedBounds += Array(b)
        }
        assertClose(bounds, expectedBounds, rtol: 1e-12)
        assertClose(parallel, reference.store.gradients.array, rtol: 1e-10, atol: 1e-14)
    }

    /// The one way to a gradient, two ways to use it: Adam's pass fused with
    /// the sum of the replicas' gradients (`updateParameters`) takes the
    /// same step, bit for bit, as the sum collected first (`collectGradient`)
    /// and a plain Adam update; over several steps, so that the steps'
    /// writing over the last step's gradients is exercised too (a batch of 5
    /// leaves the third worker idle, its buffer stale, in the last step).
    func testFusedUpdateEqualsCollectedGradientAndAdam() throws {
        let configuration = ModelConfiguration(dataDimension: 12, latentDimension: 3, encoderHidden: [8], decoderHidden: [8])
        let rng = Xoshiro256(seed: 2)
        let x = Tensor<Float>(shape: [7, 12], values: (0..<84).map { _ in Float(rng.next() % 2) })
        let fusedModel = VariationalAutoencoder<Float>(configuration, seed: 1)
        let plainModel = VariationalAutoencoder<Float>(configuration, seed: 1)
        let fused = ModelWorkers(model: fusedModel, workers: 3, seed: 9), plain = ModelWorkers(model: plainModel, workers: 3, seed: 9)
        let fusedAdam = Adam<Float>(count: fusedModel.store.values.count, learningRate: 1e-2)
        let plainAdam = Adam<Float>(count: plainModel.store.values.count, learningRate: 1e-2)
        let objective = try Objective(.iwae, samplesPerExample: 3)
        for rows in [0..<7, 0..<7, 2..<7] {
            let a = Array(try fused.stepGradient(x.matrix.rows(rows), objective: objective))
            fused.updateParameters(with: fusedAdam)
            let b = Array(try plain.stepGradient(x.matrix.rows(rows), objective: objective))
            plain.collectGradient()
            XCTAssertTrue(plainModel.store.gradients.array.contains { $0 != 0 })
            plainAdam.update(plainModel.store)
            plainModel.store.zeroGradients()
            XCTAssertEqual(a, b)
            XCTAssertEqual(fusedModel.store.values.array, plainModel.store.values.array)
        }
        XCTAssertTrue(fusedModel.store.gradients.array.contains { $0 != 0 }, "the fused pass does not clear the gradients")
        fused.collectGradient()
        XCTAssertTrue(fusedModel.store.gradients.array.allSatisfy { $0 == 0 }, "no step since the update: the gradient is zero")
    }

    func testParallelEstimateMergesBlocks() throws {
        let configuration = ModelConfiguration(dataDimension: 10, latentDimension: 2, encoderHidden: [6], decoderHidden: [6])
        let model = VariationalAutoencoder<Float>(configuration, seed: 3)
        let rng = Xoshiro256(seed: 4)
        let x = Tensor<Float>(shape: [50, 10], values: (0..<500).map { _ in Float(rng.next() % 2) })
        let pool = ModelWorkers(model: model, workers: 2, seed: 0)
        // k = 50: passes of 10 rows (0..<10, …, 40..<50), taken one at a time by whichever worker is free.
        XCTAssertEqual(EvaluationSamples(50).examplesPerPass(), 10)
        let merged = try pool.estimateLogLikelihood(x.matrix, samples: 50, seed: 5)
        // Every figure, moments included, is the same bits on one model and
        // on 2 or 3 workers: the passes' sums are added in pass order.
        for estimate in [try model.estimateLogLikelihood(x.matrix, samples: 50, seed: 5),
                         try ModelWorkers(model: model, workers: 3, seed: 0).estimateLogLikelihood(x.matrix, samples: 50, seed: 5)] {
            XCTAssertEqual(estimate.logLikelihoods, merged.logLikelihoods)
            XCTAssertEqual(estimate.standardErrors, merged.standardErrors)
            XCTAssertEqual(estimate.elbos, merged.elbos)
            XCTAssertEqual(estimate.reconstructions, merged.reconstructions)
            XCTAssertEqual(estimate.kls, merged.kls)
            XCTAssertEqual(estimate.latentActivity, merged.latentActivity)
        }
        let first = try model.estimateLogLikelihood(x.matrix.rows(0..<40), samples: 50, seed: 5)
        let second = try model.estimateLogLikelihood(x.matrix.rows(40..<50), samples: 50, seed: 5, firstRow: 40)
        XCTAssertEqual(merged.logLikelihoods, first.logLikelihoods + second.logLikelihoods)
        XCTAssertEqual(merged.standardErrors, first.standardErrors + second.standardErrors)
        XCTAssertEqual(merged.examples, 50)
        // Rows cut into calls at a multiple of a pass give the same bits (how `iwae score` streams).
        let head = try pool.estimateLogLikelihood(x.matrix.rows(0..<20), samples: 50, seed: 5)
        let tail = try pool.estimateLogLikelihood(x.matrix.rows(20..<50), samples: 50, seed: 5, firstRow: 20)
        XCTAssertEqual(head.logLikelihoods + tail.logLikelihoods, merged.logLikelihoods)
        // Each row's draws are its own: row 7 alone, as row 7, has the same
        // estimate up to the products' rounding (one row through the encoder
        // instead of 20).
        let alone = try model.estimateLogLikelihood(x.matrix.rows(7..<8), samples: 50, seed: 5, firstRow: 7)
        assertClose(alone.logLikelihoods[0], merged.logLikelihoods[7], rtol: 1e-5)
        // Active-unit moments merge: equal to the variance over all 50 examples.
        // Not bit for bit: the encoder means of 50 rows come from other GEMM
        // calls than those of 20, 20 and 10, and a BLAS kernel's rounding depends on
        // the rows it is given (the Prescott kernel on an Intel Xeon moved the
        // 8th digit). Each mean is good to a few Float roundings (u = 2⁻²⁴);
        // the variance of 50 of them, merged in Double, to a few hundred u.
        let all = try model.estimateLogLikelihood(x.matrix, samples: 1, seed: 1, rowsPerPass: 4000)
        XCTAssertTrue(all.standardErrors.allSatisfy(\.isNaN), "one draw has no standard error")
        let u = Double(Float.ulpOfOne) / 2
        assertClose(merged.latentActivity, all.latentActivity, rtol: 256 * u, atol: 256 * u)
    }

    /// The workers take passes one at a time: one that is held up (here,
    /// worker 1 taking 0.3 s a pass, worker 0 0.02 s) takes fewer instead of
    /// holding the others up, and every pass is taken once, its result in
    /// pass order.
    func testWorkersTakePassesOneAtATime() throws {
        let configuration = ModelConfiguration(dataDimension: 4, latentDimension: 2, encoderHidden: [3], decoderHidden: [3])
        let model = VariationalAutoencoder<Float>(configuration, seed: 1)
        let workers = ModelWorkers(model: model, workers: 2, seed: 0)
        let passes = PassQueue(rows: 95, perPass: 10)
        XCTAssertEqual(passes.count, 10)
        let progress = LockedCounter()
        let taken = try workers.onWorkers(passes, progress: { _ in progress.increment() }) { replica, progress in
            try passes.takeEach(progress: progress) { rows in
                Thread.sleep(forTimeInterval: replica === model ? 0.02 : 0.3)
                return (rows: rows, byWorker0: replica === model)
            }
        }
        XCTAssertEqual(taken.map(\.rows), (0..<10).map { $0 * 10..<Swift.min(95, $0 * 10 + 10) })
        XCTAssertTrue((1...2).contains(taken.filter { !$0.byWorker0 }.count), "the held-up worker takes one pass or two of ten")
        XCTAssertEqual(progress.value, taken.filter(\.byWorker0).count, "worker 0 reports each of its passes")
        XCTAssertEqual(passes.finished, 95)
        // A pass that fails: no one takes another, and the error's example
        // is counted from row 0 (example 2 of pass 1 is row 12).
        let failing = PassQueue(rows: 50, perPass: 10)
        var computed = [Range<Int>]()
        XCTAssertThrowsError(try failing.takeEach(progress: nil) { rows in
            computed.append(rows)
            if rows.lowerBound == 10 { throw IWAEError.notPositiveDefinite(example: 2, info: 1) }
        }) { error in
            guard case IWAEError.notPositiveDefinite(let example, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(example, 12)
        }
        XCTAssertEqual(computed, [0..<10, 10..<20])
        XCTAssertTrue(try failing.takeEach(progress: nil) { $0 }.isEmpty, "the passes left are taken by no one")
    }

    /// `concurrently` runs each index once, and all of them at the same time:
    /// every index waits at a barrier for all the others, which only
    /// returns if they really run at once (more indices than cores included).
    func testConcurrentlyRunsEveryIndexOnceAllAtOnce() {
        for count in [1, 2, 3, 5, 2] {
            let arrived = LockedCounter()
            var runs = [Int](repeating: 0, count: count)
            var together = [Bool](repeating: false, count: count)
            runs.withUnsafeMutableBufferPointer { runs in
                together.withUnsafeMutableBufferPointer { together in
                    let (r, t) = (runs.baseAddress!, together.baseAddress!)
                    concurrently(count) { i in
                        r[i] += 1
                        arrived.increment()
                        let deadline = Date().addingTimeInterval(5)
                        while arrived.value < count && Date() < deadline { sched_yield() }
                        t[i] = arrived.value == count
                    }
                }
            }
            XCTAssertEqual(runs, [Int](repeating: 1, count: count), "count \(count)")
            XCTAssertEqual(together, [Bool](repeating: true, count: count), "count \(count): not all at once")
        }
    }

    /// `forEachChunk` hands every item to `body` exactly once, in ranges
    /// that tile 0 ..< count, on one thread or several.
    func testForEachChunkCoversEveryItemOnce() {
        for (count, cores) in [(0, 2), (1, 2), (65_535, 2), (2 * 65_536 + 17, 2), (1_000_003, 2), (1_000_003, 3), (300_000, 1)] {
            var seen = [UInt8](repeating: 0, count: count)
            seen.withUnsafeMutableBufferPointer { seen in
                let base = seen.baseAddress
                forEachChunk(count: count, cores: cores) { range in
                    for i in range { base![i] &+= 1 }
                }
            }
            XCTAssertTrue(seen.allSatisfy { $0 == 1 }, "count \(count), cores \(cores): \(seen.filter { $0 != 1 }.count) items not seen once")
        }
    }

    /// The pieces go to whichever thread is free: while the thread that
    /// took the first piece is held up, the other takes all the rest.
    func testForEachChunkGivesTheRestToTheFreeThread() {
        let count = 40 * 65_536
        let lock = NSLock()
        var takers = [Int: pthread_t]()
        forEachChunk(count: count, cores: 2) { range in
            lock.lock(); takers[range.lowerBound] = pthread_self(); lock.unlock()
            if range.lowerBound == 0 { Thread.sleep(forTimeInterval: 0.3) }
        }
        let first = takers[0]!
        let others = takers.filter { $0.key != 0 }
        XCTAssertGreaterThan(others.count, 100)
        XCTAssertTrue(others.values.allSatisfy { pthread_equal($0, first) == 0 },
                      "\(others.values.filter { pthread_equal($0, first) != 0 }.count) pieces waited for the held-up thread")
    }

    /// From inside a job, and from several threads at once, `concurrently`
    /// still runs every index once (on libdispatch when the helpers are taken).
    func testConcurrentlyNestedAndFromSeveralThreads() {
        let total = LockedCounter()
        concurrently(3) { _ in
            concurrently(4) { _ in total.increment() }
        }
        XCTAssertEqual(total.value, 12)
        let fromThreads = LockedCounter()
        DispatchQueue.concurrentPerform(iterations: 6) { _ in
            for _ in 0..<200 { concurrently(2) { _ in fromThreads.increment() } }
        }
        XCTAssertEqual(fromThreads.value, 6 * 200 * 2)
    }

    /// Helpers spin only briefly for the next job: a process that has
    /// stopped handing out work uses (almost) no CPU time while it waits.
    func testIdleHelpersLeaveTheCoresAlone() {
        for _ in 0..<50 { concurrently(2) { _ in _ = (0..<1000).reduce(0, +) } }
        Thread.sleep(forTimeInterval: 0.3)   // every library's threads settle
        let before = processCPUSeconds()
        Thread.sleep(forTimeInterval: 0.5)
        let used = processCPUSeconds() - before
        XCTAssertLessThan(used, 0.05, "CPU seconds used by an idle process in 0.5 s")
    }
}

/// A counter that several threads add to.
private final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}

/// User plus system CPU time of this process so far.
private func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}
