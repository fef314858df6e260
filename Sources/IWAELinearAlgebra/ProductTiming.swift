import Foundation
import Synchronization

/// The wall time of every Float `gemm` while switched on, by shape and
/// kernel: a training step's products one by one, in the step, as its
/// caches and its other core leave them (`iwae-bench products`). Switched
/// off (always, outside that benchmark) it costs each `gemm` one relaxed
/// atomic load.
///
/// A call is recorded once, as the kernel that computed it ran it: an
/// emulated bf16 product as the fp32 product of its rounded operands,
/// oneDNN's bf16 matmul as itself. Calls from several threads add up.
@usableFromInline package enum ProductTiming {
    /// One product as `gemm` was called: C (m, n) ← op(A) (m, kk) · op(B) (kk, n).
    @usableFromInline package struct Call: Hashable, Sendable {
        package let m: Int
        package let n: Int
        package let kk: Int
        package let transposeA: Transpose
        package let transposeB: Transpose
        /// β ≠ 0: C is added to.
        package let accumulates: Bool
        package let kernel: ProductKernel

        @usableFromInline
        init(m: Int, n: Int, kk: Int, transposeA: Transpose, transposeB: Transpose, accumulates: Bool, kernel: ProductKernel) {
            (self.m, self.n, self.kk, self.transposeA, self.transposeB) = (m, n, kk, transposeA, transposeB)
            (self.accumulates, self.kernel) = (accumulates, kernel)
        }

        /// 2·m·n·kk.
        package var flops: Double { 2 * Double(m) * Double(n) * Double(kk) }
    }

    /// A shape's calls and their summed wall time.
    package struct Total: Sendable, Equatable {
        package var calls = 0
        package var nanoseconds: UInt64 = 0
    }

    private static let switchedOn = Atomic<Bool>(false)
    private static let totals = Mutex<[Call: Total]>([:])

    /// Empties the record and starts recording.
    package static func start() {
        totals.withLock { $0 = [:] }
        switchedOn.store(true, ordering: .releasing)
    }

    /// Stops recording and returns the record.
    package static func stop() -> [Call: Total] {
        switchedOn.store(false, ordering: .releasing)
        return totals.withLock { $0 }
    }

    /// The clock reading a `gemm` starts from: 0 (nothing to record) when
    /// switched off or for a Double product.
    @usableFromInline
    package static func begin<Scalar>(_: Scalar.Type) -> UInt64 {
        Scalar.self == Float.self && switchedOn.load(ordering: .relaxed) ? DispatchTime.now().uptimeNanoseconds : 0
    }

    /// Adds the product C (m, n) ← op(A) (m, kk) · op(B) (kk, n) that
    /// `kernel` ran, begun at `start` (from `begin`): nothing when `start`
    /// is 0, inlined into `gemm` so that a product pays no call then.
    @inlinable @inline(__always)
    package static func end(since start: UInt64, m: Int, n: Int, kk: Int, transposeA: Transpose, transposeB: Transpose,
                            accumulates: Bool, kernel: ProductKernel) {
        if start != 0 {
            record(Call(m: m, n: n, kk: kk, transposeA: transposeA, transposeB: transposeB, accumulates: accumulates, kernel: kernel),
                   since: start)
        }
    }

    /// Adds `call`, begun at `start`.
    @usableFromInline
    static func record(_ call: Call, since start: UInt64) {
        let elapsed = DispatchTime.now().uptimeNanoseconds &- start
        totals.withLock {
            $0[call, default: Total()].calls += 1
            $0[call, default: Total()].nanoseconds &+= elapsed
        }
    }
}
