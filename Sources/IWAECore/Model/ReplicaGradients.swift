import IWAELinearAlgebra

/// The workers' gradients, and their sum. Each replica of the model computes
/// its block's gradient into its own buffer; they are added into the
/// model's buffer in worker order, 0 + 1 + 2 + …, and then across ranks
/// (`RankGroup.sum`, in rank order): the order of one process with all the
/// ranks' workers. For a training step they can instead stay apart, to be
/// added inside Adam's pass (`update(_:with:)`), one pass over memory fewer.
///
/// No buffer is cleared between steps: a step marks them stale, and its
/// products write over the last step's gradients
/// (`ParameterStore.markGradientsStale`), one more pass fewer.
final class ReplicaGradients<Scalar: BLASScalar> {
    private let replicas: [VariationalAutoencoder<Scalar>]
    private let ranks: RankGroup
    /// The replicas' gradient buffers (replica j's at j).
    private let buffers: [UnsafeMutablePointer<Scalar>]
    /// How many replicas' buffers hold the last step's gradient (1: the sum
    /// is already in the model's).
    private var pending = 0
    /// The cores the flat passes (the sum, Adam's) are split over: nil (all
    /// of them) for one process; under several ranks, as many as the rank
    /// has workers (the ranks on a machine share its cores, and more
    /// threads would only take them from the other ranks).
    private let cores: Int?

    init(replicas: [VariationalAutoencoder<Scalar>], ranks: RankGroup) {
        precondition(ranks.count == 1 || Scalar.self == Float.self, "ranks exchange Float gradients")
        self.replicas = replicas
        self.ranks = ranks
        buffers = replicas.map { $0.store.gradients.pointer }
        cores = ranks.count > 1 ? replicas.count : nil
    }

    /// Before a step: every buffer stale, for the step to write over.
    func beginStep() {
        for replica in replicas { replica.store.markGradientsStale() }
    }

    /// After the `busy` local workers computed: what they did not write
    /// zeroed (all of it in a worker that had no rows); then, with `sum`,
    /// their buffers added into the model's (and across ranks); without,
    /// left for `update`.
    func finishStep(busy: Int, sum: Bool) {
        for j in 0..<Swift.max(1, busy) { replicas[j].store.settleGradients() }
        pending = sum ? 1 : Swift.max(1, busy)
        if sum { addReplicas(busy) }
    }

    /// Adds replicas 1 ..< `busy` into the model's buffer, left to right.
    func addReplicas(_ busy: Int) {
        guard busy > 1 else { return }
        let total = buffers[0]
        forEachChunk(count: replicas[0].store.gradients.count, cores: cores) { range in
            for j in 1..<busy {
                Scalar.axpy(count: range.count, alpha: 1, x: self.buffers[j] + range.lowerBound, y: total + range.lowerBound)
            }
        }
        pending = 1
    }

    /// The model's buffer summed over the ranks (every rank leaves with the same bits).
    func sumAcrossRanks() {
        let gradients = replicas[0].store.gradients
        ranks.sum(UnsafeMutableBufferPointer(start: UnsafeMutableRawPointer(gradients.pointer).assumingMemoryBound(to: Float.self),
                                             count: gradients.count))
    }

    /// The pending gradients added (as `addReplicas` adds them: the same
    /// bits) and applied by `optimizer`, in one pass; the caller's
    /// thread runs `meanwhile` first (`forEachChunk`), and with `inTurn`
    /// the whole pass.
    /// The buffers are stale afterwards: an update or a `collect` with no
    /// step between finds the model's zero, as before any step.
    func update(_ store: ParameterStore<Scalar>, with optimizer: Adam<Scalar>, inTurn: Bool = false, meanwhile: () -> Void = {}) {
        if pending == 0 { replicas[0].store.settleGradients() }
        let sources = Swift.max(1, pending)
        optimizer.update(store, summing: buffers[0..<sources], cores: inTurn ? 1 : cores, meanwhile: meanwhile)
        for j in 0..<sources { replicas[j].store.markGradientsStale() }
        pending = 0
    }

    /// The last step's gradient, summed into the model's buffer.
    func collect() {
        if pending > 1 { addReplicas(pending) }
        replicas[0].store.settleGradients()
    }
}
