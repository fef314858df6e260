import IWAE
import RealModule
import XCTest

/// The notes' full model: Cholesky backward, closed-form KL, log q, errors,
/// and the exact-likelihood check of MATH.md §2 (tightness).
final class FullModelTests: XCTestCase {
    func randomSPD(_ n: Int, seed: UInt64) -> [Double] {
        let rng = Xoshiro256(seed: seed)
        let a = (0..<n * n).map { _ in rng.uniform(Double.self) - 0.5 }
        var sigma = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n {
            var s = i == j ? 0.3 : 0
            for l in 0..<n { s += a[i * n + l] * a[j * n + l] }
            sigma[i * n + j] = s
        } }
        return sigma
    }

    func cholesky(_ sigma: [Double], _ n: Int) -> [Double] {
        var l = sigma
        XCTAssertEqual(l.withUnsafeMutableBufferPointer { Double.choleskyLower(n: n, a: $0.baseAddress!, lda: n) }, 0)
        for i in 0..<n { for j in (i + 1)..<max(i + 1, n) { l[i * n + j] = 0 } }
        return l
    }

    /// Murray's Σ̄ against central differences of f(Σ) = Σ c ⊙ chol(Σ) under
    /// symmetric perturbations, for k = 1, 2, 7 and 50.
    func testCholeskyBackwardAgainstFiniteDifferences() {
        for n in [1, 2, 7, 50] {
            let sigma = randomSPD(n, seed: UInt64(n))
            let rng = Xoshiro256(seed: 99)
            let c = (0..<n * n).map { idx in idx % n <= idx / n ? rng.uniform(Double.self) - 0.5 : 0 }
            func f(_ s: [Double]) -> Double { zip(cholesky(s, n), c).reduce(0) { $0 + $1.0 * $1.1 } }
            let l = cholesky(sigma, n)
            var sigmaBar = [Double](repeating: 0, count: n * n), work = [Double](repeating: 0, count: n * n)
            choleskyBackward(factor: l, factorGradient: c, n: n, into: &sigmaBar, work: &work)
            let h = 1e-6
            // Check every entry for small n, a fixed sample of entries for n = 50.
            let pairs: [(Int, Int)] = n <= 7 ? (0..<n).flatMap { i in (0...i).map { (i, $0) } }
                : (0..<60).map { _ in let i = Int(rng.next() % 50); return (i, Int(rng.next() % UInt64(i + 1))) }
            for (i, j) in pairs {
                var plus = sigma, minus = sigma
                plus[i * n + j] += h; minus[i * n + j] -= h
                if i != j { plus[j * n + i] += h; minus[j * n + i] -= h }
                let numeric = (f(plus) - f(minus)) / (2 * h)
                let analytic = i == j ? sigmaBar[i * n + i] : sigmaBar[i * n + j] + sigmaBar[j * n + i]
                assertClose(analytic, numeric, rtol: 1e-6, atol: 1e-8, "n=\(n) (\(i),\(j))")
            }
            // Σ̄ is symmetric.
            for i in 0..<n { for j in 0..<n { XCTAssertEqual(sigmaBar[i * n + j], sigmaBar[j * n + i], accuracy: 1e-12) } }
        }
    }

    /// KL in closed form against a Monte Carlo estimate E_q[log q − log r],
    /// against the diagonal formula, ≥ 0, and 0 exactly when q = r.
    func testClosedFormKL() {
        let n = 4
        let sigma = randomSPD(n, seed: 5)
        let l = cholesky(sigma, n)
        let mu = [0.3, -0.2, 0.5, 0.1], lambda1 = [0.1, 0.0, -0.3, 0.2], lambda2 = [0.8, 1.5, 0.5, 1.2]
        var trace = 0.0, quadratic = 0.0, logPriorDet = 0.0, logDet = 0.0
        for i in 0..<n {
            trace += sigma[i * n + i] / lambda2[i]
            quadratic += (lambda1[i] - mu[i]) * (lambda1[i] - mu[i]) / lambda2[i]
            logPriorDet += Double.log(lambda2[i])
            logDet += 2 * Double.log(l[i * n + i])
        }
        let kl = klDivergence(trace: trace, quadratic: quadratic, dimension: n, logPriorDeterminant: logPriorDet, logDeterminant: logDet)
        // Monte Carlo with z = μ + L ε.
        let draws = 200_000
        var eps = [Double](repeating: 0, count: draws * n)
        Xoshiro256(seed: 6).fillStandardNormal(&eps, count: eps.count)
        var z = [Double](repeating: 0, count: draws * n)
        for d in 0..<draws { for i in 0..<n {
            var s = mu[i]
            for j in 0...i { s += l[i * n + j] * eps[d * n + j] }
            z[d * n + i] = s
        } }
        var logQ = [Double](repeating: 0, count: draws)
        fullGaussianLogDensity(MatrixView(&z, rows: draws, columns: n), mean: mu, factor: l, into: &logQ)
        var values = [Double]()
        for d in 0..<draws {
            var logR = -Double(n) / 2 * Double.log(2 * Double.pi)
            for i in 0..<n {
                let diff = z[d * n + i] - lambda1[i]
                logR -= 0.5 * (diff * diff / lambda2[i] + Double.log(lambda2[i]))
            }
            values.append(logQ[d] - logR)
        }
        let mean = values.reduce(0, +) / Double(draws)
        let sd = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(draws - 1)).squareRoot()
        XCTAssertEqual(kl, mean, accuracy: 4 * sd / Double(draws).squareRoot())
        XCTAssertGreaterThan(kl, 0)
        // Diagonal Σ: ½ Σᵢ [s²/λ₂ + (λ₁ − μ)²/λ₂ − 1 + log λ₂ − log s²].
        let s = [0.7, 1.3, 0.9, 0.4]
        var diagonal = 0.0, tr = 0.0, q = 0.0, ld = 0.0, lds = 0.0
        for i in 0..<n {
            diagonal += 0.5 * (s[i] * s[i] / lambda2[i] + (lambda1[i] - mu[i]) * (lambda1[i] - mu[i]) / lambda2[i] - 1
                               + Double.log(lambda2[i]) - Double.log(s[i] * s[i]))
            tr += s[i] * s[i] / lambda2[i]; q += (lambda1[i] - mu[i]) * (lambda1[i] - mu[i]) / lambda2[i]
            ld += Double.log(lambda2[i]); lds += 2 * Double.log(s[i])
        }
        assertClose(klDivergence(trace: tr, quadratic: q, dimension: n, logPriorDeterminant: ld, logDeterminant: lds), diagonal, rtol: 1e-14)
        // q = r: zero.
        let same = klDivergence(trace: Double(n), quadratic: 0, dimension: n, logPriorDeterminant: ld, logDeterminant: ld)
        XCTAssertEqual(same, 0, accuracy: 1e-15)
    }

    /// The model's KL per example (full and diagonal encoders, learned prior)
    /// is ≥ 0 and matches the closed form built from its own μ, L, λ.
    func testModelKLAndLogDensityAtItsSamples() throws {
        for encoder in CovarianceKind.allCases {
            let c = ModelConfiguration(dataDimension: 6, latentDimension: 3, encoderHidden: [5], decoderHidden: [5],
                                       encoder: encoder, prior: .learned)
            let model = VariationalAutoencoder<Double>(c, seed: 2)
            let rng = Xoshiro256(seed: 3)
            for i in 0..<model.store.values.count { model.store.values[i] += 0.3 * (rng.uniform(Double.self) - 0.5) }
            let x = Tensor<Double>(shape: [4, 6], values: (0..<24).map { _ in Double(rng.next() % 2) })
            let encoded = try model.encode(x.matrix)
            let lw = try model.logWeights(encoded, drawsPerExample: 3, using: Xoshiro256(seed: 4), keepForBackward: false)
            XCTAssertTrue(lw.klDivergence.allSatisfy { $0 >= 0 })
            let scales = model.encoder.scales, means = model.encoder.means, z = model.encoder.samplesView(3)
            // log w = log p + log r − log q, with log q by a triangular solve at z.
            for b in 0..<4 {
                var factor = [Double](repeating: 0, count: 9)
                for i in 0..<3 {
                    if encoder == .full { for j in 0..<3 { factor[i * 3 + j] = scales[b, i * 3 + j] } }
                    else { factor[i * 3 + i] = scales[b, i] }
                }
                let mu = (0..<3).map { means[b, $0] }
                var logQ = [Double](repeating: 0, count: 3)
                fullGaussianLogDensity(z.rows(b * 3..<b * 3 + 3), mean: mu, factor: factor, into: &logQ)
                let prior = (model.store.layout.slot(named: "prior.mean")!, model.store.layout.slot(named: "prior.log_variance")!)
                for j in 0..<3 {
                    let zj: [Double] = (0..<3).map { z[b * 3 + j, $0] }
                    var logR = -1.5 * Double.log(2 * Double.pi)
                    for i in 0..<3 {
                        let m: Double = model.store.value(prior.0)[i], v = Double.exp(model.store.value(prior.1)[i])
                        logR -= 0.5 * ((zj[i] - m) * (zj[i] - m) / v + Double.log(v))
                    }
                    let logP = lw.logLikelihood[b * 3 + j]
                    assertClose(lw.values[b, j], logP + logR - logQ[j], rtol: 1e-12, atol: 1e-12, "\(encoder) b=\(b) j=\(j)")
                }
            }
        }
    }

    func testNonPositiveDefiniteCovarianceIsAClearError() throws {
        let c = ModelConfiguration(dataDimension: 4, latentDimension: 3, encoderHidden: [4], decoderHidden: [4], encoder: .full)
        let model = VariationalAutoencoder<Float>(c, seed: 1)
        // A = 0 and softplus(d) = 0 in Float: Σ = 0.
        for name in ["encoder.cov_factor.weight", "encoder.cov_factor.bias", "encoder.cov_diag.weight"] {
            let slot = model.store.layout.slot(named: name)!
            model.store.value(slot).update(repeating: 0, count: slot.count)
        }
        let d = model.store.layout.slot(named: "encoder.cov_diag.bias")!
        model.store.value(d).update(repeating: -200, count: 3)
        let x = Tensor<Float>(shape: [6, 4], values: [Float](repeating: 1, count: 24))
        XCTAssertThrowsError(try model.encode(x.matrix)) { error in
            XCTAssertEqual("\(error)", "the encoder covariance of example 0 in the batch is not positive definite (LAPACK potrf info 1)")
        }
        // Through two workers the example index is the batch's, not the worker's.
        let pool = ModelWorkers(model: model, workers: 2, seed: 1)
        XCTAssertThrowsError(try pool.stepGradient(x.matrix, objective: Objective(.iwae, samplesPerExample: 2))) { error in
            XCTAssertTrue("\(error)".contains("example 0 in the batch"), "\(error)")
        }
        // Only the second block fails: its first example is example 3 of the batch.
        let healthy = ModelWorkers(model: model, workers: 2, seed: 1)
        model.store.value(d).update(repeating: 0.5, count: 3)
        let mixed = Tensor<Float>(shape: [6, 4], values: [Float](repeating: 0, count: 12) + [Float](repeating: 1, count: 12))
        let w = model.store.layout.slot(named: "encoder.cov_diag.weight")!
        _ = try healthy.stepGradient(mixed.matrix, objective: Objective(.iwae, samplesPerExample: 2))
        model.store.value(w).update(repeating: -100, count: w.count)   // only inputs of ones drive d to −∞
        XCTAssertThrowsError(try healthy.stepGradient(mixed.matrix, objective: Objective(.iwae, samplesPerExample: 2))) { error in
            XCTAssertTrue("\(error)".contains("example 3 in the batch"), "\(error)")
        }
    }

    /// MATH.md §2, tightness: on linear-Gaussian data a full-covariance
    /// encoder brings every L_K within 0.05 nats of the exact log-likelihood;
    /// a diagonal one leaves a gap that shrinks as K grows.
    func testTightnessOnLinearGaussianData() throws {
        let generator = LinearGaussianData(dimension: 6, latentDimension: 3, noise: 0.5, seed: 3)
        let train = generator.examples(3000, sampleSeed: 1), test = generator.examples(300, sampleSeed: 2)
        var gaps = [CovarianceKind: [Double]]()
        for encoder in CovarianceKind.allCases {
            let c = ModelConfiguration(dataDimension: 6, latentDimension: 3, encoderHidden: [], decoderHidden: [],
                                       encoder: encoder, prior: .learned, likelihood: .gaussian, sigma: 1, learnSigma: true)
            gaps[encoder] = try tightnessGaps(VariationalAutoencoder<Float>(c, seed: 1), train: train, test: test, epochs: 40)
        }
        for (k, gap) in zip([1, 5, 50], gaps[.full]!) {
            XCTAssertLessThan(abs(gap), 0.05, "full, K=\(k): gap \(gap)")
        }
        let diagonal = gaps[.diagonal]!
        XCTAssertGreaterThan(diagonal[0], 0.2, "diagonal gaps \(diagonal)")
        XCTAssertGreaterThan(diagonal[0], diagonal[1])
        XCTAssertGreaterThan(diagonal[1], diagonal[2])
    }
}
