import RealModule
import IWAE
import XCTest

/// The row passes against plain loops: the scaling of rows, rows' sums of
/// squares, bias-and-tanh and its backward, and their bf16 rounding.
extension KernelTests {
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
}
