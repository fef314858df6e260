import RealModule
import CBLAS
import CIWAEKernels

extension Double: BLASScalar {
    public static func gemm(
        transposeA: Transpose, transposeB: Transpose, m: Int, n: Int, kk: Int,
        alpha: Double, a: UnsafePointer<Double>, lda: Int, b: UnsafePointer<Double>, ldb: Int,
        beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int
    ) {
        cblas_dgemm(CblasRowMajor, transposeA.cblas, transposeB.cblas, Int32(m), Int32(n), Int32(kk),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    public static func gemv(
        transpose: Transpose, m: Int, n: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int,
        x: UnsafePointer<Double>, beta: Double, y: UnsafeMutablePointer<Double>
    ) {
        cblas_dgemv(CblasRowMajor, transpose.cblas, Int32(m), Int32(n), alpha, a, Int32(lda), x, 1, beta, y, 1)
    }
    public static func axpy(count: Int, alpha: Double, x: UnsafePointer<Double>, y: UnsafeMutablePointer<Double>) {
        cblas_daxpy(Int32(count), alpha, x, 1, y, 1)
    }
    public static func triangularSolve(
        left: Bool, transposeA: Transpose, m: Int, n: Int,
        alpha: Double, a: UnsafePointer<Double>, lda: Int, b: UnsafeMutablePointer<Double>, ldb: Int
    ) {
        cblas_dtrsm(CblasRowMajor, left ? CblasLeft : CblasRight, CblasLower, transposeA.cblas, CblasNonUnit,
                    Int32(m), Int32(n), alpha, a, Int32(lda), b, Int32(ldb))
    }
    public static func choleskyLower(n: Int, a: UnsafeMutablePointer<Double>, lda: Int) -> Int {
        Int(LAPACKE_dpotrf(LAPACK_ROW_MAJOR, CChar(UInt8(ascii: "L")), Int32(n), a, Int32(lda)))
    }
    public static func exp(_ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, count: Int) { iwae_exp_f64(x, y, count) }
    public static func log(_ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, count: Int) { iwae_log_f64(x, y, count) }
    public static func log1p(_ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, count: Int) { iwae_log1p_f64(x, y, count) }
    public static func tanh(_ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, count: Int) { iwae_tanh_f64(x, y, count) }
    public static func sigmoid(_ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, count: Int) { iwae_sigmoid_f64(x, y, count) }
    public static func softplus(_ x: UnsafePointer<Double>, _ y: UnsafeMutablePointer<Double>, count: Int) { iwae_softplus_f64(x, y, count) }
    public static func biasTanh(_ y: UnsafeMutablePointer<Double>, bias: UnsafePointer<Double>, rows: Int, columns: Int) {
        iwae_bias_tanh_f64(y, bias, rows, columns)
    }
    public static func scaleRows(_ y: UnsafeMutablePointer<Double>, by scale: UnsafePointer<Double>, rows: Int, columns: Int) {
        iwae_scale_rows_f64(y, scale, rows, columns)
    }
    public static func bernoulliLogLikelihood(
        logits: UnsafePointer<Double>, bias: UnsafePointer<Double>?, targets: UnsafePointer<Double>, rows: Int, dim: Int, repeat: Int,
        logLikelihood: UnsafeMutablePointer<Double>, residuals: UnsafeMutablePointer<Double>?
    ) {
        iwae_bernoulli_loglik_f64(logits, bias, targets, rows, dim, `repeat`, logLikelihood, residuals)
    }
    public static func fillStandardNormal(_ out: UnsafeMutablePointer<Double>, count: Int, using generator: Xoshiro256) {
        let pairs = (count + 1) / 2
        let words = generator.scratchWords(count: 2 * pairs)
        let half = count / 2
        iwae_box_muller_f64(words, out, half)
        if count % 2 == 1 {
            var tail: (Double, Double) = (0, 0)
            withUnsafeMutablePointer(to: &tail) {
                $0.withMemoryRebound(to: Double.self, capacity: 2) { iwae_box_muller_f64(words + 2 * half, $0, 1) }
            }
            out[count - 1] = tail.0
        }
    }
    public static func adamStep(
        parameters: UnsafeMutablePointer<Double>, gradients: UnsafePointer<Double>, firstMoment: UnsafeMutablePointer<Double>,
        secondMoment: UnsafeMutablePointer<Double>, count: Int, beta1: Double, beta2: Double, stepSize: Double, epsilon: Double
    ) {
        iwae_adam_f64(parameters, gradients, firstMoment, secondMoment, count, beta1, beta2, stepSize, epsilon)
    }

    public static func adamStepSummingAndClearing(
        parameters: UnsafeMutablePointer<Double>, gradients: UnsafePointer<UnsafeMutablePointer<Double>?>, sources: Int,
        firstMoment: UnsafeMutablePointer<Double>, secondMoment: UnsafeMutablePointer<Double>, count: Int,
        beta1: Double, beta2: Double, stepSize: Double, epsilon: Double
    ) {
        iwae_adam_sum_f64(parameters, gradients, sources, firstMoment, secondMoment, count, beta1, beta2, stepSize, epsilon)
    }
}
