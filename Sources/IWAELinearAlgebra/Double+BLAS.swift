import RealModule
import CBLAS
import CIWAEKernels

extension Double: BLASScalar {
    public static let routines = BLASRoutines<Double>(
        gemm: { backend, threads, transposeA, transposeB, m, n, kk, alpha, a, lda, b, ldb, beta, c, ldc in
            // Double has one backend: OpenBLAS.
            cblas_dgemm(CblasRowMajor, transposeA.cblas, transposeB.cblas, Int32(m), Int32(n), Int32(kk),
                        alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        },
        gemv: { transpose, m, n, alpha, a, lda, x, beta, y in
            cblas_dgemv(CblasRowMajor, transpose.cblas, Int32(m), Int32(n), alpha, a, Int32(lda), x, 1, beta, y, 1)
        },
        triangularSolve: { left, transposeA, m, n, alpha, a, lda, b, ldb in
            cblas_dtrsm(CblasRowMajor, left ? CblasLeft : CblasRight, CblasLower, transposeA.cblas, CblasNonUnit,
                        Int32(m), Int32(n), alpha, a, Int32(lda), b, Int32(ldb))
        },
        axpy: { count, alpha, x, y in cblas_daxpy(Int32(count), alpha, x, 1, y, 1) },
        choleskyLower: { n, a, lda in Int(LAPACKE_dpotrf(LAPACK_ROW_MAJOR, CChar(UInt8(ascii: "L")), Int32(n), a, Int32(lda))) },
        exp: { iwae_exp_f64($0, $1, $2) },
        log: { iwae_log_f64($0, $1, $2) },
        log1p: { iwae_log1p_f64($0, $1, $2) },
        tanh: { iwae_tanh_f64($0, $1, $2) },
        sigmoid: { iwae_sigmoid_f64($0, $1, $2) },
        softplus: { iwae_softplus_f64($0, $1, $2) },
        biasTanh: { precondition($4 == nil && $5 == nil, "bf16 operands are Float"); iwae_bias_tanh_f64($0, $1, $2, $3) },
        tanhBackward: { g, y, rows, columns, bits, floats, sums in
            precondition(bits == nil && floats == nil && sums == nil, "bf16 operands are Float")
            for i in 0..<rows * columns { g[i] *= 1 - y[i] * y[i] }
        },
        scaleRows: {
            precondition($4 == nil && $5 == nil && $6 == nil, "bf16 operands are Float")
            iwae_scale_rows_f64($0, $1, $2, $3)
        },
        rowSumsOfSquares: { iwae_row_sums_of_squares_f64($0, $1, $2, $3, $4) },
        bernoulliLogLikelihood: { iwae_bernoulli_loglik_f64($0, $1, $2, $3, $4, $5, $6, $7) },
        adamStep: { iwae_adam_f64($0, $1, $2, $3, $4, $5, $6, $7, $8) },
        adamStepSumming: { iwae_adam_sum_f64($0, $1, $2, $3, $4, $5, $6, $7, $8, $9) },
        fillStandardNormal: { out, count, generator in
            let pairs = (count + 1) / 2
            let bits = generator.scratchWords(count: 2 * pairs)
            let half = count / 2
            iwae_box_muller_f64(bits, out, half)
            if count % 2 == 1 {
                var tail: (Double, Double) = (0, 0)
                withUnsafeMutablePointer(to: &tail) {
                    $0.withMemoryRebound(to: Double.self, capacity: 2) { iwae_box_muller_f64(bits + 2 * half, $0, 1) }
                }
                out[count - 1] = tail.0
            }
        },
        roundToBFloat16: { x, rowStride, out, rows, columns in
            for r in 0..<rows {
                for c in 0..<columns { out[r * columns + c] = Double(roundedToBFloat16(Float(x[r * rowStride + c]))) }
            }
        }
    )
}
