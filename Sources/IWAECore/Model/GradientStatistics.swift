import IWAELinearAlgebra
import RealModule

/// Running mean and variance of gradient draws, per parameter (Welford), in
/// Double: memory O(parameters) whatever the number of draws.
package final class GradientMoments {
    package private(set) var draws = 0
    package private(set) var mean: [Double]
    private var squares: [Double]

    package init(count: Int) {
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
    package func variance(_ i: Int) -> Double { draws > 1 ? squares[i] / Double(draws - 1) : 0 }

    /// Summary over parameters `range`: the norm of the mean gradient, the
    /// total variance Σ Var, and the mean signal-to-noise ratio
    /// |E g| / std g (Rainforth et al. 2018) over parameters with nonzero variance.
    package func summary(_ range: Range<Int>) -> (meanNorm: Double, totalVariance: Double, snr: Double) {
        summary([range])
    }

    /// `summary` over the parameters of several ranges (a parameter group).
    package func summary(_ ranges: [Range<Int>]) -> (meanNorm: Double, totalVariance: Double, snr: Double) {
        var norm = 0.0, total = 0.0, snr = 0.0, counted = 0
        for i in ranges.joined() {
            norm += mean[i] * mean[i]
            let v = variance(i)
            total += v
            if v > 0 { snr += abs(mean[i]) / v.squareRoot(); counted += 1 }
        }
        return (norm.squareRoot(), total, counted > 0 ? snr / Double(counted) : 0)
    }
}

/// The parameter groups whose gradients Rainforth et al. (2018) follow
/// separately: the inference network φ, the generative network θ, the prior λ.
package enum ParameterGroup: String, CaseIterable, Sendable {
    case encoder, decoder, prior
}

extension VariationalAutoencoder {
    /// The positions of a group's parameters in the flat buffer: the encoders
    /// (φ), the likelihood's decoder and σ² (θ), the top prior and the
    /// conditional priors p(z_l|z_{l+1}) of the layers above (λ; empty for a
    /// standard prior on one layer).
    package func parameters(of group: ParameterGroup) -> [Range<Int>] {
        switch group {
        case .encoder: return [encoderParameters]
        case .decoder: return [decoderParameters]
        case .prior:
            let encoder = encoderParameters, decoder = decoderParameters
            return store.layout.slots.map { $0.offset..<$0.offset + $0.count }
                .filter { !encoder.overlaps($0) && !decoder.overlaps($0) && !$0.isEmpty }
        }
    }
}

/// The least-squares line through (log K, log SNR), the SNR's power law in K
/// (Rainforth et al. 2018 predict slopes −½ for the IWAE encoder and +½ for
/// its decoder):
///
///     slope = Σ (x − x̄)(y − ȳ) / Σ (x − x̄)²,   x = log K, y = log SNR
///     stderr = √( Σ r² / (n − 2) / Σ (x − x̄)² ),  r the residuals
///
/// The standard error is NaN with fewer than three points; the slope is NaN
/// with fewer than two distinct K or a non-positive SNR.
package func logLogSlope(ks: [Int], snr: [Double]) -> (slope: Double, standardError: Double) {
    precondition(ks.count == snr.count)
    guard ks.count >= 2, snr.allSatisfy({ $0 > 0 && $0.isFinite }) else { return (.nan, .nan) }
    let x = ks.map { Double.log(Double($0)) }, y = snr.map { Double.log($0) }
    let n = Double(x.count), xMean = x.reduce(0, +) / n, yMean = y.reduce(0, +) / n
    let sxx = x.reduce(0) { $0 + ($1 - xMean) * ($1 - xMean) }
    guard sxx > 0 else { return (.nan, .nan) }
    let slope = zip(x, y).reduce(0) { $0 + ($1.0 - xMean) * ($1.1 - yMean) } / sxx
    guard x.count >= 3 else { return (slope, .nan) }
    let residuals = zip(x, y).reduce(0) { sum, point in
        let r = point.1 - (yMean + slope * (point.0 - xMean))
        return sum + r * r
    }
    return (slope, (residuals / (n - 2) / sxx).squareRoot())
}

extension VariationalAutoencoder {
    /// The mean over the rows of x (B, D) and over `repeats` sets of K draws
    /// from q of ESS / K, the weights' effective sample size per draw
    /// (`effectiveSampleSizes`): near 1 where Rainforth et al.'s asymptotic
    /// rates apply, far below where a few draws carry the weight.
    package func effectiveSampleFraction(_ x: MatrixView<Scalar>, drawsPerExample K: Int, repeats: Int, seed: UInt64) throws -> Double {
        precondition(K >= 1 && repeats >= 1 && x.columns == configuration.dataDimension)
        defer { releaseBuffers() }
        let rng = Xoshiro256(seed: seed)
        var total = 0.0
        for _ in 0..<repeats {
            let lw = try logWeights(try encode(x), drawsPerExample: K, using: rng, keepForBackward: false)
            total += effectiveSampleSizes(logWeights: lw.values).reduce(0, +)
        }
        return total / Double(repeats * x.rows * K)
    }
}

extension ModelWorkers where Scalar == Float {
    /// The statistics of `draws` independent training-step gradients of
    /// `objective` on the rows of `x` (the workers' streams go on from one
    /// draw to the next), summarized per parameter group of the model:
    /// ‖E g‖, Σ Var g and the mean SNR |E g| / std g (`GradientMoments`).
    /// The model's gradients hold the last draw afterwards.
    package func gradientStatistics(_ x: MatrixView<Float>, objective: Objective, draws: Int,
                                   progress: ((Int) -> Void)? = nil) throws
        -> [ParameterGroup: (meanNorm: Double, totalVariance: Double, snr: Double)]
    {
        let moments = GradientMoments(count: model.store.values.count)
        for draw in 0..<draws {
            try stepGradient(x, objective: objective)
            collectGradient()
            moments.add(model.store.gradients.pointer)
            progress?(draw + 1)
        }
        var result = [ParameterGroup: (meanNorm: Double, totalVariance: Double, snr: Double)]()
        for group in ParameterGroup.allCases where !model.parameters(of: group).joined().isEmpty {
            result[group] = moments.summary(model.parameters(of: group))
        }
        return result
    }
}
