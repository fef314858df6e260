import IWAELinearAlgebra

/// The workers' gradients, and their sum. Each replica of the model computes
/// its block's gradient into its own buffer; they are added into the
/// model's buffer in worker order, 0 + 1 + 2 + …, and then across ranks
/// (`RankGroup.sum`, in rank order): the order of one process with all the
/// ranks' workers. For a training step they can instead stay apart, to be
/// added inside Adam's pass (`update(_:with:)`), one pass over memory fewer.
///
/// It also knows which buffers hold only zeros, so that a step clears only
/// those that need it.
final class ReplicaGradients<Scalar: BLASScalar> {
    private let replicas: [VariationalAutoencoder<Scalar>]
    private let ranks: RankGroup
    /// The replicas' gradient buffers (replica j's at j).
    private let buffers: [UnsafeMutablePointer<Scalar>]
    /// Whether replica j's buffer holds only zeros.
    private var clean: [Bool]
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
        clean = [false] + [Bool](repeating: true, count: replicas.count - 1)   // the model's gradients are the caller's
        cores = ranks.count > 1 ? replicas.count : nil
    }

    /// Before a step: the model's buffer cleared unless it holds only zeros.
    func beginStep() {
        if !clean[0] { replicas[0].store.zeroGradients() }
        clean[0] = false
    }

    /// Worker j > 0, before it computes: its buffer cleared unless it holds
    /// only zeros (each worker reads only its own flag; flags change between steps).
    func prepare(replica j: Int) {
        if j > 0 && !clean[j] { replicas[j].store.zeroGradients() }
    }

    /// After the `busy` local workers computed: with `sum`, their buffers
    /// added into the model's (and across ranks); without, left for `update`.
    func finishStep(busy: Int, sum: Bool) {
        for j in 1..<Swift.max(1, busy) { clean[j] = false }
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
    /// bits), applied by `optimizer` and cleared, in one pass; the caller's
    /// thread runs `meanwhile` first (`forEachChunk`).
    func update(_ store: ParameterStore<Scalar>, with optimizer: Adam<Scalar>, meanwhile: () -> Void = {}) {
        let sources = Swift.max(1, pending)
        optimizer.update(store, summingAndClearing: buffers[0..<sources], cores: cores, meanwhile: meanwhile)
        for j in 0..<sources { clean[j] = true }
        pending = 0
    }

    /// The last step's gradient, summed into the model's buffer.
    func collect() {
        if pending > 1 { addReplicas(pending) }
    }
}
