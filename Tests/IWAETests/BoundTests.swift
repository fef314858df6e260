import IWAE
import RealModule
import XCTest

/// Properties of the bounds on a fixed model (MATH.md §2):
/// E[L_1] ≤ E[L_5] ≤ E[L_50] ≤ log p(x), and L_5000 above L_50.
final class BoundTests: XCTestCase {
    func fixedModel() -> (VariationalAutoencoder<Float>, Tensor<Float>) {
        let configuration = ModelConfiguration(dataDimension: 20, latentDimension: 4, encoderHidden: [16], decoderHidden: [16])
        let model = VariationalAutoencoder<Float>(configuration, seed: 17)
        let rng = Xoshiro256(seed: 18)
        let n = 400
        // Data with structure: two prototypes with noise.
        var values = [Float]()
        for i in 0..<n { for d in 0..<20 {
            let on = (i % 2 == 0) == (d < 10)
            values.append(rng.uniform(Double.self) < (on ? 0.9 : 0.1) ? 1 : 0)
        } }
        return (model, Tensor(shape: [n, 20], values: values))
    }

    func testIWAEBoundGrowsWithKAndStaysBelowTheLargeKEstimate() throws {
        let (model, x) = fixedModel()
        // Per-example bounds, averaged over independent draws.
        func meanBound(_ K: Int) -> (mean: Double, standardError: Double) {
            var perDraw = [Double]()
            for seed in 0..<8 {
                perDraw.append(try! model.meanBound(x.matrix, objective: Objective(.iwae, samplesPerExample: K), seed: UInt64(100 + seed)))
            }
            let m = perDraw.reduce(0, +) / Double(perDraw.count)
            let v = perDraw.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(perDraw.count - 1)
            return (m, (v / Double(perDraw.count)).squareRoot())
        }
        let l1 = meanBound(1), l5 = meanBound(5), l50 = meanBound(50)
        XCTAssertGreaterThan(l5.mean - l1.mean, 4 * (l5.standardError + l1.standardError), "L5 \(l5) vs L1 \(l1)")
        XCTAssertGreaterThan(l50.mean - l5.mean, 4 * (l50.standardError + l5.standardError), "L50 \(l50) vs L5 \(l5)")
        let estimate = try model.estimateLogLikelihood(x.matrix, samples: 5000, seed: 7, rowsPerPass: 3000)
        XCTAssertEqual(estimate.examples, 400)
        XCTAssertGreaterThan(estimate.meanLogLikelihood, l50.mean + 4 * l50.standardError, "L5000 \(estimate.meanLogLikelihood) vs L50 \(l50)")
        // The Monte Carlo ELBO from the same samples is the L_1 expectation.
        XCTAssertEqual(estimate.meanELBO, l1.mean, accuracy: 6 * l1.standardError + 0.05)
        XCTAssertLessThan(estimate.meanELBO, estimate.meanLogLikelihood)
    }

    /// L_k from one pass and from chunks of samples combined by a running
    /// log-sum-exp, each against a direct computation with the same draws
    /// (row b's from its own stream, `Xoshiro256.rowSeed(seed, row: b)`):
    ///
    ///     L_k = log Σ_chunks exp(logsumexp_chunk(log w)) − log k
    ///
    /// and its Monte Carlo standard error against the naive delta-method
    /// formula over the same k weights (to the Float rounding of the log
    /// weights, which a 6-row product and a 1-row one may round apart).
    func testChunkedEstimateMatchesDirectComputation() throws {
        let (model, x) = fixedModel()
        let rows = MatrixView(x.pointer, rows: 6, columns: 20)
        let k = 300
        // rowsPerPass 300: one pass of 300 samples per example; 70: passes of 70, 70, 70, 70, 20.
        for (rowsPerPass, chunks) in [(300, [300]), (70, [70, 70, 70, 70, 20])] {
            let estimate = try model.estimateLogLikelihood(rows, samples: EvaluationSamples(k), seed: 3, rowsPerPass: rowsPerPass)
            var expected = [Double](), errors = [Double]()
            for b in 0..<rows.rows {
                let rng = Xoshiro256(seed: Xoshiro256.rowSeed(3, row: b))
                let encoded = try model.encode(rows.rows(b..<b + 1))
                var logWeights = [Double]()
                for s in chunks {
                    let lw = try model.logWeights(encoded, drawsPerExample: s, using: rng, keepForBackward: false)
                    for j in 0..<s { logWeights.append(Double(lw.values[0, j])) }
                }
                // Direct: one log-sum-exp over all k log weights, in Double.
                let m = logWeights.max()!
                expected.append(m + Double.log(logWeights.reduce(0) { $0 + Double.exp($1 - m) }) - Double.log(Double(k)))
                // se² = Var(w) / (k · mean(w)²), Var with k − 1, on w scaled by e^−m.
                let w = logWeights.map { Double.exp($0 - m) }
                let mean = w.reduce(0, +) / Double(k)
                let variance = w.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(k - 1)
                errors.append((variance / Double(k)).squareRoot() / mean)
            }
            assertClose(estimate.logLikelihoods, expected, rtol: 1e-6, "rowsPerPass \(rowsPerPass)")
            // The log weights are Floats of magnitude about 20, good to a few ulp
            // (2⁻¹⁹ ≈ 1.9·10⁻⁶ each), and a product of 6 rows rounds otherwise
            // than one of 1 on some kernels: the weights, and the standard error
            // that measures their spread, move relatively by as much.
            assertClose(estimate.standardErrors, errors, rtol: 1e-5, atol: 1e-9, "standard errors, rowsPerPass \(rowsPerPass)")
        }
    }

    /// Active units: Var_x(μ_u(x)) > 10⁻², against a naive two-pass
    /// variance of the encoder means in Double; with the mean weights of units
    /// 0, 2 and 3 zeroed (μ = bias, constant) exactly unit 1 is active.
    func testActiveUnits() throws {
        let (model, x) = fixedModel()
        let slot = model.store.layout.slot(named: "encoder.mean.weight")!
        let w = model.store.value(slot), inputs = slot.shape[1]
        for unit in [0, 2, 3] { for j in 0..<inputs { w[unit * inputs + j] = 0 } }
        for j in 0..<inputs { w[1 * inputs + j] *= 20 }   // unit 1: strongly varying
        let estimate = try model.estimateLogLikelihood(x.matrix, samples: 2, seed: 1)
        _ = try model.encode(x.matrix)
        let means = model.encoder.means
        let naive: [Double] = (0..<4).map { u in
            let values = (0..<means.rows).map { Double(means[$0, u]) }
            let m = values.reduce(0, +) / Double(values.count)
            return values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(values.count)
        }
        assertClose(estimate.latentActivity, naive, rtol: 1e-6, atol: 1e-9)
        XCTAssertGreaterThan(naive[1], 1e-2)
        XCTAssertEqual(estimate.activeUnits, 1)
    }

    /// A NaN log weight makes the k-sample estimate of its example NaN, in
    /// whichever chunk it falls; it never comes out finite from the others.
    func testNaNInAnyChunkGivesNaN() throws {
        XCTAssertTrue(logAddExp(-Double.infinity, .nan).isNaN)
        XCTAssertTrue(logAddExp(Double.nan, 1).isNaN)
        XCTAssertTrue(logAddExp(Float(3), .nan).isNaN)
        let (model, x) = fixedModel()
        // A NaN pixel reaches the log likelihood of every draw of its example.
        x[5 * 20 + 3] = .nan
        let estimate = try model.estimateLogLikelihood(x.matrix.rows(0..<8), samples: 50, seed: 1, rowsPerPass: 40)
        XCTAssertTrue(estimate.logLikelihoods[5].isNaN)
        XCTAssertTrue(estimate.logLikelihoods.enumerated().filter { $0.offset != 5 }.allSatisfy { $0.element.isFinite })
        XCTAssertTrue(estimate.meanLogLikelihood.isNaN)
    }

    /// After a large evaluation the model gives its buffers back: a later
    /// small encode holds kilobytes, not what k = 5000 needed.
    func testBuffersShrinkAfterEvaluation() throws {
        let (model, x) = fixedModel()
        _ = try model.estimateLogLikelihood(x.matrix, samples: 5000, seed: 1, rowsPerPass: 40_000)
        XCTAssertLessThan(model.bufferBytes, 1 << 16)
        _ = try model.encode(x.matrix.rows(0..<200))
        XCTAssertLessThan(model.bufferBytes, 200 * 1024)
        try model.accumulateGradient(x.matrix.rows(0..<200), objective: Objective(.iwae, samplesPerExample: 5), using: Xoshiro256(seed: 1))
        XCTAssertGreaterThan(model.bufferBytes, 200 * 5 * 20 * 4)
    }
}
