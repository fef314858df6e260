import RealModule
import CDNNL
import CIWAEKernels
/// Matrix products on `MatrixView`s, checked for shape and forwarded to BLAS.

/// General matrix product, the workhorse of every layer.
///
///     C ← α · op(A) · op(B) + β · C
///
/// `op(A)` is (m, kk), `op(B)` is (kk, n), `C` is (m, n); `β = 1` accumulates.
/// `kernel` computes it (oneDNN with as many threads as OpenBLAS is set to
/// use). A bf16 kernel rounds A and B to bfloat16 first (into `workspace`,
/// or a temporary one; not an operand whose `roundedA` or `roundedB` holds
/// it rounded already, in the form the kernel reads) and accumulates in fp32:
///
///     C ← α · op(bf16(A)) · op(bf16(B)) + β · C
@inlinable
package func gemm<Scalar: BLASScalar>(
    _ c: MatrixView<Scalar>,
    _ a: MatrixView<Scalar>, _ transposeA: Transpose = .none,
    _ b: MatrixView<Scalar>, _ transposeB: Transpose = .none,
    alpha: Scalar = 1, beta: Scalar = 0, kernel: ProductKernel = .openblas, workspace: ProductWorkspace<Scalar>? = nil,
    roundedA: RoundedOperand? = nil, roundedB: RoundedOperand? = nil
) {
    let m = transposeA == .none ? a.rows : a.columns
    let kk = transposeA == .none ? a.columns : a.rows
    let kb = transposeB == .none ? b.rows : b.columns
    let n = transposeB == .none ? b.columns : b.rows
    precondition(kk == kb && c.rows == m && c.columns == n,
                 "gemm shapes: op(A) \(m)×\(kk), op(B) \(kb)×\(n), C \(c.rows)×\(c.columns)")
    if m == 0 || n == 0 { return }
    if kk == 0 {
        // BLAS leaves C untouched for kk = 0 only when β = 1; scale explicitly.
        for i in 0..<m { for j in 0..<n { c[i, j] = beta == 0 ? 0 : beta * c[i, j] } }
        return
    }
    if kernel.precision == .bf16 {
        gemmWithBFloat16Inputs(c, a, transposeA, b, transposeB, alpha: alpha, beta: beta, kernel: kernel,
                               workspace: workspace ?? ProductWorkspace(), rounded: (roundedA, roundedB))
        return
    }
    let start = ProductTiming.begin(Scalar.self)
    defer {
        ProductTiming.end(since: start, m: m, n: n, kk: kk, transposeA: transposeA, transposeB: transposeB, accumulates: beta != 0,
                          kernel: kernel)
    }
    if kernel.library == .openblas {
        Scalar.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, kk: kk,
                    alpha: alpha, a: a.pointer, lda: max(a.rowStride, 1),
                    b: b.pointer, ldb: max(b.rowStride, 1),
                    beta: beta, c: c.pointer, ldc: max(c.rowStride, 1))
    } else {
        Scalar.gemm(backend: kernel.library, threads: BLASLibrary.threads, transposeA: transposeA, transposeB: transposeB,
                    m: m, n: n, kk: kk, alpha: alpha, a: a.pointer, lda: max(a.rowStride, 1),
                    b: b.pointer, ldb: max(b.rowStride, 1), beta: beta, c: c.pointer, ldc: max(c.rowStride, 1))
    }
}

/// `gemm` by a bf16 kernel: oneDNN's bf16 matmul on bfloat16 bit patterns
/// (`onednnBF16`, Float with α = 1), else the emulation, the rounded values
/// in fp32 and then the fp32 product of the kernel's library.
@usableFromInline
package func gemmWithBFloat16Inputs<Scalar: BLASScalar>(
    _ c: MatrixView<Scalar>, _ a: MatrixView<Scalar>, _ transposeA: Transpose, _ b: MatrixView<Scalar>, _ transposeB: Transpose,
    alpha: Scalar, beta: Scalar, kernel: ProductKernel, workspace: ProductWorkspace<Scalar>,
    rounded given: (a: RoundedOperand?, b: RoundedOperand?)
) {
    precondition((given.a == nil && given.b == nil) || Scalar.self == Float.self, "a rounded operand is a Float matrix")
    let (roundedA, roundedB) = workspace.buffers(a.count, b.count)
    /// The bit patterns of `x`: given, or rounded into the first half of `buffer`.
    func bits(_ x: MatrixView<Scalar>, _ given: RoundedOperand?, _ buffer: UnsafeMutablePointer<Scalar>) -> UnsafePointer<UInt16> {
        if let bits = given?.bits { return bits }
        let out = UnsafeMutableRawPointer(buffer).assumingMemoryBound(to: UInt16.self)
        iwae_to_bf16(UnsafeRawPointer(x.pointer).assumingMemoryBound(to: Float.self), x.rowStride, out, x.rows, x.columns)
        return UnsafePointer(out)
    }
    /// `x` rounded in fp32: given, or rounded into `buffer`.
    func floats(_ x: MatrixView<Scalar>, _ given: RoundedOperand?, _ buffer: UnsafeMutablePointer<Scalar>) -> MatrixView<Scalar> {
        given?.floats.map {
            MatrixView(UnsafeMutablePointer(mutating: UnsafeRawPointer($0).assumingMemoryBound(to: Scalar.self)), rows: x.rows, columns: x.columns)
        } ?? roundToBFloat16(x, into: buffer)
    }
    if kernel == .onednnBF16, Scalar.self == Float.self, alpha == 1 {
        let bitsA = bits(a, given.a, roundedA), bitsB = bits(b, given.b, roundedB)
        let m = transposeA == .none ? a.rows : a.columns, kk = transposeA == .none ? a.columns : a.rows
        let n = transposeB == .none ? b.columns : b.rows
        let start = ProductTiming.begin(Scalar.self)
        let status = iwae_dnnl_bf16_gemm(Int32(BLASLibrary.threads), transposeA.letter, transposeB.letter, m, n, kk,
                                         bitsA, Swift.max(a.columns, 1), bitsB, Swift.max(b.columns, 1), Float(beta),
                                         UnsafeMutableRawPointer(c.pointer).assumingMemoryBound(to: Float.self), Swift.max(c.rowStride, 1))
        if status == dnnl_success {
            ProductTiming.end(since: start, m: m, n: n, kk: kk, transposeA: transposeA, transposeB: transposeB, accumulates: beta != 0,
                              kernel: kernel)
            return
        }
        // A shape oneDNN refuses (it passed the check on others): the emulation computes the same numbers.
    }
    gemm(c, floats(a, given.a, roundedA), transposeA, floats(b, given.b, roundedB), transposeB,
         alpha: alpha, beta: beta, kernel: ProductKernel(kernel.library, .fp32))
}

/// Batched matrix product over a leading batch dimension:
///
///     C[i] ← α · op(A[i]) · op(B[i]) + β · C[i],   i = 0..<batch
///
/// Each operand is `batch` equally shaped matrices laid out `stride` elements
/// apart (stride 0 broadcasts one matrix to every product).
@inlinable
package func batchedGEMM<Scalar: BLASScalar>(
    batch: Int,
    _ c: MatrixView<Scalar>, strideC: Int,
    _ a: MatrixView<Scalar>, strideA: Int, _ transposeA: Transpose = .none,
    _ b: MatrixView<Scalar>, strideB: Int, _ transposeB: Transpose = .none,
    alpha: Scalar = 1, beta: Scalar = 0
) {
    for i in 0..<batch {
        gemm(MatrixView(c.pointer + i * strideC, rows: c.rows, columns: c.columns, rowStride: c.rowStride),
             MatrixView(a.pointer + i * strideA, rows: a.rows, columns: a.columns, rowStride: a.rowStride), transposeA,
             MatrixView(b.pointer + i * strideB, rows: b.rows, columns: b.columns, rowStride: b.rowStride), transposeB,
             alpha: alpha, beta: beta)
    }
}

/// Sums the rows of `a` (rows, columns) into `result` (columns):
/// `result ← β·result + Σ_r a[r, :]`, by one BLAS `gemv` with a ones vector
/// that the caller owns (length ≥ rows).
@inlinable
package func sumRows<Scalar: BLASScalar>(
    _ a: MatrixView<Scalar>, ones: UnsafePointer<Scalar>, into result: UnsafeMutablePointer<Scalar>, beta: Scalar = 1
) {
    if a.rows == 0 || a.columns == 0 { return }
    Scalar.gemv(transpose: .transposed, m: a.rows, n: a.columns, alpha: 1, a: a.pointer, lda: a.rowStride,
                x: ones, beta: beta, y: result)
}

/// Batched in-place Cholesky factorization `Σᵢ = Lᵢ Lᵢᵀ` of `batch` row-major
/// (n, n) matrices stored `n·n` apart; only the lower triangles are written.
///
/// Returns nil on success, or the first failing matrix index and LAPACK's
/// `info` (the order of the leading minor that is not positive definite).
@inlinable
package func batchedCholesky<Scalar: BLASScalar>(
    _ matrices: UnsafeMutablePointer<Scalar>, batch: Int, n: Int
) -> (index: Int, info: Int)? {
    for i in 0..<batch {
        let info = Scalar.choleskyLower(n: n, a: matrices + i * n * n, lda: n)
        if info != 0 { return (i, info) }
    }
    return nil
}

/// Backward through one Cholesky factorization `Σ = L Lᵀ` (Murray 2016,
/// "Differentiation of the Cholesky decomposition"), Mathematics §4:
///
///     P  = Φ(Lᵀ L̄)            Φ: lower triangle, diagonal halved
///     Σ̄  = sym(L⁻ᵀ P L⁻¹)     sym(X) = ½(X + Xᵀ)
///
/// by one product and two triangular solves, never an explicit inverse.
/// `factor` is L (n, n, lower triangle read), `factorGradient` is L̄ (lower
/// triangle read), `result` receives Σ̄ (n, n, symmetric); `work` holds n·n.
@inlinable
package func choleskyBackward<Scalar: BLASScalar>(
    factor: UnsafePointer<Scalar>, factorGradient: UnsafePointer<Scalar>, n: Int,
    into result: UnsafeMutablePointer<Scalar>, work: UnsafeMutablePointer<Scalar>
) {
    // work ← Lᵀ · lower(L̄)   (L's upper triangle must be zero)
    for i in 0..<n { for j in 0..<n { result[i * n + j] = j <= i ? factorGradient[i * n + j] : 0 } }
    Scalar.gemm(transposeA: .transposed, transposeB: .none, m: n, n: n, kk: n, alpha: 1, a: factor, lda: n,
                b: result, ldb: n, beta: 0, c: work, ldc: n)
    // P = Φ(work)
    for i in 0..<n {
        for j in (i + 1)..<Swift.max(i + 1, n) { work[i * n + j] = 0 }
        work[i * n + i] *= 0.5
    }
    // work ← L⁻ᵀ P, then work ← work · L⁻¹
    Scalar.triangularSolve(left: true, transposeA: .transposed, m: n, n: n, alpha: 1, a: factor, lda: n, b: work, ldb: n)
    Scalar.triangularSolve(left: false, transposeA: .none, m: n, n: n, alpha: 1, a: factor, lda: n, b: work, ldb: n)
    for i in 0..<n { for j in 0..<n { result[i * n + j] = 0.5 * (work[i * n + j] + work[j * n + i]) } }
}
