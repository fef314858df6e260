import Foundation
import IWAECore
import IWAELinearAlgebra

/// How `iwae train` finds its rank group: launched by `mpirun` (OpenMPI sets
/// `OMPI_COMM_WORLD_SIZE`, other launchers `PMI_SIZE`) with more than one
/// process, or alone.
public enum ProcessLaunch {
    /// The number of processes the launcher started, 1 when not under mpirun.
    public static var launchedRanks: Int {
        let environment = ProcessInfo.processInfo.environment
        return (environment["OMPI_COMM_WORLD_SIZE"] ?? environment["PMI_SIZE"]).flatMap(Int.init) ?? 1
    }

    /// True when this build can train across ranks (`--traits MPI`).
    public static var supportsMPI: Bool {
        #if MPI
        return true
        #else
        return false
        #endif
    }
}

/// How the ranks' gradients are summed.
public enum GradientReducer: String, CaseIterable, Sendable {
    /// In rank order, ((g₀ + g₁) + g₂) + …: the bits of one process whose
    /// workers are the ranks. Chunk c of the gradient goes to rank c
    /// (alltoall), which adds the R copies in rank order; an allgather
    /// returns the sums. About twice the traffic of `allreduce`.
    case ordered
    /// `MPI_Allreduce`: OpenMPI picks the order (at 4 ranks
    /// (g₀ + g₁) + (g₂ + g₃)), so the bits may differ from one process.
    case allreduce
}

/// Stops this process when one exchange with the other ranks has waited
/// longer than `timeout` seconds: a rank that hangs without dying (stopped,
/// stuck in I/O) would otherwise keep the others polling forever. It prints
/// one line and leaves without finishing MPI, which makes mpirun stop every
/// rank; the last checkpoint stays as it was written. A rank that was told
/// to stop (`stopRequested`: mpirun stopping every rank after another one
/// failed, or the user) leaves silently instead: the rank that found the
/// hang has said so, once.
public final class ExchangeWatchdog: @unchecked Sendable {
    public let timeout: Double
    private let lock = NSLock()
    /// When the exchange under way began (uptime ns), or 0 between exchanges.
    private var since: UInt64 = 0

    public init(timeout: Double, rank: Int, tool: String, stopRequested: @escaping @Sendable () -> Bool = { false }) {
        precondition(timeout > 0)
        self.timeout = timeout
        let line = "\(tool): error: rank \(rank): no exchange with the other ranks completed within \(Int(timeout.rounded())) s (a rank stopped or hangs); stopping every rank\n"
        let thread = Thread { [self] in
            while true {
                Thread.sleep(forTimeInterval: Swift.min(1, timeout / 4))
                lock.lock()
                let started = since
                lock.unlock()
                if started != 0 && Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9 > timeout {
                    if !stopRequested() { FileHandle.standardError.write(Data(line.utf8)) }
                    _exit(1)
                }
            }
        }
        thread.start()
    }

    /// Runs one exchange under the watchdog.
    @inline(__always)
    public func guarding<T>(_ exchange: () -> T) -> T {
        lock.lock()
        since = DispatchTime.now().uptimeNanoseconds
        lock.unlock()
        defer {
            lock.lock()
            since = 0
            lock.unlock()
        }
        return exchange()
    }
}

#if MPI
import CMPI

/// The ranks of `MPI_COMM_WORLD` as a `RankGroup`. MPI is initialized once
/// per process (`MPI_THREAD_FUNNELED`: only the thread that created the
/// group calls MPI) and finalized by `finish()`. The time spent in exchanges
/// is summed in `exchangeSeconds` for the scaling report.
public final class MPIRanks: RankGroup {
    public let rank: Int
    public let count: Int
    /// Ranks on this machine (processes sharing its cores).
    public let localCount: Int
    public var reducer: GradientReducer
    /// Bounds the wait of every exchange (none when nil).
    public var watchdog: ExchangeWatchdog?
    /// Seconds spent in `sum` and `merge` since the group was made.
    public private(set) var exchangeSeconds = 0.0
    /// The ordered reducer's layout for a buffer of `layoutCount` floats:
    /// chunk r (`counts[r]` floats at `offsets[r]`) is rank r's to add, and
    /// `received` holds the R copies of this rank's chunk.
    private var layoutCount = -1
    private var counts: [Int32] = []
    private var offsets: [Int32] = []
    private var receiveCounts: [Int32] = []
    private var receiveOffsets: [Int32] = []
    private var received: [Float] = []

    public init(reducer: GradientReducer = .ordered) {
        var provided: Int32 = 0
        MPI_Init_thread(nil, nil, iwae_mpi_thread_funneled(), &provided)
        var r: Int32 = 0, n: Int32 = 0
        MPI_Comm_rank(iwae_mpi_comm_world(), &r)
        MPI_Comm_size(iwae_mpi_comm_world(), &n)
        rank = Int(r)
        count = Int(n)
        var node = iwae_mpi_comm_world()
        MPI_Comm_split_type(iwae_mpi_comm_world(), iwae_mpi_comm_type_shared(), r, iwae_mpi_info_null(), &node)
        var local: Int32 = 1
        MPI_Comm_size(node, &local)
        MPI_Comm_free(&node)
        localCount = Int(local)
        self.reducer = reducer
    }

    /// Ends MPI on this rank; every rank calls it (after which no exchange may run).
    public func finish() { MPI_Finalize() }

    /// Waits for every rank.
    public func barrier() { _ = guarded { MPI_Barrier(iwae_mpi_comm_world()) } }

    private func guarded<T>(_ exchange: () -> T) -> T {
        guard let watchdog else { return exchange() }
        return watchdog.guarding(exchange)
    }

    public func sum(_ values: inout MutableSpan<Float>) {
        values.withUnsafeMutableBufferPointer { sum(buffer: $0) }
    }

    private func sum(buffer values: UnsafeMutableBufferPointer<Float>) {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { exchangeSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        guarded {
            switch reducer {
            case .allreduce:
                MPI_Allreduce(iwae_mpi_in_place(), values.baseAddress, Int32(values.count), iwae_mpi_float(),
                              iwae_mpi_sum(), iwae_mpi_comm_world())
            case .ordered:
                sumInRankOrder(values)
            }
        }
    }

    /// The `ordered` reducer: alltoall of chunks, a rank-ordered sum of this
    /// rank's chunk, allgather.
    private func sumInRankOrder(_ values: UnsafeMutableBufferPointer<Float>) {
        let n = values.count
        if layoutCount != n {
            layoutCount = n
            counts = (0..<count).map { Int32((($0 + 1) * n) / count - ($0 * n) / count) }
            offsets = (0..<count).map { Int32(($0 * n) / count) }
            let mine = Int(counts[rank])
            receiveCounts = [Int32](repeating: Int32(mine), count: count)
            receiveOffsets = (0..<count).map { Int32($0 * mine) }
            received = [Float](repeating: 0, count: Swift.max(1, mine * count))
        }
        let mine = Int(counts[rank])
        received.withUnsafeMutableBufferPointer { inbox in
            MPI_Alltoallv(values.baseAddress, counts, offsets, iwae_mpi_float(),
                          inbox.baseAddress, receiveCounts, receiveOffsets, iwae_mpi_float(), iwae_mpi_comm_world())
            // The rank-ordered sum, written over this rank's chunk.
            let out = values.baseAddress! + Int(offsets[rank])
            out.update(from: inbox.baseAddress!, count: mine)
            for r in 1..<count {   // axpy with α = 1 adds exactly as one process adds its workers
                Float.axpy(count: mine, alpha: 1, x: inbox.baseAddress! + r * mine, y: out)
            }
        }
        MPI_Allgatherv(iwae_mpi_in_place(), 0, iwae_mpi_float(), values.baseAddress, counts, offsets, iwae_mpi_float(),
                       iwae_mpi_comm_world())
    }

    public func merge(_ words: inout MutableSpan<UInt64>) {
        words.withUnsafeMutableBufferPointer { merge(buffer: $0) }
    }

    private func merge(buffer words: UnsafeMutableBufferPointer<UInt64>) {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { exchangeSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        _ = guarded {
            MPI_Allreduce(iwae_mpi_in_place(), words.baseAddress, Int32(words.count), iwae_mpi_uint64(),
                          iwae_mpi_bor(), iwae_mpi_comm_world())
        }
    }
}
#endif
