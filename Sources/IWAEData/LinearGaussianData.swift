import IWAELinearAlgebra

/// Synthetic real-valued data from a random linear-Gaussian model, whose
/// posterior is Gaussian with a full (correlated) covariance:
///
///     z ~ N(0, I_k),   x = W z + b + σ ε,   ε ~ N(0, I_D)
///
/// W = G T / √k with G (D, k) of independent N(0, 1) entries and T (k, k)
/// upper triangular with ones (so W's columns, and the posterior, are
/// strongly correlated), b ~ N(0, 0.25 I), σ = `noise`. The generating model depends only on `seed`; the training
/// and test examples are independent draws from it.
public struct LinearGaussianData: Sendable, Codable, Equatable {
    public var dimension: Int
    public var latentDimension: Int
    public var noise: Double
    public var seed: UInt64
    /// k₂ for a two-layer chain (nil: one latent layer):
    /// z₂ ~ N(0, I), z₁ = U z₂ + a + ½ ε₁, x = W z₁ + b + σ ε.
    public var upperDimension: Int?

    public init(dimension: Int = 20, latentDimension: Int = 5, noise: Double = 0.5, seed: UInt64 = 1, upperDimension: Int? = nil) {
        self.dimension = dimension
        self.latentDimension = latentDimension
        self.noise = noise
        self.seed = seed
        self.upperDimension = upperDimension
    }

    enum CodingKeys: String, CodingKey { case dimension, latentDimension, noise, seed, upperDimension }

    public init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(dimension: try c.decode(Int.self, forKey: .dimension), latentDimension: try c.decode(Int.self, forKey: .latentDimension),
                  noise: try c.decode(Double.self, forKey: .noise), seed: try c.decode(UInt64.self, forKey: .seed),
                  upperDimension: try c.decodeIfPresent(Int.self, forKey: .upperDimension))
    }

    /// U (k₁·k₂, row-major) and a (k₁) of a two-layer chain, from their own stream
    /// (built like W: correlated columns).
    package var upperParameters: (weight: [Double], bias: [Double])? {
        guard let k2 = upperDimension else { return nil }
        return LinearGaussianData.correlatedWeights(rows: latentDimension, columns: k2, rng: Xoshiro256(seed: seed ^ 0x2C4A1))
    }

    /// G T / √k and 0.5·b for G (rows, columns) and b (rows) of independent
    /// standard normals and T upper triangular with ones.
    static func correlatedWeights(rows: Int, columns k: Int, rng: Xoshiro256) -> (weight: [Double], bias: [Double]) {
        var w = [Double](repeating: 0, count: rows * k)
        var b = [Double](repeating: 0, count: rows)
        rng.fillStandardNormal(&w, count: w.count)
        rng.fillStandardNormal(&b, count: b.count)
        let scale = 1 / Double(k).squareRoot()
        var correlated = [Double](repeating: 0, count: w.count)
        for d in 0..<rows {
            var running = 0.0
            for i in 0..<k {   // (G T)[d, i] = Σ_{j ≤ i} G[d, j]
                running += w[d * k + i]
                correlated[d * k + i] = running * scale
            }
        }
        return (correlated, b.map { $0 * 0.5 })
    }

    package func validate() throws {
        guard dimension >= 1 else { throw DataError.invalidArgument("synthetic-dimension must be a positive integer, got \(dimension)") }
        guard latentDimension >= 1 else {
            throw DataError.invalidArgument("synthetic-latent must be a positive integer, got \(latentDimension)")
        }
        guard noise.isFinite, noise > 0 else { throw DataError.invalidArgument("linear-gaussian noise must be positive") }
        // The generator holds D·k weights and draws examples of D values: keep both allocatable.
        guard CheckedSize.product([dimension, Swift.max(latentDimension, upperDimension ?? 1)]).map({ $0 <= 1 << 26 }) == true,
              latentDimension <= 1 << 16, (upperDimension ?? 1) <= 1 << 16 else {
            throw DataError.invalidArgument("linear-gaussian sizes are too large (synthetic-dimension × synthetic-latent must be at most 2^26)")
        }
        if let k2 = upperDimension, k2 < 1 {
            throw DataError.invalidArgument("synthetic-upper-latent must be a positive integer, got \(k2)")
        }
    }

    /// The generating weights W (D·k, row-major) and bias b (D).
    public var parameters: (weight: [Double], bias: [Double]) {
        LinearGaussianData.correlatedWeights(rows: dimension, columns: latentDimension, rng: Xoshiro256(seed: seed))
    }

    /// `count` examples drawn with `sampleSeed`, as an `ImageSet` of
    /// (dimension × 1) "images" (real values, not intensities).
    public func examples(_ count: Int, sampleSeed: UInt64) -> ImageSet {
        let (w, b) = parameters
        let rng = Xoshiro256(seed: sampleSeed ^ 0xD47A)
        var z = [Double](repeating: 0, count: latentDimension), e = [Double](repeating: 0, count: dimension)
        let upper = upperParameters, k2 = upperDimension ?? 0
        var z2 = [Double](repeating: 0, count: k2)
        var pixels = [Float]()
        pixels.reserveCapacity(count * dimension)
        for _ in 0..<count {
            rng.fillStandardNormal(&z, count: latentDimension)
            if let (u, a) = upper {
                // z₁ = U z₂ + a + ½ ε₁, with ε₁ the standard normals just drawn.
                rng.fillStandardNormal(&z2, count: k2)
                for i in 0..<latentDimension {
                    var v = a[i] + 0.5 * z[i]
                    for j in 0..<k2 { v += u[i * k2 + j] * z2[j] }
                    z[i] = v
                }
            }
            rng.fillStandardNormal(&e, count: dimension)
            for d in 0..<dimension {
                var v = b[d] + noise * e[d]
                for i in 0..<latentDimension { v += w[d * latentDimension + i] * z[i] }
                pixels.append(Float(v))
            }
        }
        return ImageSet(count: count, width: dimension, height: 1, pixels: pixels, labels: [UInt8](repeating: 0, count: count))
    }
}
