import IWAELinearAlgebra
import RealModule

// The formulas of Mathematics §1–2 on plain arrays, for code that does not want
// the engine's buffers: each calls the same function the model uses. Vectors
// are [Scalar]; a k×k matrix is k·k values, row-major.

/// KL(N(μ, L Lᵀ) ‖ N(λ₁, diag λ₂)) from the Cholesky factor L (lower triangle
/// read), by `klDivergence(trace:quadratic:dimension:logPriorDeterminant:logDeterminant:)`.
public func klDivergence<Scalar: BLASScalar>(mean: [Scalar], choleskyFactor l: [Scalar], priorMean: [Scalar], priorVariance: [Scalar]) -> Scalar {
    let k = mean.count
    precondition(l.count == k * k && priorMean.count == k && priorVariance.count == k, "shapes: μ (k), L (k·k), λ₁ (k), λ₂ (k)")
    var trace: Scalar = 0, quadratic: Scalar = 0, logPriorDet: Scalar = 0, logDet: Scalar = 0
    for i in 0..<k {
        var sigmaII: Scalar = 0
        for j in 0...i { sigmaII += l[i * k + j] * l[i * k + j] }
        trace += sigmaII / priorVariance[i]
        let diff = priorMean[i] - mean[i]
        quadratic += diff * diff / priorVariance[i]
        logPriorDet += Scalar.log(priorVariance[i])
        logDet += 2 * Scalar.log(l[i * k + i])
    }
    return klDivergence(trace: trace, quadratic: quadratic, dimension: k, logPriorDeterminant: logPriorDet, logDeterminant: logDet)
}

/// KL(N(μ, Σ) ‖ N(λ₁, diag λ₂)) from Σ (k·k, symmetric positive definite),
/// factored by LAPACK. Throws when Σ is not positive definite.
public func klDivergence<Scalar: BLASScalar>(mean: [Scalar], covariance: [Scalar], priorMean: [Scalar], priorVariance: [Scalar]) throws -> Scalar {
    try klDivergence(mean: mean, choleskyFactor: choleskyFactor(covariance, dimension: mean.count),
                     priorMean: priorMean, priorVariance: priorVariance)
}

/// The lower Cholesky factor L of Σ = L Lᵀ (k·k, row-major, zero upper part).
public func choleskyFactor<Scalar: BLASScalar>(_ covariance: [Scalar], dimension k: Int) throws -> [Scalar] {
    precondition(covariance.count == k * k, "Σ must have k·k values")
    var l = covariance
    let info = l.withUnsafeMutableBufferPointer { Scalar.choleskyLower(n: k, a: $0.baseAddress!, lda: k) }
    guard info == 0 else { throw IWAEError.notPositiveDefinite(example: 0, info: info) }
    for i in 0..<k { for j in (i + 1)..<Swift.max(i + 1, k) { l[i * k + j] = 0 } }
    return l
}

/// One value computed by an engine function over (rows, columns) views:
/// `body` gets `values` as a one-row matrix and a one-element output buffer
/// it must write, and the buffer's value is returned.
///
/// The output is a buffer this function owns and reads back itself, never a
/// caller's local passed as `&result` from inside a closure: Swift 6.3.1 at
/// `-O` drops such a write and returned the initial 0.0 (`elboEstimate`
/// printed 0 for −2.5 in a release build).
private func scalar<Scalar: BLASScalar>(over values: [Scalar], _ body: (MatrixView<Scalar>, UnsafeMutablePointer<Scalar>) -> Void) -> Scalar {
    withUnsafeTemporaryAllocation(of: Scalar.self, capacity: values.count + 1) { storage in
        let row = storage.baseAddress!, result = row + values.count
        _ = UnsafeMutableBufferPointer(start: row, count: values.count).initialize(from: values)
        result.initialize(to: .nan)
        body(MatrixView(row, rows: 1, columns: values.count), result)
        return result.pointee
    }
}

/// log q(z) for q = N(μ, L Lᵀ) (full covariance), by `fullGaussianLogDensity`.
public func gaussianLogDensity<Scalar: BLASScalar>(_ z: [Scalar], mean: [Scalar], choleskyFactor l: [Scalar]) -> Scalar {
    precondition(mean.count == z.count && l.count == z.count * z.count, "shapes: z (k), μ (k), L (k·k)")
    return mean.withUnsafeBufferPointer { mean in
        l.withUnsafeBufferPointer { l in
            scalar(over: z) { fullGaussianLogDensity($0, mean: mean.baseAddress!, factor: l.baseAddress!, into: $1) }
        }
    }
}

/// log q(z) for q = N(μ, diag(s²)) (the diagonal encoder), by
/// `diagonalGaussianLogDensity` with log variance 2 log s.
public func gaussianLogDensity<Scalar: BLASScalar>(_ z: [Scalar], mean: [Scalar], standardDeviation s: [Scalar]) -> Scalar {
    precondition(mean.count == z.count && s.count == z.count, "shapes: z, μ and s all (k)")
    return priorLogDensity(z, mean: mean, variance: s.map { $0 * $0 })
}

/// log r(z) for the prior N(λ₁, diag λ₂), by `diagonalGaussianLogDensity`
/// (λ₁ = 0, λ₂ = 1: the standard normal).
public func priorLogDensity<Scalar: BLASScalar>(_ z: [Scalar], mean: [Scalar], variance: [Scalar]) -> Scalar {
    precondition(mean.count == z.count && variance.count == z.count, "shapes: z, λ₁ and λ₂ all (k)")
    let logVariance = variance.map { Scalar.log($0) }
    return mean.withUnsafeBufferPointer { mean in
        logVariance.withUnsafeBufferPointer { logVariance in
            scalar(over: z) { diagonalGaussianLogDensity($0, mean: mean.baseAddress!, logVariance: logVariance.baseAddress!, into: $1) }
        }
    }
}

/// log p(x|z) of the Bernoulli likelihood with logits ℓ = f(z), by the
/// engine's Bernoulli kernel: Σ_d x_d ℓ_d − softplus(ℓ_d).
public func bernoulliLogLikelihood<Scalar: BLASScalar>(_ x: [Scalar], logits: [Scalar]) -> Scalar {
    precondition(x.count == logits.count, "x and the logits must have the same length")
    return x.withUnsafeBufferPointer { x in
        scalar(over: logits) { logits, result in
            Scalar.bernoulliLogLikelihood(logits: logits.pointer, bias: nil, targets: x.baseAddress!, rows: 1, dim: x.count,
                                          repeat: 1, logLikelihood: result, residuals: nil)
        }
    }
}

/// The Bernoulli decoder's mean σ(ℓ) = 1 / (1 + e^−ℓ) for logits ℓ, by the
/// engine's sigmoid kernel (the mean `iwae sample` draws images from).
public func sigmoid<Scalar: BLASScalar>(_ logits: [Scalar]) -> [Scalar] {
    [Scalar](unsafeUninitializedCapacity: logits.count) { result, initialized in
        logits.withUnsafeBufferPointer { logits in
            if let x = logits.baseAddress, let y = result.baseAddress { Scalar.sigmoid(x, y, count: logits.count) }
        }
        initialized = logits.count
    }
}

/// log p(x|z) of the Gaussian likelihood N(f(z), σ² I), by `gaussianLogLikelihood`.
public func gaussianLogLikelihood<Scalar: BLASScalar>(_ x: [Scalar], mean f: [Scalar], variance: Scalar) -> Scalar {
    precondition(x.count == f.count, "x and the mean must have the same length")
    return x.withUnsafeBufferPointer { x in
        scalar(over: f) { mean, result in
            let targets = MatrixView(UnsafeMutablePointer(mutating: x.baseAddress!), rows: 1, columns: x.count)
            gaussianLogLikelihood(mean: mean, targets: targets, drawsPerExample: 1, variance: variance, into: result)
        }
    }
}

/// log p(x|z) of the Gaussian likelihood N(f(z), diag(σ_d²)) with a variance
/// per feature, by `gaussianLogLikelihood(mean:targets:drawsPerExample:variances:into:)`.
public func gaussianLogLikelihood<Scalar: BLASScalar>(_ x: [Scalar], mean f: [Scalar], variances: [Scalar]) -> Scalar {
    precondition(x.count == f.count && variances.count == x.count, "x, the mean and the variances must have the same length")
    return x.withUnsafeBufferPointer { x in
        variances.withUnsafeBufferPointer { v in
            scalar(over: f) { mean, result in
                let targets = MatrixView(UnsafeMutablePointer(mutating: x.baseAddress!), rows: 1, columns: x.count)
                gaussianLogLikelihood(mean: mean, targets: targets, drawsPerExample: 1, variances: v.baseAddress!, into: result)
            }
        }
    }
}

/// L_K = logmeanexp(log w) of one example's K log weights, by `iwaeBound`.
public func iwaeBound<Scalar: BLASScalar>(logWeights: [Scalar]) -> Scalar {
    precondition(!logWeights.isEmpty, "at least one log weight")
    return scalar(over: logWeights) { iwaeBound(logWeights: $0, into: $1) }
}

/// The Monte Carlo ELBO (1/K) Σ log w of one example's K log weights, by `elboEstimate`.
public func elboEstimate<Scalar: BLASScalar>(logWeights: [Scalar]) -> Scalar {
    precondition(!logWeights.isEmpty, "at least one log weight")
    return scalar(over: logWeights) { elboEstimate(logWeights: $0, into: $1) }
}
