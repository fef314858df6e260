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

    /// Row scaling against a naive loop (the same single product, so equal bits), Float and Double.
    func testScaleRows() {
        let rng = Xoshiro256(seed: 9)
        let rows = 7, columns = 45
        let y = (0..<rows * columns).map { _ in rng.uniform(Double.self) * 4 - 2 }
        let scale = (0..<rows).map { _ in rng.uniform(Double.self) * 3 - 1 }
        var yd = y
        Double.scaleRows(&yd, by: scale, rows: rows, columns: columns)
        var yf = y.map(Float.init)
        Float.scaleRows(&yf, by: scale.map(Float.init), rows: rows, columns: columns)
        for r in 0..<rows {
            for c in 0..<columns {
                XCTAssertEqual(yd[r * columns + c], scale[r] * y[r * columns + c])
                XCTAssertEqual(yf[r * columns + c], Float(scale[r]) * Float(y[r * columns + c]))
            }
        }
    }

    /// Rows' sums of squares against the plain loop (column 0 up, each square
    /// rounded before it is added: equal bits), Float and Double, on rows
    /// read with a stride past their width, in blocks of sixteen and a tail;
    /// the values span six decades, so another order of the sum gives other
    /// bits (checked: summed from the last column down, some rows differ).
    func testRowSumsOfSquares() {
        func check<Scalar: BLASScalar>(_: Scalar.Type, file: StaticString = #filePath, line: UInt = #line) {
            let rng = Xoshiro256(seed: 14)
            let rows = 37, columns = 50, stride = 53
            var x = (0..<rows * stride).map { _ in
                Scalar((rng.uniform(Double.self) < 0.5 ? -1 : 1) * Double.pow(10, rng.uniform(Double.self) * 6 - 3))
            }
            var sums = [Scalar](repeating: .nan, count: rows)
            x.withUnsafeMutableBufferPointer {
                Scalar.rowSumsOfSquares(MatrixView($0.baseAddress!, rows: rows, columns: columns, rowStride: stride), into: &sums)
            }
            var reordered = 0
            for r in 0..<rows {
                var forward: Scalar = 0, backward: Scalar = 0
                for c in 0..<columns { let v = x[r * stride + c]; let square = v * v; forward = forward + square }
                for c in (0..<columns).reversed() { let v = x[r * stride + c]; let square = v * v; backward = backward + square }
                XCTAssertEqual(sums[r], forward, "row \(r)", file: file, line: line)
                if backward != forward { reordered += 1 }
            }
            XCTAssertGreaterThan(reordered, 0, "the data cannot tell the order of the sum", file: file, line: line)
        }
        check(Float.self)
        check(Double.self)
    }

    func testBiasTanh() {
        let rng = Xoshiro256(seed: 8)
        let rows = 5, columns = 33
        var y = (0..<rows * columns).map { _ in Float(rng.uniform(Double.self) * 6 - 3) }
        let bias = (0..<columns).map { _ in Float(rng.uniform(Double.self) - 0.5) }
        let expected = (0..<rows * columns).map { Float(Double.tanh(Double(y[$0] + bias[$0 % columns]))) }
        Float.biasTanh(&y, bias: bias, rows: rows, columns: columns)
        assertClose(y, expected, rtol: 5e-7, atol: 1e-7)
    }

    /// tanh's backward, g · (1 − y²), against the same line in Swift (each
    /// operation rounded on its own: equal bits), Float and Double.
    func testTanhBackward() {
        let rng = Xoshiro256(seed: 10)
        let rows = 6, columns = 37
        let y = (0..<rows * columns).map { _ in rng.uniform(Double.self) * 2 - 1 }
        let g = (0..<rows * columns).map { _ in rng.uniform(Double.self) * 4 - 2 }
        var gd = g
        Double.tanhBackward(&gd, output: y, rows: rows, columns: columns)
        var gf = g.map(Float.init)
        Float.tanhBackward(&gf, output: y.map(Float.init), rows: rows, columns: columns)
        for i in 0..<rows * columns {
            XCTAssertEqual(gd[i], g[i] * (1 - y[i] * y[i]))
            let (gi, yi) = (Float(g[i]), Float(y[i]))
            let square = yi * yi, complement = 1 - square
            XCTAssertEqual(gf[i].bitPattern, (gi * complement).bitPattern, "at \(i)")
        }
    }

    /// The passes that make a bf16 product's operand write it rounded in
    /// both forms, equal to rounding their result afterwards, and their
    /// fp32 result is the one they write without rounding; the gradient
    /// passes round in place too, having added the result's column sums
    /// (a naive row-by-row sum in Float gives their bits).
    func testPassesWriteTheirResultRoundedToBFloat16() {
        let rng = Xoshiro256(seed: 12)
        let rows = 9, columns = 53
        let start = (0..<rows * columns).map { _ in rng.uniform(Float.self) * 6 - 3 }
        let other = (0..<rows * columns).map { _ in rng.uniform(Float.self) * 2 - 1 }
        let bias = (0..<columns).map { _ in rng.uniform(Float.self) - 0.5 }
        let scale = (0..<rows).map { _ in rng.uniform(Float.self) * 3 - 1 }
        let passes: [(String, (UnsafeMutablePointer<Float>, RoundedDestination?) -> Void)] = [
            ("biasTanh", { Float.biasTanh($0, bias: bias, rows: rows, columns: columns, rounded: $1) }),
            ("tanhBackward", { Float.tanhBackward($0, output: other, rows: rows, columns: columns, rounded: $1) }),
            ("scaleRows", { Float.scaleRows($0, by: scale, rows: rows, columns: columns, rounded: $1) }),
        ]
        for (name, pass) in passes {
            var plain = start
            plain.withUnsafeMutableBufferPointer { pass($0.baseAddress!, nil) }
            for forms in [RoundedForms.bits, .floats, [.bits, .floats]] {
                var fused = start
                var bits = [UInt16](repeating: 0, count: rows * columns), floats = [Float](repeating: 0, count: rows * columns)
                fused.withUnsafeMutableBufferPointer { y in
                    bits.withUnsafeMutableBufferPointer { b in
                        floats.withUnsafeMutableBufferPointer { f in
                            pass(y.baseAddress!, RoundedDestination(bits: forms.contains(.bits) ? b.baseAddress : nil,
                                                                    floats: forms.contains(.floats) ? f.baseAddress : nil))
                        }
                    }
                }
                let what = "\(name), forms \(forms.rawValue)"
                XCTAssertEqual(fused.map(\.bitPattern), plain.map(\.bitPattern), what)
                if forms.contains(.floats) {
                    XCTAssertEqual(floats.map(\.bitPattern), plain.map { roundedToBFloat16($0).bitPattern }, what)
                    XCTAssertTrue(zip(floats, plain).contains { $0 != $1 }, "\(what): rounded")
                }
                if forms.contains(.bits) { XCTAssertEqual(bits, plain.map { UInt16(roundedToBFloat16($0).bitPattern >> 16) }, what) }
            }
            // Rounded in place, no column sums (a forward no backward follows).
            var inPlace = start
            inPlace.withUnsafeMutableBufferPointer { pass($0.baseAddress!, RoundedDestination(bits: nil, floats: $0.baseAddress)) }
            XCTAssertEqual(inPlace.map(\.bitPattern), plain.map { roundedToBFloat16($0).bitPattern }, "\(name) in place")
        }
        let gradientPasses: [(String, (UnsafeMutablePointer<Float>, RoundedDestination?, UnsafeMutablePointer<Float>?) -> Void)] = [
            ("tanhBackward", { Float.tanhBackward($0, output: other, rows: rows, columns: columns, rounded: $1, columnSums: $2) }),
            ("scaleRows", { Float.scaleRows($0, by: scale, rows: rows, columns: columns, rounded: $1, columnSums: $2) }),
        ]
        for (name, pass) in gradientPasses {
            var plain = start
            plain.withUnsafeMutableBufferPointer { pass($0.baseAddress!, nil, nil) }
            var expectedSums = bias
            for r in 0..<rows { for c in 0..<columns { expectedSums[c] += plain[r * columns + c] } }
            for withBits in [false, true] {   // the emulation's sweep, and the general one
                var inPlace = start, sums = bias, bits = [UInt16](repeating: 0, count: rows * columns)
                inPlace.withUnsafeMutableBufferPointer { y in
                    sums.withUnsafeMutableBufferPointer { s in
                        bits.withUnsafeMutableBufferPointer { b in
                            pass(y.baseAddress!, RoundedDestination(bits: withBits ? b.baseAddress : nil, floats: y.baseAddress), s.baseAddress)
                        }
                    }
                }
                let what = "\(name) in place, bits \(withBits)"
                XCTAssertEqual(inPlace.map(\.bitPattern), plain.map { roundedToBFloat16($0).bitPattern }, what)
                XCTAssertEqual(sums.map(\.bitPattern), expectedSums.map(\.bitPattern), "\(what): column sums")
                if withBits { XCTAssertEqual(bits, plain.map { UInt16(roundedToBFloat16($0).bitPattern >> 16) }, what) }
            }
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
