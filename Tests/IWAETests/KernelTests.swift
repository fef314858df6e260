import RealModule
import IWAE
import XCTest

/// The vectorized Float kernels against Double libm, and the random numbers.
final class KernelTests: XCTestCase {
    /// Values spanning the ranges the engine feeds the kernels.
    var grid: [Float] {
        var xs = [Float]()
        var x: Float = -100
        while x <= 100 { xs.append(x); x += 0.0137 }
        xs += [0, -0, 1e-30, -1e-30, 1e-6, -1e-6, 0.6249, 0.6251, -0.625, 88, -87, 89, -89, 20, -20]
        return xs
    }

    /// Float kernel vs the Double reference: relative error within `ulps`
    /// Float ulps of the true value (absolute near zero results).
    func check(_ name: String, ulps: Double, domain: (Float) -> Bool = { _ in true },
               _ kernel: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void,
               _ reference: (Double) -> Double) {
        let xs = grid.filter(domain)
        var ys = [Float](repeating: 0, count: xs.count)
        kernel(xs, &ys, xs.count)
        for (x, y) in zip(xs, ys) {
            let expected = reference(Double(x))
            if abs(expected) > Double(Float.greatestFiniteMagnitude) {
                XCTAssertEqual(Double(y), expected > 0 ? .infinity : -.infinity, "\(name)(\(x))")
                continue
            }
            // Results below Float's normal range are flushed to zero by design
            // (an absolute error under 2⁻¹²⁶).
            if abs(expected) < Double(Float.leastNormalMagnitude) {
                XCTAssertLessThanOrEqual(abs(Double(y) - expected), Double(Float.leastNormalMagnitude), "\(name)(\(x))")
                continue
            }
            let scale = max(abs(expected), Double(Float.leastNormalMagnitude))
            let error = abs(Double(y) - expected) / (scale * Double(Float.ulpOfOne))
            if !(error <= ulps) {
                XCTFail("\(name)(\(x)) = \(y), expected \(expected): \(error) ulp")
                return
            }
        }
    }

    func testExp() { check("exp", ulps: 3, Float.exp, { Double.exp($0) }) }
    func testLog() { check("log", ulps: 3, domain: { $0 > 0 }, Float.log, { Double.log($0) }) }
    func testLog1p() { check("log1p", ulps: 3, domain: { $0 > -1 }, Float.log1p, { Double.log(onePlus: $0) }) }
    func testTanh() { check("tanh", ulps: 4, Float.tanh, { Double.tanh($0) }) }
    func testSigmoid() { check("sigmoid", ulps: 4, Float.sigmoid, { 1 / (1 + Double.exp(-$0)) }) }
    func testSoftplus() { check("softplus", ulps: 4, Float.softplus, { max($0, 0) + Double.log(onePlus: Double.exp(-abs($0))) }) }

    func testSpecialValues() {
        let xs: [Float] = [.infinity, -.infinity, .nan, 0]
        var y = [Float](repeating: 0, count: 4)
        Float.exp(xs, &y, count: 4)
        XCTAssertEqual(y[0], .infinity); XCTAssertEqual(y[1], 0); XCTAssertTrue(y[2].isNaN); XCTAssertEqual(y[3], 1)
        Float.log(xs, &y, count: 4)
        XCTAssertEqual(y[0], .infinity); XCTAssertTrue(y[1].isNaN); XCTAssertTrue(y[2].isNaN); XCTAssertEqual(y[3], -.infinity)
        Float.tanh(xs, &y, count: 4)
        XCTAssertEqual(y[0], 1); XCTAssertEqual(y[1], -1); XCTAssertTrue(y[2].isNaN); XCTAssertEqual(y[3], 0)
        Float.softplus(xs, &y, count: 4)
        XCTAssertEqual(y[0], .infinity); XCTAssertEqual(y[1], 0); XCTAssertTrue(y[2].isNaN)
        Float.sigmoid(xs, &y, count: 4)
        XCTAssertEqual(y[0], 1); XCTAssertEqual(y[1], 0); XCTAssertEqual(y[3], 0.5)
    }

    /// The fused Bernoulli pass (log p and the residual x − σ(ℓ)), and the
    /// pass without residuals, against a direct evaluation in Double: a
    /// short row, the data's 784, and rows long enough that the second
    /// pass's product of 1 + e^{−|ℓ|} per lane is logged and restarted
    /// (every 64 blocks of 16), with all-zero logits (every factor 2, the
    /// largest products) and with large ones.
    func testBernoulliLogLikelihood() {
        for (dim, scale) in [(37, 40.0), (784, 40.0), (2100, 40.0), (2100, 0.0), (1030, 1e-3)] {
            checkBernoulliLogLikelihood(dim: dim, logitRange: scale)
        }
    }

    private func checkBernoulliLogLikelihood(dim: Int, logitRange: Double, file: StaticString = #filePath, line: UInt = #line) {
        let rng = Xoshiro256(seed: 5)
        let rows = 6, repeatCount = 3
        let logits = (0..<rows * dim).map { _ in Float((rng.uniform(Double.self) - 0.5) * logitRange) }
        let targets = (0..<(rows / repeatCount) * dim).map { _ in Float(rng.next() % 2) }
        // The oracle: each row's log p in Double.
        let expected = (0..<rows).map { r in
            (0..<dim).reduce(0.0) { sum, d in
                let l = Double(logits[r * dim + d]), x = Double(targets[(r / repeatCount) * dim + d])
                return sum + x * l - (max(l, 0) + Double.log(onePlus: Double.exp(-abs(l))))
            }
        }
        /// The pass over `logits` with `bias`, with residuals (a training
        /// step's forward) or without (the evaluation's pass).
        func pass(_ logits: [Float], bias: [Float]?, residuals: Bool) -> (logp: [Float], residuals: [Float]) {
            var logp = [Float](repeating: 0, count: rows), residual = [Float](repeating: 0, count: residuals ? rows * dim : 0)
            logits.withUnsafeBufferPointer { l in targets.withUnsafeBufferPointer { t in (bias ?? []).withUnsafeBufferPointer { b in
                logp.withUnsafeMutableBufferPointer { p in residual.withUnsafeMutableBufferPointer { e in
                    Float.bernoulliLogLikelihood(logits: l.baseAddress!, bias: bias == nil ? nil : b.baseAddress, targets: t.baseAddress!,
                                                 rows: rows, dim: dim, repeat: repeatCount, logLikelihood: p.baseAddress!,
                                                 residuals: residuals ? e.baseAddress : nil)
                } }
            } } }
            return (logp, residual)
        }
        let fused = pass(logits, bias: nil, residuals: true), alone = pass(logits, bias: nil, residuals: false)
        for r in 0..<rows {
            for d in 0..<dim {
                let l = Double(logits[r * dim + d]), x = Double(targets[(r / repeatCount) * dim + d])
                assertClose(fused.residuals[r * dim + d], Float(x - 1 / (1 + Double.exp(-l))), rtol: 1e-6, atol: 1e-7, file: file, line: line)
            }
            // One log per lane for up to 64 blocks.
            assertClose(Double(alone.logp[r]), expected[r], rtol: 1e-6, atol: 2e-4,
                        "dim \(dim), logits ±\(logitRange / 2), row \(r)", file: file, line: line)
        }
        // The training step's pass computes log p by the same formula as the evaluation's.
        XCTAssertEqual(fused.logp, alone.logp, "dim \(dim)", file: file, line: line)
        // The bias folded in equals the bias added to the logits, in both passes.
        let bias = (0..<dim).map { _ in Float(rng.uniform(Double.self) * 4 - 2) }
        let shifted = (0..<rows * dim).map { logits[$0] + bias[$0 % dim] }
        for residuals in [true, false] {
            let folded = pass(logits, bias: bias, residuals: residuals), added = pass(shifted, bias: nil, residuals: residuals)
            XCTAssertEqual(folded.logp, added.logp, "residuals \(residuals)", file: file, line: line)
            XCTAssertEqual(folded.residuals, added.residuals, file: file, line: line)
        }
    }

    func testGeneratorIsReproducible() {
        let a = Xoshiro256(seed: 123), b = Xoshiro256(seed: 123), c = Xoshiro256(seed: 124)
        let xa = (0..<5).map { _ in a.next() }, xb = (0..<5).map { _ in b.next() }, xc = (0..<5).map { _ in c.next() }
        XCTAssertEqual(xa, xb)
        XCTAssertNotEqual(xa, xc)
        var n1 = [Float](repeating: 0, count: 101), n2 = [Float](repeating: 0, count: 101)
        Xoshiro256(seed: 9).fillStandardNormal(&n1, count: 101)
        Xoshiro256(seed: 9).fillStandardNormal(&n2, count: 101)
        XCTAssertEqual(n1, n2)
        // Restoring a saved state continues the same stream.
        let d = Xoshiro256(seed: 77)
        _ = d.next()
        let e = Xoshiro256(seed: 1)
        e.restore(state: d.state)
        XCTAssertEqual(d.next(), e.next())
    }

    /// Dynamic binarization against a naive loop over the generator's
    /// uniforms: value i is 1 exactly when the i-th uniform is below it, at
    /// widths below, at and past 16 values and an image's 784, into another
    /// buffer and in place, with intensities on the uniforms' own grid
    /// (u == p gives 0), 0, 1, NaN, and the generator left where the naive
    /// loop leaves it.
    func testBinarizationIsTheGeneratorsUniformsBelowEachIntensity() {
        for count in [1, 15, 16, 17, 64, 784, 1029] {
            let rng = Xoshiro256(seed: UInt64(count)), naive = Xoshiro256(seed: UInt64(count))
            let probe = Xoshiro256(seed: UInt64(count))
            let uniforms = (0..<count).map { _ in probe.uniform(Float.self) }
            var p = (0..<count).map { i -> Float in
                switch i % 5 {
                case 0: return uniforms[i]                          // u == p: 0
                case 1: return uniforms[i].nextUp                   // u < p: 1
                case 2: return Float((i * 37) % 101) / 100
                case 3: return i % 3 == 0 ? 0 : 1
                default: return i % 7 == 0 ? .nan : 0.5
                }
            }
            let expected = p.map { v -> Float in naive.uniform(Float.self) < v ? 1 : 0 }
            var out = [Float](repeating: -1, count: count)
            rng.binarize(p, into: &out, count: count)
            XCTAssertEqual(out, expected, "count \(count)")
            XCTAssertEqual(rng.next(), naive.next(), "count \(count): the generator advances by one word per value")
            let inPlace = Xoshiro256(seed: UInt64(count))
            p.withUnsafeMutableBufferPointer { inPlace.binarize($0.baseAddress!, into: $0.baseAddress!, count: count) }
            XCTAssertEqual(p, expected, "count \(count), in place")
        }
    }

    /// Normal fills have mean 0, variance 1, and normal tails (fixed seeds,
    /// tolerances of about 5 standard errors).
    func checkNormalMoments<S: BLASScalar>(_: S.Type) {
        let n = 400_001
        var values = [S](repeating: 0, count: n)
        Xoshiro256(seed: 2024).fillStandardNormal(&values, count: n)
        let mean = values.reduce(0.0) { $0 + Double($1) } / Double(n)
        let variance = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(n - 1)
        let beyondTwo = Double(values.filter { abs(Double($0)) > 2 }.count) / Double(n)
        XCTAssertEqual(mean, 0, accuracy: 5 / Double(n).squareRoot())
        XCTAssertEqual(variance, 1, accuracy: 5 * (2 / Double(n)).squareRoot())
        XCTAssertEqual(beyondTwo, 0.0455, accuracy: 5 * (0.0455 * 0.9545 / Double(n)).squareRoot())
        // Uniform fill: mean 1/2.
        let rng = Xoshiro256(seed: 1)
        let u = (0..<n).map { _ in rng.uniform(S.self) }
        XCTAssertTrue(u.allSatisfy { $0 >= 0 && $0 < 1 })
        XCTAssertEqual(u.reduce(0.0) { $0 + Double($1) } / Double(n), 0.5, accuracy: 5 * (1.0 / 12 / Double(n)).squareRoot())
    }

    func testNormalMomentsFloat() { checkNormalMoments(Float.self) }
    func testNormalMomentsDouble() { checkNormalMoments(Double.self) }
}
