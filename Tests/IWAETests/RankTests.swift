import Foundation
import IWAE
import XCTest

/// Ranks as threads of one process: a `RankGroup` whose exchanges meet at a
/// barrier, so that the cross-rank logic of `ModelWorkers` and `Trainer`
/// (global worker numbering, the rank-ordered sum, agreement on failures)
/// is tested in every build, without MPI. The oracle is one process with
/// as many workers as there are ranks.
final class ThreadRanks {
    let count: Int
    private let published: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    private let condition = NSCondition()
    private var arrived = 0
    private var generation = 0

    init(count: Int) {
        self.count = count
        published = .allocate(capacity: count)
        published.initialize(repeating: nil, count: count)
    }

    deinit { published.deallocate() }

    func member(_ rank: Int) -> Member { Member(rank: rank, group: self) }

    /// Waits until every rank has arrived.
    fileprivate func barrier() {
        condition.lock()
        defer { condition.unlock() }
        let mine = generation
        arrived += 1
        if arrived == count {
            arrived = 0
            generation += 1
            condition.broadcast()
        } else {
            while generation == mine { condition.wait() }
        }
    }

    /// Every rank publishes its buffer, reads all of them into `combine`'s
    /// result, and writes that result over its own buffer once all have read.
    fileprivate func exchange<T>(_ rank: Int, _ values: UnsafeMutableBufferPointer<T>,
                                 _ combine: (T, T) -> T) {
        published[rank] = UnsafeMutableRawPointer(values.baseAddress)
        barrier()
        var result = Array(UnsafeBufferPointer(start: published[0]!.assumingMemoryBound(to: T.self), count: values.count))
        for r in 1..<count {
            let other = published[r]!.assumingMemoryBound(to: T.self)
            for i in result.indices { result[i] = combine(result[i], other[i]) }
        }
        barrier()
        _ = values.update(from: result)
        barrier()
    }

    final class Member: RankGroup {
        let rank: Int
        let group: ThreadRanks
        var count: Int { group.count }

        init(rank: Int, group: ThreadRanks) {
            self.rank = rank
            self.group = group
        }

        func sum(_ values: inout MutableSpan<Float>) { values.withUnsafeMutableBufferPointer { group.exchange(rank, $0, +) } }
        func merge(_ words: inout MutableSpan<UInt64>) { words.withUnsafeMutableBufferPointer { group.exchange(rank, $0, |) } }
    }
}

/// One slot per thread, written under a lock.
final class ThreadSlots<T>: @unchecked Sendable {
    private var slots: [T?]
    private let lock = NSLock()
    init(count: Int) { slots = [T?](repeating: nil, count: count) }
    func set(_ i: Int, _ value: T) { lock.lock(); slots[i] = value; lock.unlock() }
    var values: [T?] { lock.lock(); defer { lock.unlock() }; return slots }
}

final class RankTests: XCTestCase {
    let configuration = ModelConfiguration(dataDimension: 6, latentDimension: 2, encoderHidden: [5], decoderHidden: [5],
                                           likelihood: .gaussian)
    let data = LinearGaussianData(dimension: 6, latentDimension: 2, noise: 0.5, seed: 3)

    var precision = Precision.fp32
    var objective = try! Objective(.iwae, samplesPerExample: 4)

    func options(workers: Int) -> TrainingOptions {
        // 45 examples: 3 batches; the last batches leave some workers idle below.
        try! TrainingOptions(objective: objective, epochs: 2, batchSize: 15, workers: workers, precision: precision)
    }

    /// Trains one model per rank on threads; returns each rank's parameters
    /// and Adam moments, or its error.
    func trainOnThreadRanks(_ ranks: Int, workers: Int, train: [ImageSet], validation: ImageSet?) -> [Result<[Float], Error>] {
        let group = ThreadRanks(count: ranks)
        let results = ThreadSlots<Result<[Float], Error>>(count: ranks)
        let done = DispatchGroup()
        for r in 0..<ranks {
            done.enter()
            let thread = Thread { [self] in
                let outcome = Result<[Float], Error> {
                    let model = VariationalAutoencoder<Float>(configuration, seed: 5)
                    let trainer = try Trainer(model: model, options: options(workers: workers), validation: validation,
                                              ranks: group.member(r))
                    try trainer.train(train[r])
                    return model.store.values.array + trainer.optimizer.firstMoment.array + trainer.optimizer.secondMoment.array
                }
                results.set(r, outcome)
                done.leave()
            }
            thread.start()
        }
        done.wait()
        return results.values.map { $0! }
    }

    func trainInOneProcess(workers: Int, train: ImageSet, validation: ImageSet?) throws -> [Float] {
        let model = VariationalAutoencoder<Float>(configuration, seed: 5)
        let trainer = try Trainer(model: model, options: options(workers: workers), validation: validation)
        try trainer.train(train)
        return model.store.values.array + trainer.optimizer.firstMoment.array + trainer.optimizer.secondMoment.array
    }

    /// R ranks × 1 worker give the bits of one process with R workers
    /// (parameters and both Adam moments), at R = 2 and 3 (a batch of 15
    /// splits 5 + 5 + 5 and, with R = 2, 8 + 7).
    func testRanksGiveTheBitsOfOneProcessWithAsManyWorkers() throws {
        let train = data.examples(45, sampleSeed: 1)
        let validation = data.examples(7, sampleSeed: 2)
        for ranks in [2, 3] {
            let expected = try trainInOneProcess(workers: ranks, train: train, validation: validation)
            let results = trainOnThreadRanks(ranks, workers: 1, train: Array(repeating: train, count: ranks), validation: validation)
            for (r, result) in results.enumerated() {
                XCTAssertEqual(try result.get(), expected, "rank \(r) of \(ranks)")
            }
        }
        // Two ranks × two workers: the four workers' blocks and streams of a
        // four-worker process, summed per rank first, so equal to rounding.
        let four = try trainInOneProcess(workers: 4, train: train, validation: validation)
        let grouped = try trainOnThreadRanks(2, workers: 2, train: [train, train], validation: validation)[0].get()
        assertClose(grouped.map(Double.init), four.map(Double.init), rtol: 1e-4, atol: 1e-6)
    }

    /// The same in bf16: R ranks × 1 worker ≡ one process with R workers, to the bit.
    func testRanksGiveTheBitsOfOneProcessInBFloat16() throws {
        precision = .bf16
        let train = data.examples(45, sampleSeed: 1)
        let validation = data.examples(7, sampleSeed: 2)
        let expected = try trainInOneProcess(workers: 2, train: train, validation: validation)
        for (r, result) in trainOnThreadRanks(2, workers: 1, train: [train, train], validation: validation).enumerated() {
            XCTAssertEqual(try result.get(), expected, "rank \(r) of 2, bf16")
        }
        precision = .fp32
        XCTAssertNotEqual(try trainInOneProcess(workers: 2, train: train, validation: validation), expected, "bf16 is not fp32")
    }

    /// The tighter bounds too: MIWAE, CIWAE and PIWAE (its two passes) on two
    /// ranks give the bits of one process with two workers.
    func testRanksGiveTheBitsOfOneProcessWithTheTighterBounds() throws {
        let train = data.examples(45, sampleSeed: 1)
        for tighter in [try Objective(.miwae, samplesPerExample: 2, groups: 3), try Objective(.ciwae, samplesPerExample: 4, beta: 0.5),
                        try Objective(.piwae, samplesPerExample: 2, estimator: .dreg, groups: 3)] {
            objective = tighter
            let expected = try trainInOneProcess(workers: 2, train: train, validation: nil)
            for (r, result) in trainOnThreadRanks(2, workers: 1, train: [train, train], validation: nil).enumerated() {
                XCTAssertEqual(try result.get(), expected, "rank \(r) of 2, \(tighter.label)")
            }
        }
        objective = try Objective(.iwae, samplesPerExample: 4)
    }

    /// A failure on one rank stops all of them: rank 0 reports the failing
    /// rank's error, the other ranks stop without a message.
    func testAFailureOnOneRankStopsEveryRankWithOneReport() throws {
        let train = data.examples(45, sampleSeed: 1)
        var poisoned = train
        poisoned.pixels[6 * 20 + 1] = .nan
        let results = trainOnThreadRanks(3, workers: 1, train: [train, train, poisoned], validation: nil)
        XCTAssertThrowsError(try results[0].get()) { error in
            XCTAssertEqual(error as? IWAEError, .rankFailed(rank: 2, message: "training example 20 has a NaN or infinite value"))
            XCTAssertEqual("\(error)", "rank 2: training example 20 has a NaN or infinite value")
        }
        for r in 1...2 {
            XCTAssertThrowsError(try results[r].get()) { XCTAssertEqual($0 as? IWAEError, .stoppedWithOtherRanks, "rank \(r)") }
        }
    }

    /// Ranks with different worker counts are refused on every rank.
    func testRanksMustHaveTheSameWorkerCount() {
        let group = ThreadRanks(count: 2)
        let errors = ThreadSlots<IWAEError>(count: 2)
        let done = DispatchGroup()
        for r in 0..<2 {
            done.enter()
            Thread { [self] in
                do {
                    _ = try Trainer(model: VariationalAutoencoder<Float>(configuration, seed: 5), options: options(workers: r + 1),
                                    validation: nil, ranks: group.member(r))
                } catch {
                    errors.set(r, error as? IWAEError ?? .invalidArgument("\(error)"))
                }
                done.leave()
            }.start()
        }
        done.wait()
        XCTAssertEqual(errors.values[0], .rankFailed(rank: 0, message: "every rank needs the same number of worker threads; the ranks have 1, 2"))
        XCTAssertEqual(errors.values[1], .stoppedWithOtherRanks)
    }
}
