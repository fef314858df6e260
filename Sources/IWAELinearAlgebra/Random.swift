import RealModule
/// The engine's random number generator: xoshiro256** (Blackman & Vigna,
/// "Scrambled linear pseudorandom number generators", 2021), seeded through
/// SplitMix64. Same seed, same stream, on every machine.
///
/// A class so that one generator can be handed down a training step and
/// advance as it goes; it owns a scratch buffer for bulk fills, allocated
/// once and grown only when a larger fill is asked for.
public final class Xoshiro256: RandomNumberGenerator {
    public private(set) var state: (UInt64, UInt64, UInt64, UInt64)
    private var scratch: UnsafeMutablePointer<UInt64>
    private var scratchCapacity: Int

    public init(seed: UInt64) {
        state = Xoshiro256.seeded(seed)
        scratchCapacity = 1024
        scratch = .allocate(capacity: scratchCapacity)
    }

    /// The state `init(seed:)` starts from: four SplitMix64 outputs.
    private static func seeded(_ seed: UInt64) -> (UInt64, UInt64, UInt64, UInt64) {
        var s = seed
        func splitMix() -> UInt64 {
            s &+= 0x9E37_79B9_7F4A_7C15
            return mix(s)
        }
        return (splitMix(), splitMix(), splitMix(), splitMix())
    }

    /// SplitMix64's output function, a bijection of 64-bit words.
    @inline(__always) private static func mix(_ word: UInt64) -> UInt64 {
        var z = word
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Starts again from `init(seed:)`'s state for `seed`, without allocating.
    package func reseed(_ seed: UInt64) { state = Xoshiro256.seeded(seed) }

    /// The seed of row `row`'s own stream under `seed`: mix(mix(seed) + row).
    /// For one `seed`, distinct rows get distinct seeds (mix is a bijection).
    /// An evaluation draws each example's noise and binarization from its
    /// row's stream, so that its estimate does not depend on the other rows,
    /// the threads or the chunking.
    package static func rowSeed(_ seed: UInt64, row: Int) -> UInt64 { mix(mix(seed) &+ UInt64(truncatingIfNeeded: row)) }

    deinit { scratch.deallocate() }

    /// Continues from a saved `state` (for resuming a run bit for bit).
    public func restore(state: (UInt64, UInt64, UInt64, UInt64)) { self.state = state }

    @inline(__always)
    public func next() -> UInt64 { Xoshiro256.step(&state) }

    /// One xoshiro256** step on a state held in a local (bulk loops use this
    /// to avoid an exclusivity check per word on the class's stored state).
    @inline(__always)
    static func step(_ s: inout (UInt64, UInt64, UInt64, UInt64)) -> UInt64 {
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }

    @inline(__always) private static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// A uniform value in [0, 1) with 24 (Float) or 53 (Double) random bits.
    @inline(__always)
    public func uniform<Scalar: BLASScalar>(_: Scalar.Type = Scalar.self) -> Scalar {
        let bits = Scalar.significandBitCount + 1
        return Scalar(next() >> UInt64(64 - bits)) * Scalar(sign: .plus, exponent: Scalar.Exponent(-bits), significand: 1)
    }

    /// Fills `out[0..<count]` with uniform values in [0, 1).
    package func fillUniform(_ out: UnsafeMutablePointer<Float>, count: Int) {
        var local = state
        for i in 0..<count { out[i] = Float(Xoshiro256.step(&local) >> 40) * 0x1.0p-24 }
        state = local
    }

    /// `target[i] = u_i < source[i] ? 1 : 0` for the next `count` uniforms
    /// u_i of `fillUniform` (the same values, in the same order); `target`
    /// may be `source`.
    package func binarize(_ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>, count: Int) {
        var local = state
        for i in 0..<count { target[i] = Float(Xoshiro256.step(&local) >> 40) * 0x1.0p-24 < source[i] ? 1 : 0 }
        state = local
    }

    /// Fills `out[0..<count]` with independent standard normals.
    package func fillStandardNormal<Scalar: BLASScalar>(_ out: UnsafeMutablePointer<Scalar>, count: Int) {
        Scalar.fillStandardNormal(out, count: count, using: self)
    }

    /// `count` independent standard normals, the same values (and the same
    /// generator state afterwards) as the engine's own draws of ε.
    package func standardNormals<Scalar: BLASScalar>(count: Int, _: Scalar.Type = Scalar.self) -> [Scalar] {
        precondition(count >= 0, "count must be non-negative, got \(count)")
        return [Scalar](unsafeUninitializedCapacity: count) { values, initialized in
            if let base = values.baseAddress { fillStandardNormal(base, count: count) }
            initialized = count
        }
    }

    /// Fills `tensor` with independent standard normals (`standardNormals`).
    package func fillStandardNormal<Scalar: BLASScalar>(_ tensor: Tensor<Scalar>) {
        fillStandardNormal(tensor.pointer, count: tensor.count)
    }

    /// `count` fresh random words in the generator's scratch buffer, valid
    /// until the next call. Used by the bulk fills of the conformances.
    package func scratchWords(count: Int) -> UnsafeMutablePointer<UInt64> {
        if count > scratchCapacity {
            scratch.deallocate()
            scratchCapacity = max(count, 2 * scratchCapacity)
            scratch = .allocate(capacity: scratchCapacity)
        }
        var local = state
        let words = scratch
        for i in 0..<count { words[i] = Xoshiro256.step(&local) }
        state = local
        return words
    }
}
