// The engine's public API from outside the package: no raw pointers, one
// import. Prints one JSON object per line, so a test (or a person) can check
// each number against its closed form.
//
//     swift run --package-path Examples iwae-examples [CHECKPOINT_DIR TEST_IMAGES K]
import Foundation
import IWAE

func emit(_ name: String, _ value: Double) {
    print("{\"quantity\": \"\(name)\", \"value\": \(String(format: "%.17g", value))}")
}

do {
    // KL(N(μ, Σ) ‖ N(λ₁, diag λ₂)) for a correlated 2-d Gaussian, from Σ and from its Cholesky factor.
    let mean = [0.5, -1.0], covariance = [2.0, 0.6, 0.6, 1.0]
    let priorMean = [0.0, 0.5], priorVariance = [1.0, 2.0]
    let kl = try klDivergence(mean: mean, covariance: covariance, priorMean: priorMean, priorVariance: priorVariance)
    emit("kl", kl)
    let factor = try choleskyFactor(covariance, dimension: 2)
    emit("kl_from_factor", klDivergence(mean: mean, choleskyFactor: factor, priorMean: priorMean, priorVariance: priorVariance))

    // log q(z) at a point, full and diagonal covariance; log r(z) of the standard normal.
    let z = [1.0, 0.0]
    emit("log_q_full", gaussianLogDensity(z, mean: mean, choleskyFactor: factor))
    emit("log_q_diagonal", gaussianLogDensity(z, mean: mean, standardDeviation: [2.0, 0.5]))
    emit("log_r_standard", priorLogDensity(z, mean: [0, 0], variance: [1, 1]))

    // Likelihoods, and the bounds of one example's log weights.
    emit("log_p_bernoulli", bernoulliLogLikelihood([1, 0, 1], logits: [2.0, -1.0, 0.0]))
    emit("log_p_gaussian", gaussianLogLikelihood([1, 2], mean: [0.5, 2.5], variance: 0.25))
    let logWeights = [-3.0, -1.0, -2.0, -4.0]
    emit("iwae_bound", iwaeBound(logWeights: logWeights))
    emit("elbo", elboEstimate(logWeights: logWeights))

    // log p(x) of a trained model on test images, as `iwae evaluate` computes it.
    let arguments = CommandLine.arguments
    if arguments.count == 4, let count = Int(arguments[2]), let k = Int(arguments[3]) {
        let checkpoint = try Checkpoint.load(from: arguments[1])
        guard let data = checkpoint.data else { throw IWAEError.invalidCheckpoint("the checkpoint does not record its data set") }
        let images = try data.load(.test).prefix(count)
        let estimate = try checkpoint.model.logLikelihood(of: images, samples: k, seed: 1)
        emit("nll", estimate.negativeLogLikelihood)
        emit("nll_stderr", estimate.standardError)
    }
} catch {
    FileHandle.standardError.write(Data("iwae-examples: error: \(error)\n".utf8))
    exit(1)
}
