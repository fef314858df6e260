import IWAELinearAlgebra

/// Where the standard normals ε of the reparameterized draws come from.
///
/// - `shared`: one generator for the whole batch, filled in row-major order
///   (training: the draws follow the batch).
/// - `perExample`: one generator per example of the batch; example b's
///   values (a contiguous block, all its draws) come from its own generator
///   only (evaluation: an example's estimate depends on its own stream, not
///   on the rows, threads or chunks it is computed with).
package enum Noise {
    case shared(Xoshiro256)
    case perExample([Xoshiro256])

    /// Fills `out[0..<count]`: at once, or in `generators.count` equal
    /// blocks, block b from generator b.
    func fillStandardNormal<Scalar: BLASScalar>(_ out: UnsafeMutablePointer<Scalar>, count: Int) {
        switch self {
        case .shared(let rng): rng.fillStandardNormal(out, count: count)
        case .perExample(let generators):
            precondition(!generators.isEmpty && count % generators.count == 0, "\(count) values for \(generators.count) examples")
            let block = count / generators.count
            for (b, g) in generators.enumerated() { g.fillStandardNormal(out + b * block, count: block) }
        }
    }
}
