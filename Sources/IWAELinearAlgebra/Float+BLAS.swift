import RealModule
import CBLAS
import CIWAEKernels
import CDNNL

extension Float: BLASScalar {
    public static func gemm(
        transposeA: Transpose, transposeB: Transpose, m: Int, n: Int, kk: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        cblas_sgemm(CblasRowMajor, transposeA.cblas, transposeB.cblas, Int32(m), Int32(n), Int32(kk),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    public static func gemm(
        backend: GEMMBackend, threads: Int, transposeA: Transpose, transposeB: Transpose, m: Int, n: Int, kk: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        switch backend {
        case .openblas:
            gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, kk: kk, alpha: alpha, a: a, lda: lda,
                 b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        case .onednn:
            let status = iwae_dnnl_sgemm(Int32(threads), transposeA.letter, transposeB.letter, m, n, kk, alpha, a, lda, b, ldb, beta, c, ldc)
            precondition(status == dnnl_success, "oneDNN sgemm failed (status \(status.rawValue)) on \(m)×\(n)×\(kk)")
        }
    }
    public static func gemv(
        transpose: Transpose, m: Int, n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
        x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>
    ) {
        cblas_sgemv(CblasRowMajor, transpose.cblas, Int32(m), Int32(n), alpha, a, Int32(lda), x, 1, beta, y, 1)
    }
    public static func axpy(count: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        cblas_saxpy(Int32(count), alpha, x, 1, y, 1)
    }
    public static func triangularSolve(
        left: Bool, transposeA: Transpose, m: Int, n: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafeMutablePointer<Float>, ldb: Int
    ) {
        cblas_strsm(CblasRowMajor, left ? CblasLeft : CblasRight, CblasLower, transposeA.cblas, CblasNonUnit,
                    Int32(m), Int32(n), alpha, a, Int32(lda), b, Int32(ldb))
    }
    public static func choleskyLower(n: Int, a: UnsafeMutablePointer<Float>, lda: Int) -> Int {
        Int(LAPACKE_spotrf(LAPACK_ROW_MAJOR, CChar(UInt8(ascii: "L")), Int32(n), a, Int32(lda)))
    }
    public static func exp(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) { iwae_exp_f32(x, y, count) }
    public static func log(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) { iwae_log_f32(x, y, count) }
    public static func log1p(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) { iwae_log1p_f32(x, y, count) }
    public static func tanh(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) { iwae_tanh_f32(x, y, count) }
    public static func sigmoid(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) { iwae_sigmoid_f32(x, y, count) }
    public static func softplus(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) { iwae_softplus_f32(x, y, count) }
    public static func biasTanh(_ y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, columns: Int) {
        iwae_bias_tanh_f32(y, bias, rows, columns)
    }
    public static func scaleRows(_ y: UnsafeMutablePointer<Float>, by scale: UnsafePointer<Float>, rows: Int, columns: Int) {
        iwae_scale_rows_f32(y, scale, rows, columns)
    }
    public static func bernoulliLogLikelihood(
        logits: UnsafePointer<Float>, bias: UnsafePointer<Float>?, targets: UnsafePointer<Float>, rows: Int, dim: Int, repeat: Int,
        logLikelihood: UnsafeMutablePointer<Float>, residuals: UnsafeMutablePointer<Float>?
    ) {
        iwae_bernoulli_loglik_f32(logits, bias, targets, rows, dim, `repeat`, logLikelihood, residuals)
    }
    public static func fillStandardNormal(_ out: UnsafeMutablePointer<Float>, count: Int, using generator: Xoshiro256) {
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
    }
    public static func adamStep(
        parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, firstMoment: UnsafeMutablePointer<Float>,
        secondMoment: UnsafeMutablePointer<Float>, count: Int, beta1: Float, beta2: Float, stepSize: Float, epsilon: Float
    ) {
        iwae_adam_f32(parameters, gradients, firstMoment, secondMoment, count, beta1, beta2, stepSize, epsilon)
    }

    public static func adamStepSummingAndClearing(
        parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<UnsafeMutablePointer<Float>?>, sources: Int,
        firstMoment: UnsafeMutablePointer<Float>, secondMoment: UnsafeMutablePointer<Float>, count: Int,
        beta1: Float, beta2: Float, stepSize: Float, epsilon: Float
    ) {
        iwae_adam_sum_f32(parameters, gradients, sources, firstMoment, secondMoment, count, beta1, beta2, stepSize, epsilon)
    }
}

extension Transpose {
    var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
    /// oneDNN's and LAPACK's letter: N or T.
    var letter: CChar { CChar(UInt8(ascii: self == .none ? "N" : "T")) }
}
