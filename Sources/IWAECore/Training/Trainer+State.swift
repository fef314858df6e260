import IWAELinearAlgebra

// A trainer's state: read whole (generators included) for a checkpoint,
// handed to the caller on every rank, restored for a resumed run, and
// checked against the data before the first step.
extension Trainer {
    /// The run's state now, generators included: those of all workers on
    /// all ranks, in global worker order (with several ranks this gathers
    /// them, so every rank reads it at the same point).
    public var currentState: TrainingState {
        var s = state
        s.order = s.batchInEpoch == 0 ? [] : order.map { Int32($0) }
        s.generator = [rng.state.0, rng.state.1, rng.state.2, rng.state.3]
        var words = [UInt64](repeating: 0, count: 4 * workers.totalWorkerCount)
        for (j, g) in workers.generators.enumerated() {
            let at = 4 * (workers.firstWorker + j)
            (words[at], words[at + 1], words[at + 2], words[at + 3]) = g.state
        }
        words.withUnsafeMutableBufferPointer { workers.ranks.merge($0) }
        s.workerGenerators = (0..<workers.totalWorkerCount).map { Array(words[4 * $0..<4 * $0 + 4]) }
        return s
    }

    /// Gives the current state (gathered from every rank first) to `body` on
    /// every rank, and agrees on the outcome: a write that fails on one rank
    /// stops all.
    func handOver(_ body: (TrainingState) throws -> Void) throws {
        let saved = currentState
        try ranks.together { try body(saved) }
    }

    /// Continues from a saved state (parameters and optimizer are restored by the caller).
    public func restore(_ saved: TrainingState) throws {
        guard saved.generator.count == 4, saved.workerGenerators.count == workers.totalWorkerCount,
              saved.workerGenerators.allSatisfy({ $0.count == 4 }) else {
            throw IWAEError.invalidCheckpoint("the training state was saved with \(saved.workerGenerators.count) threads, not \(workers.totalWorkerCount); resume with the same thread count (ranks × threads)")
        }
        // xoshiro256** never reaches the all-zero state: such a state was not saved by a run.
        for words in [saved.generator] + saved.workerGenerators where words.allSatisfy({ $0 == 0 }) {
            throw IWAEError.invalidCheckpoint("the training state holds an all-zero generator state")
        }
        guard (0...TrainingState.maximumCount).contains(saved.step), (0...TrainingState.maximumCount).contains(saved.epoch),
              (0...TrainingState.maximumCount).contains(saved.seen), saved.batchInEpoch >= 0, saved.boundSum.isFinite else {
            throw IWAEError.invalidCheckpoint("the training state's counters are out of range")
        }
        let planned = plan
        // The plan the run began with (a state from before plans: OpenBLAS throughout).
        let recorded = try saved.plan.map { try $0.recorded(for: options.precision) }
            ?? ComputePlan(sites: Array(planned.kernels.keys), kernel: ProductKernel(.openblas, options.precision))
        state = saved
        begun = true
        prefetched = nil
        state.plan = recorded
        workers.plan = recorded
        order = saved.order.map { Int($0) }
        rng.restore(state: (saved.generator[0], saved.generator[1], saved.generator[2], saved.generator[3]))
        for (g, s) in zip(workers.generators, saved.workerGenerators.dropFirst(workers.firstWorker)) {
            g.restore(state: (s[0], s[1], s[2], s[3]))
        }
    }

    /// A resumed mid-epoch state must fit the data: its order a permutation
    /// of the training examples, its position inside the epoch. `train`
    /// checks it before the first step.
    package func checkResumedState(trainCount: Int) throws {
        guard state.batchInEpoch > 0 else { return }
        let batches = TrainingOptions.batchesPerEpoch(examples: trainCount, batchSize: options.batchSize)
        guard order.count == trainCount else {
            throw IWAEError.invalidCheckpoint("the saved epoch covers \(order.count) examples but the training set has \(trainCount)")
        }
        guard state.batchInEpoch < batches else {
            throw IWAEError.invalidCheckpoint("the saved position (batch \(state.batchInEpoch)) is past the epoch's \(batches) batches")
        }
        var seen = [Bool](repeating: false, count: trainCount)
        for i in order {
            guard i >= 0, i < trainCount, !seen[i] else { throw IWAEError.invalidCheckpoint("the saved epoch order is not a permutation") }
            seen[i] = true
        }
    }
}
