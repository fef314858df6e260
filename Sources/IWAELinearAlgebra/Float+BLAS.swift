import RealModule
import CBLAS
import CIWAEKernels
import CDNNL

extension Float: BLASScalar {
    public static let routines = BLASRoutines<Float>(
        gemm: { backend, threads, transposeA, transposeB, m, n, kk, alpha, a, lda, b, ldb, beta, c, ldc in
            switch backend {
            case .onednn:
                // A shape oneDNN's matmul refuses is computed by OpenBLAS: the same product, its own rounding.
                if iwae_dnnl_sgemm(Int32(threads), transposeA.letter, transposeB.letter, m, n, kk, alpha, a, lda, b, ldb, beta, c, ldc)
                    == dnnl_success { return }
                fallthrough
            case .openblas:
                cblas_sgemm(CblasRowMajor, transposeA.cblas, transposeB.cblas, Int32(m), Int32(n), Int32(kk),
                            alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
            }
        },
        gemv: { transpose, m, n, alpha, a, lda, x, beta, y in
            cblas_sgemv(CblasRowMajor, transpose.cblas, Int32(m), Int32(n), alpha, a, Int32(lda), x, 1, beta, y, 1)
        },
        triangularSolve: { left, transposeA, m, n, alpha, a, lda, b, ldb in
            cblas_strsm(CblasRowMajor, left ? CblasLeft : CblasRight, CblasLower, transposeA.cblas, CblasNonUnit,
                        Int32(m), Int32(n), alpha, a, Int32(lda), b, Int32(ldb))
        },
        axpy: { count, alpha, x, y in cblas_saxpy(Int32(count), alpha, x, 1, y, 1) },
        choleskyLower: { n, a, lda in Int(LAPACKE_spotrf(LAPACK_ROW_MAJOR, CChar(UInt8(ascii: "L")), Int32(n), a, Int32(lda))) },
        exp: { iwae_exp_f32($0, $1, $2) },
        log: { iwae_log_f32($0, $1, $2) },
        log1p: { iwae_log1p_f32($0, $1, $2) },
        tanh: { iwae_tanh_f32($0, $1, $2) },
        sigmoid: { iwae_sigmoid_f32($0, $1, $2) },
        softplus: { iwae_softplus_f32($0, $1, $2) },
        biasTanh: { iwae_bias_tanh_f32($0, $1, $2, $3, $4, $5) },
        tanhBackward: { iwae_tanh_backward_f32($0, $1, $2, $3, $4, $5, $6) },
        scaleRows: { iwae_scale_rows_f32($0, $1, $2, $3, $4, $5, $6) },
        rowSumsOfSquares: { iwae_row_sums_of_squares_f32($0, $1, $2, $3, $4) },
        bernoulliLogLikelihood: { iwae_bernoulli_loglik_f32($0, $1, $2, $3, $4, $5, $6, $7) },
        adamStep: { iwae_adam_f32($0, $1, $2, $3, $4, $5, $6, $7, $8) },
        adamStepSumming: { iwae_adam_sum_f32($0, $1, $2, $3, $4, $5, $6, $7, $8, $9, nil, nil) },
        fillStandardNormal: { out, count, generator in
            let pairs = (count + 1) / 2
            let words = generator.scratchWords(count: pairs)   // 2·pairs UInt32 in pairs UInt64
            let bits = UnsafeRawPointer(words).assumingMemoryBound(to: UInt32.self)
            let half = count / 2
            iwae_box_muller_f32(bits, out, half)
            if count % 2 == 1 {
                var tail: (Float, Float) = (0, 0)
                withUnsafeMutablePointer(to: &tail) {
                    $0.withMemoryRebound(to: Float.self, capacity: 2) { iwae_box_muller_f32(bits + 2 * half, $0, 1) }
                }
                out[count - 1] = tail.0
            }
        },
        roundToBFloat16: { iwae_round_bf16_f32($0, $1, $2, $3, $4) }
    )
}

extension Transpose {
    var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
    /// oneDNN's and LAPACK's letter: N or T.
    var letter: CChar { CChar(UInt8(ascii: self == .none ? "N" : "T")) }
}
