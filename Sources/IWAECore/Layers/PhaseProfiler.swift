import Foundation

/// Where a training step's time goes: GEMM, elementwise passes, sampling.
/// Attach one to a model (`VariationalAutoencoder.profiler`); the rest of a
/// step's wall time is the step minus these. Costs two clock reads per
/// measured block when attached, nothing when not.
package final class PhaseProfiler: @unchecked Sendable {
    package enum Phase: Int, CaseIterable, Sendable {
        /// Encoder GEMMs (and any GEMM not otherwise attributed).
        case gemm
        /// The decoder's GEMMs.
        case decoderGemm
        case elementwise
        case sampling
        /// The full-covariance encoder's extra work: A Aᵀ, Cholesky, triangular
        /// products and solves, and their backward.
        case covariance
        package var name: String { ["gemm", "decoder_gemm", "elementwise", "sampling", "covariance"][rawValue] }
    }

    package private(set) var nanoseconds = [UInt64](repeating: 0, count: Phase.allCases.count)

    package init() {}

    package func reset() { nanoseconds = [UInt64](repeating: 0, count: Phase.allCases.count) }

    @inline(__always) static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    @inline(__always) func add(_ phase: Phase, since start: UInt64) {
        nanoseconds[phase.rawValue] &+= PhaseProfiler.now() &- start
    }

    package func seconds(_ phase: Phase) -> Double { Double(nanoseconds[phase.rawValue]) / 1e9 }
}

extension Optional where Wrapped == PhaseProfiler {
    /// A start time when profiling, 0 otherwise.
    @inline(__always) func start() -> UInt64 { self == nil ? 0 : PhaseProfiler.now() }
    @inline(__always) func stop(_ phase: PhaseProfiler.Phase, _ start: UInt64) { self?.add(phase, since: start) }
}
