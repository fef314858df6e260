import CBLAS

/// The principal components of a data set: the eigendecomposition of its
/// covariance, in Double.
///
/// For rows x_1 … x_N of a data matrix X (N, D):
///
///     x̄ = (1/N) Σ_n x_n
///     C = (1/N) Σ_n (x_n − x̄)(x_n − x̄)ᵀ  [+ diag((1/N) Σ_n x_n ⊙ (1 − x_n))]
///     C u_i = λ_i u_i,   λ_1 ≥ λ_2 ≥ … ≥ λ_D,   ‖u_i‖ = 1
///
/// The bracketed diagonal is there with `binarized`: it makes C the
/// covariance of images binarized as in training (pixel d is 1 with
/// probability x_d), since Var(x̃_d) = Var(x_d) + E[x_d (1 − x_d)] and
/// distinct pixels are drawn independently. The covariance is accumulated as
/// Xᵀ X by GEMM over chunks of centered rows, then factored by LAPACK's
/// `dsyevd` (memory: a few D × D matrices of Double); the sign of each u_i is LAPACK's. Both run in one BLAS thread
/// (OpenBLAS's result changes in the last bits with its thread count), so
/// the same data give the same bits on any number of cores.
package struct PrincipalComponents: Sendable {
    /// D.
    package let dimension: Int
    /// x̄ (D).
    package let mean: [Double]
    /// λ_1 ≥ … ≥ λ_D (D).
    package let variances: [Double]
    /// u_1 … u_D as the rows of a (D, D) row-major matrix.
    package let directions: [Double]

    /// The components of the `count` rows of `rows` (count, dimension), or nil
    /// when LAPACK does not converge (never seen for finite data) or `count` is 0.
    package init?(rows: UnsafeBufferPointer<Float>, count: Int, dimension d: Int, binarized: Bool) {
        precondition(rows.count == count * d && d > 0)
        self.init(count: count, dimension: d, binarized: binarized) { range, out in
            out.update(from: rows.baseAddress! + range.lowerBound * d, count: range.count * d)
        }
    }

    /// The components of `count` rows that `rows(range, out)` writes, a
    /// chunk of at most 1,024 rows at a time (twice over): rows that are
    /// never all in memory at once.
    package init?(count: Int, dimension d: Int, binarized: Bool, rows: (Range<Int>, UnsafeMutablePointer<Float>) -> Void) {
        precondition(d > 0)
        guard count > 0 else { return nil }
        let chunkRows = Swift.min(count, 1024)
        let floats = UnsafeMutablePointer<Float>.allocate(capacity: chunkRows * d)
        defer { floats.deallocate() }
        let blasThreads = BLASLibrary.threads
        BLASLibrary.threads = 1
        defer { BLASLibrary.threads = blasThreads }
        dimension = d
        var mean = [Double](repeating: 0, count: d)
        var bernoulli = [Double](repeating: 0, count: d)
        var first = 0
        while first < count {
            let rowsHere = Swift.min(chunkRows, count - first)
            rows(first..<first + rowsHere, floats)
            for n in 0..<rowsHere {
                for j in 0..<d {
                    let x = Double(floats[n * d + j])
                    mean[j] += x
                    bernoulli[j] += x * (1 - x)
                }
            }
            first += rowsHere
        }
        for j in 0..<d { mean[j] /= Double(count); bernoulli[j] /= Double(count) }
        self.mean = mean

        // C ← (1/N) Σ_n (x_n − x̄)(x_n − x̄)ᵀ, 1,024 centered rows at a time.
        let covariance = Tensor<Double>(shape: [d, d])
        let chunk = Tensor<Double>(shape: [chunkRows, d])
        var start = 0
        while start < count {
            let rowsHere = Swift.min(chunkRows, count - start)
            rows(start..<start + rowsHere, floats)
            for r in 0..<rowsHere {
                for j in 0..<d { chunk.pointer[r * d + j] = Double(floats[r * d + j]) - mean[j] }
            }
            let centered = MatrixView(chunk.pointer, rows: rowsHere, columns: d)
            gemm(covariance.matrix, centered, .transposed, centered, .none, alpha: 1 / Double(count), beta: 1)
            start += rowsHere
        }
        if binarized { for j in 0..<d { covariance.pointer[j * d + j] += bernoulli[j] } }

        // dsyevd: ascending eigenvalues, eigenvector i in column i.
        var ascending = [Double](repeating: 0, count: d)
        let info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, CChar(UInt8(ascii: "V")), CChar(UInt8(ascii: "U")), Int32(d),
                                  covariance.pointer, Int32(d), &ascending)
        guard info == 0 else { return nil }
        variances = ascending.reversed()
        var directions = [Double](repeating: 0, count: d * d)
        for i in 0..<d {
            let column = d - 1 - i
            for j in 0..<d { directions[i * d + j] = covariance.pointer[j * d + column] }
        }
        self.directions = directions
    }

    /// u_i (0-based: `direction(0)` is the direction of largest variance).
    package func direction(_ i: Int) -> [Double] { Array(directions[(i * dimension)..<((i + 1) * dimension)]) }
}
