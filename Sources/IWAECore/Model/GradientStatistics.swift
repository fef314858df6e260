import IWAELinearAlgebra

/// Running mean and variance of gradient draws, per parameter (Welford), in
/// Double: memory O(parameters) whatever the number of draws.
public final class GradientMoments {
    public private(set) var draws = 0
    public private(set) var mean: [Double]
    private var squares: [Double]

    public init(count: Int) {
        mean = [Double](repeating: 0, count: count)
        squares = [Double](repeating: 0, count: count)
    }

    /// Adds one draw (`count` values).
    package func add<Scalar: BLASScalar>(_ g: UnsafePointer<Scalar>) {
        draws += 1
        let n = Double(draws)
        for i in 0..<mean.count {
            let x = Double(g[i])
            let delta = x - mean[i]
            mean[i] += delta / n
            squares[i] += delta * (x - mean[i])
        }
    }

    /// Unbiased variance of parameter i.
    public func variance(_ i: Int) -> Double { draws > 1 ? squares[i] / Double(draws - 1) : 0 }

    /// Summary over parameters `range`: the norm of the mean gradient, the
    /// total variance Σ Var, and the mean signal-to-noise ratio
    /// |E g| / std g (Rainforth et al. 2018) over parameters with nonzero variance.
    public func summary(_ range: Range<Int>) -> (meanNorm: Double, totalVariance: Double, snr: Double) {
        var norm = 0.0, total = 0.0, snr = 0.0, counted = 0
        for i in range {
            norm += mean[i] * mean[i]
            let v = variance(i)
            total += v
            if v > 0 { snr += abs(mean[i]) / v.squareRoot(); counted += 1 }
        }
        return (norm.squareRoot(), total, counted > 0 ? snr / Double(counted) : 0)
    }
}
