import RealModule
import IWAE
import XCTest

/// BLAS paths against naive loops, for Float and Double.
final class LinearAlgebraTests: XCTestCase {
    func naiveProduct<S: BLASScalar>(_ a: [S], _ ar: Int, _ ac: Int, _ ta: Transpose,
                                     _ b: [S], _ br: Int, _ bc: Int, _ tb: Transpose) -> (values: [S], m: Int, n: Int) {
        let m = ta == .none ? ar : ac, kk = ta == .none ? ac : ar, n = tb == .none ? bc : br
        var c = [S](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n {
            var s = 0.0
            for l in 0..<kk {
                let x = ta == .none ? a[i * ac + l] : a[l * ac + i]
                let y = tb == .none ? b[l * bc + j] : b[j * bc + l]
                s += Double(x) * Double(y)
            }
            c[i * n + j] = S(s)
        } }
        return (c, m, n)
    }

    func checkGEMM<S: BLASScalar>(_: S.Type) {
        let rng = Xoshiro256(seed: 7)
        let tolerance = Double(S.ulpOfOne).squareRoot() * 4
        for (m, n, kk) in [(1, 1, 1), (3, 5, 7), (17, 9, 33), (64, 1, 5)] {
            for ta in [Transpose.none, .transposed] { for tb in [Transpose.none, .transposed] {
                let (ar, ac) = ta == .none ? (m, kk) : (kk, m)
                let (br, bc) = tb == .none ? (kk, n) : (n, kk)
                let a = (0..<ar * ac).map { _ in S(rng.uniform(Double.self) * 2 - 1) }
                let b = (0..<br * bc).map { _ in S(rng.uniform(Double.self) * 2 - 1) }
                let c0 = (0..<m * n).map { _ in S(rng.uniform(Double.self)) }
                let ta_ = Tensor<S>(shape: [ar, ac], values: a), tb_ = Tensor<S>(shape: [br, bc], values: b)
                let tc = Tensor<S>(shape: [m, n], values: c0)
                // C ← 0.5·op(A)op(B) + 2·C
                gemm(tc.matrix, ta_.matrix, ta, tb_.matrix, tb, alpha: 0.5, beta: 2)
                let p = naiveProduct(a, ar, ac, ta, b, br, bc, tb).values
                let expected = (0..<m * n).map { 0.5 * p[$0] + 2 * c0[$0] }
                assertClose(tc.array, expected, rtol: tolerance, atol: tolerance, "gemm \(m)×\(n)×\(kk) \(ta) \(tb) \(S.self)")
            } }
        }
    }

    func testGEMMMatchesNaiveLoopFloat() { checkGEMM(Float.self) }
    func testGEMMMatchesNaiveLoopDouble() { checkGEMM(Double.self) }

    func checkBatched<S: BLASScalar>(_: S.Type) {
        let rng = Xoshiro256(seed: 9)
        let batch = 4, m = 3, kk = 5, n = 2
        let a = (0..<batch * m * kk).map { _ in S(rng.uniform(Double.self) - 0.5) }
        let b = (0..<kk * n).map { _ in S(rng.uniform(Double.self) - 0.5) }   // broadcast (stride 0)
        let ta = Tensor<S>(shape: [batch, m, kk], values: a), tb = Tensor<S>(shape: [kk, n], values: b)
        let tc = Tensor<S>(shape: [batch, m, n])
        batchedGEMM(batch: batch, MatrixView(tc.pointer, rows: m, columns: n), strideC: m * n,
                    MatrixView(ta.pointer, rows: m, columns: kk), strideA: m * kk, .none,
                    tb.matrix, strideB: 0, .none)
        for i in 0..<batch {
            let expected = naiveProduct(Array(a[i * m * kk..<(i + 1) * m * kk]), m, kk, .none, b, kk, n, .none).values
            assertClose(Array(tc.array[i * m * n..<(i + 1) * m * n]), expected, rtol: 1e-5, atol: 1e-6, "batch \(i)")
        }
    }

    func testBatchedGEMMFloat() { checkBatched(Float.self) }
    func testBatchedGEMMDouble() { checkBatched(Double.self) }

    func testSumRowsAndGEMV() {
        let a = Tensor<Double>(shape: [3, 4], values: (0..<12).map(Double.init))
        let ones = Tensor<Double>(shape: [3])
        ones.fill(1)
        var result = [Double](repeating: 10, count: 4)
        sumRows(a.matrix, ones: ones.pointer, into: &result)
        XCTAssertEqual(result, [22.0, 25.0, 28.0, 31.0])
    }

    func checkCholesky<S: BLASScalar>(_: S.Type) {
        let rng = Xoshiro256(seed: 3)
        for n in [1, 2, 7, 50] {
            let batch = 3
            var matrices = [S]()
            var originals = [[Double]]()
            for _ in 0..<batch {
                // Σ = A Aᵀ + n·I is positive definite.
                let a = (0..<n * n).map { _ in rng.uniform(Double.self) - 0.5 }
                var sigma = [Double](repeating: 0, count: n * n)
                for i in 0..<n { for j in 0..<n {
                    var s = i == j ? Double(n) * 0.1 + 0.5 : 0
                    for l in 0..<n { s += a[i * n + l] * a[j * n + l] }
                    sigma[i * n + j] = s
                } }
                originals.append(sigma)
                matrices += sigma.map { S($0) }
            }
            let t = Tensor<S>(shape: [batch, n, n], values: matrices)
            XCTAssertNil(batchedCholesky(t.pointer, batch: batch, n: n))
            for bIndex in 0..<batch {
                // Naive Cholesky–Banachiewicz in Double.
                let sigma = originals[bIndex]
                var l = [Double](repeating: 0, count: n * n)
                for i in 0..<n { for j in 0...i {
                    var s = sigma[i * n + j]
                    for p in 0..<j { s -= l[i * n + p] * l[j * n + p] }
                    l[i * n + j] = i == j ? s.squareRoot() : s / l[j * n + j]
                } }
                let lower = (0..<n * n).map { idx -> S in idx % n <= idx / n ? t[bIndex * n * n + idx] : 0 }
                assertClose(lower, l.map { S($0) }, rtol: Double(S.ulpOfOne).squareRoot() * 10, atol: Double(S.ulpOfOne).squareRoot(), "n=\(n)")
            }
        }
        // Not positive definite: the failing matrix and minor are reported.
        let bad = Tensor<S>(shape: [2, 2, 2], values: [1, 0, 0, 1, 1, 2, 2, 1])
        let failure = batchedCholesky(bad.pointer, batch: 2, n: 2)
        XCTAssertEqual(failure?.index, 1)
        XCTAssertEqual(failure?.info, 2)
    }

    func testBatchedCholeskyFloat() { checkCholesky(Float.self) }
    func testBatchedCholeskyDouble() { checkCholesky(Double.self) }

    func testLogSumExpIsStableForHugeAndInfiniteEntries() {
        var huge: [Float] = [1e38, 1e38, 0]
        XCTAssertEqual(logSumExp(&huge, count: 3), 1e38)
        var big: [Double] = [1000, 1000]
        assertClose(logSumExp(&big, count: 2), 1000 + Double.log(2), rtol: 1e-15)
        var mixed: [Double] = [-.infinity, 0, -.infinity]
        XCTAssertEqual(logSumExp(&mixed, count: 3), 0)
        var allMinus: [Double] = [-.infinity, -.infinity]
        XCTAssertEqual(logSumExp(&allMinus, count: 2), -.infinity)
        var plus: [Double] = [.infinity, 3]
        XCTAssertEqual(logSumExp(&plus, count: 2), .infinity)
        var withNaN: [Double] = [1, .nan]
        XCTAssertTrue(logSumExp(&withNaN, count: 2).isNaN)
        var small: [Float] = [-1e30, -1e30 + 1e24]
        XCTAssertTrue(logSumExp(&small, count: 2).isFinite)
        // Against the direct formula where it does not overflow.
        var values: [Double] = [0.3, -2, 1.7, 0]
        assertClose(logSumExp(&values, count: 4), Double.log(values.map { Double.exp($0) }.reduce(0, +)), rtol: 1e-15)
        XCTAssertEqual(logAddExp(-Double.infinity, -.infinity), -.infinity)
        assertClose(logAddExp(2.0, 3.0), Double.log(Double.exp(2) + Double.exp(3)), rtol: 1e-15)
    }

    func testSoftmaxRowsOfInfiniteLogWeights() {
        let x = Tensor<Double>(shape: [2, 3], values: [-.infinity, -.infinity, -.infinity, 0, -.infinity, 0])
        let y = Tensor<Double>(shape: [2, 3])
        softmaxRows(x.matrix, into: y.matrix)
        assertClose(y.array, [1.0 / 3, 1.0 / 3, 1.0 / 3, 0.5, 0, 0.5], rtol: 1e-15)
    }
}
