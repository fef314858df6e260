import IWAELinearAlgebra

/// The random streams of a process's workers: global worker g draws from
/// `Xoshiro256(seed: seed(of: g, base:))`, in whichever process it runs, so
/// that R ranks of W workers draw what one process of R·W workers draws.
package struct WorkerStreams {
    /// Local worker j's stream (global worker `first + j`).
    package let generators: [Xoshiro256]

    package init(base: UInt64, pool: WorkerPool) {
        generators = (0..<pool.count).map { Xoshiro256(seed: WorkerStreams.seed(of: pool.first + $0, base: base)) }
    }

    /// The sampling seed of global worker `g`: base + 0x9E3779B9 · g (mod 2⁶⁴).
    package static func seed(of g: Int, base: UInt64) -> UInt64 { base &+ 0x9E37_79B9 &* UInt64(g) }
}
