import IWAELinearAlgebra
import RealModule

/// The test log-likelihood estimate of Mathematics §5 and what comes with it.
public struct LogLikelihoodEstimate: Sendable {
    /// The seed of the protocol's draws (its k is `EvaluationSamples.standard`).
    public static let standardSeed: UInt64 = 1

    /// k, the number of importance samples per example.
    public var samples: Int
    /// L_k per example (nats): the estimate of log p(x) of each row.
    public var logLikelihoods: [Double]
    /// The Monte Carlo standard error of each L_k (`monteCarloStandardError`;
    /// NaN for k = 1, where one draw cannot tell its own spread).
    public var standardErrors: [Double]
    /// Monte Carlo ELBO per example, the mean of its k log weights (nats).
    public var elbos: [Double]
    /// Reconstruction per example, the mean of log p(x|z) over its k samples (nats).
    public var reconstructions: [Double]
    /// KL(q(·|x) ‖ r) per example, in closed form (nats).
    public var kls: [Double]
    /// Σ_x m_u(x) and Σ_x m_u(x)² for each unit u of each stochastic layer
    /// (mergeable moments), where m(x) = E_q[z_l]: μ₁(x) exactly for z₁, and
    /// for a layer above the mean of μ_l(z_{l−1}) over the k draws of the
    /// layers below (E over q(z₁|x) q(z₂|z₁) … by Monte Carlo).
    package var layerMeanSums: [[Double]]
    package var layerMeanSquareSums: [[Double]]

    /// Var_x(E_q[z_l,u]) for each unit u of each layer l (Burda et al.'s activity).
    public var latentActivityPerLayer: [[Double]] {
        let n = Double(max(logLikelihoods.count, 1))
        return zip(layerMeanSums, layerMeanSquareSums).map { sums, squares in
            zip(sums, squares).map { sum, square in
                let m = sum / n
                return Swift.max(0, square / n - m * m)
            }
        }
    }

    /// Var_x(μ_u(x)) for each unit u of z₁.
    public var latentActivity: [Double] { latentActivityPerLayer[0] }

    public var examples: Int { logLikelihoods.count }

    /// The estimate of a density in other units: `offset` (a change of
    /// variables' log |dy/dx|) added to every log-likelihood, ELBO and
    /// reconstruction; KL and standard errors unchanged.
    package func shifted(by offset: Double) -> LogLikelihoodEstimate {
        guard offset != 0 else { return self }
        var s = self
        s.logLikelihoods = logLikelihoods.map { $0 + offset }
        s.elbos = elbos.map { $0 + offset }
        s.reconstructions = reconstructions.map { $0 + offset }
        return s
    }
    /// Mean L_k: the log-likelihood estimate.
    public var meanLogLikelihood: Double { logLikelihoods.reduce(0, +) / Double(max(logLikelihoods.count, 1)) }
    /// NLL = −mean L_k.
    public var negativeLogLikelihood: Double { -meanLogLikelihood }
    /// Standard error of the mean of L_k over examples.
    public var standardError: Double { standardErrorOfMean(logLikelihoods) }
    public var meanELBO: Double { elbos.reduce(0, +) / Double(max(elbos.count, 1)) }
    public var meanReconstruction: Double { reconstructions.reduce(0, +) / Double(max(reconstructions.count, 1)) }
    public var meanKL: Double { kls.reduce(0, +) / Double(max(kls.count, 1)) }
    /// Units of z₁ with Var_x(μ_u(x)) > 10⁻² (Burda et al. 2015).
    public var activeUnits: Int { activeUnitsPerLayer[0] }
    /// Active units of each stochastic layer, z₁ first.
    public var activeUnitsPerLayer: [Int] { latentActivityPerLayer.map { $0.filter { $0 > 1e-2 }.count } }
}

extension LogLikelihoodEstimate {
    /// The estimate over the union of disjoint sets of examples, `parts` in
    /// order (their moment sums added in that order), each of `samples`
    /// draws and with layers of `layerDimensions` units.
    package init(samples: Int, layerDimensions: [Int], concatenating parts: [LogLikelihoodEstimate]) {
        precondition(parts.allSatisfy { $0.samples == samples && $0.layerMeanSums.map(\.count) == layerDimensions })
        self.samples = samples
        logLikelihoods = parts.flatMap(\.logLikelihoods)
        standardErrors = parts.flatMap(\.standardErrors)
        elbos = parts.flatMap(\.elbos)
        reconstructions = parts.flatMap(\.reconstructions)
        kls = parts.flatMap(\.kls)
        layerMeanSums = layerDimensions.map { [Double](repeating: 0, count: $0) }
        layerMeanSquareSums = layerMeanSums
        for part in parts {
            for l in layerDimensions.indices {
                for u in 0..<layerDimensions[l] {
                    layerMeanSums[l][u] += part.layerMeanSums[l][u]
                    layerMeanSquareSums[l][u] += part.layerMeanSquareSums[l][u]
                }
            }
        }
    }
}

/// The standard error of the mean of `values`, √(s² / n) with the sample
/// variance s² (n − 1 in the denominator); 0 for fewer than two values.
package func standardErrorOfMean(_ values: [Double]) -> Double {
    let n = Double(values.count)
    guard n > 1 else { return 0 }
    let m = values.reduce(0, +) / n
    return (values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / (n - 1) / n).squareRoot()
}

// These run specialized when reached through `ModelWorkers` (pre-specialized
// for Float); called directly from another module they run generic.
extension VariationalAutoencoder {
    /// Estimates `log p(x) ≈ L_k` for each row of `x` (N, D) with k samples,
    /// in passes of `examplesPerPass(k, rowsPerPass)` examples and about
    /// `rowsPerPass` decoder rows, with a running log-sum-exp per example, so
    /// memory does not grow with k:
    ///
    ///     L_k = logmeanexp over all k draws = log Σ_chunks exp(logsumexp_chunk(log w)) − log k
    ///
    /// Row b draws its noise from its own stream, `Xoshiro256.rowSeed(seed,
    /// row: firstRow + b)`: its estimate does not depend on the other rows
    /// (up to the products' rounding, which can depend on the rows of a pass:
    /// passes start at multiples of examplesPerPass from `firstRow`, so a
    /// caller that cuts rows there gets the same bits). A NaN log weight
    /// makes that example's L_k NaN. The buffers are released at the end.
    /// `progress` is called with the number of examples done. By default a
    /// pass holds about 500 rows (`EvaluationSamples.rowsPerPass`).
    public func estimateLogLikelihood(
        _ x: MatrixView<Scalar>, samples: EvaluationSamples, seed: UInt64, firstRow: Int = 0,
        rowsPerPass: Int = EvaluationSamples.rowsPerPass,
        progress: ((Int) -> Void)? = nil
    ) throws -> LogLikelihoodEstimate {
        store.roundValuesForProducts()
        let passes = PassQueue(rows: x.rows, perPass: samples.examplesPerPass(rowsPerPass: rowsPerPass))
        let parts = try estimateLogLikelihood(x, samples: samples, seed: seed, firstRow: firstRow, rowsPerPass: rowsPerPass,
                                              passes: passes, progress: progress)
        return LogLikelihoodEstimate(samples: samples.perExample, layerDimensions: configuration.latentDimensions,
                                     concatenating: passes.inPassOrder([parts]))
    }

    /// `estimateLogLikelihood` of the passes this model takes from `passes`
    /// (made for the rows of `x` and `samples.examplesPerPass(rowsPerPass:)`),
    /// one estimate per pass, by pass; `progress` is called with the
    /// examples all takers of `passes` have done. After an error no one
    /// takes another pass. The buffers are released at the end.
    package func estimateLogLikelihood(
        _ x: MatrixView<Scalar>, samples: EvaluationSamples, seed: UInt64, firstRow: Int, rowsPerPass: Int,
        passes: PassQueue, progress: ((Int) -> Void)?
    ) throws -> [Int: LogLikelihoodEstimate] {
        precondition(x.columns == configuration.dataDimension)
        precondition(passes.rows == x.rows && passes.perPass == samples.examplesPerPass(rowsPerPass: rowsPerPass))
        let k = samples.perExample
        defer { releaseBuffers() }
        let samplesPerPass = samples.drawsPerPass(rowsPerPass: rowsPerPass)
        let streams = (0..<passes.perPass).map { _ in Xoshiro256(seed: 0) }
        let latent = configuration.latentDimension, dimensions = configuration.latentDimensions
        // Per example of the pass, Σ over draws of μ_l(z_{l−1}) for each upper layer.
        var upperDrawSums = dimensions.dropFirst().map { [Double](repeating: 0, count: passes.perPass * $0) }
        var running = [Double](repeating: 0, count: passes.perPass)
        var runningSquares = [Double](repeating: 0, count: passes.perPass)
        var logWeightSum = [Double](repeating: 0, count: passes.perPass)
        var logLikelihoodSum = [Double](repeating: 0, count: passes.perPass)
        return try passes.takeEach(progress: progress) { rows in
            let start = rows.lowerBound, n = rows.count
            var part = LogLikelihoodEstimate(
                samples: k, logLikelihoods: [], standardErrors: [], elbos: [], reconstructions: [], kls: [],
                layerMeanSums: dimensions.map { [Double](repeating: 0, count: $0) },
                layerMeanSquareSums: dimensions.map { [Double](repeating: 0, count: $0) })
            for b in 0..<n { streams[b].reseed(Xoshiro256.rowSeed(seed, row: firstRow + start + b)) }
            let noise = Noise.perExample(Array(streams[0..<n]))
            let encoded = try encode(x.rows(rows))
            let means = encoder.means
            for b in 0..<n {
                for u in 0..<latent {
                    let mu = Double(means[b, u])
                    part.layerMeanSums[0][u] += mu
                    part.layerMeanSquareSums[0][u] += mu * mu
                }
                running[b] = -.infinity
                runningSquares[b] = -.infinity
                logWeightSum[b] = 0
                logLikelihoodSum[b] = 0
                part.kls.append(Double(klDivergences[b]))
            }
            for l in upperDrawSums.indices { for i in upperDrawSums[l].indices { upperDrawSums[l][i] = 0 } }
            var done = 0
            while done < k {
                let s = Swift.min(samplesPerPass, k - done)
                let lw = try logWeights(encoded, drawsPerExample: s, noise: noise, keepForBackward: false)
                for b in 0..<n {
                    let row = lw.values.pointer + b * lw.values.rowStride
                    running[b] = logAddExp(running[b], Double(logSumExp(row, count: s)))
                    runningSquares[b] = logAddExp(runningSquares[b], logSumExpOfDoubled(row, count: s))
                    for j in 0..<s {
                        logWeightSum[b] += Double(row[j])
                        logLikelihoodSum[b] += Double(lw.logLikelihood[b * s + j])
                    }
                }
                for (l, upper) in encoders.dropFirst().enumerated() {
                    let means = upper.means, k = upper.dimension
                    for r in 0..<n * s { for u in 0..<k { upperDrawSums[l][(r / s) * k + u] += Double(means[r, u]) } }
                }
                done += s
            }
            for l in upperDrawSums.indices {
                let width = dimensions[l + 1]
                for b in 0..<n { for u in 0..<width {
                    let m = upperDrawSums[l][b * width + u] / Double(k)
                    part.layerMeanSums[l + 1][u] += m
                    part.layerMeanSquareSums[l + 1][u] += m * m
                } }
            }
            for b in 0..<n {
                part.logLikelihoods.append(logMeanExp(logSum: running[b], count: k))
                part.elbos.append(logWeightSum[b] / Double(k))
                part.reconstructions.append(logLikelihoodSum[b] / Double(k))
                part.standardErrors.append(monteCarloStandardError(logSum: running[b], logSumOfSquares: runningSquares[b], count: k))
            }
            return part
        }
    }

    /// The mean bound of `objective` (its kind, with its K draws) over the
    /// rows of `x` (N, D), forward only, in passes of about
    /// `EvaluationSamples.rowsPerPass` rows of draws (at least one example,
    /// K rows); the buffers are released at the end.
    public func meanBound(_ x: MatrixView<Scalar>, objective: Objective, seed: UInt64) throws -> Double {
        let K = objective.drawsPerExample
        defer { releaseBuffers() }
        let batch = EvaluationSamples.examplesPerPass(drawsPerExample: K)
        let rng = Xoshiro256(seed: seed)
        var total = 0.0
        var start = 0
        let scratch = UnsafeMutablePointer<Scalar>.allocate(capacity: Swift.min(batch, Swift.max(x.rows, 1)))
        defer { scratch.deallocate() }
        while start < x.rows {
            let n = Swift.min(batch, x.rows - start)
            let encoded = try encode(x.rows(start..<start + n))
            try logWeights(encoded, drawsPerExample: K, using: rng, keepForBackward: false).bound(objective, into: scratch)
            for b in 0..<n { total += Double(scratch[b]) }
            start += n
        }
        return total / Double(Swift.max(x.rows, 1))
    }
}
