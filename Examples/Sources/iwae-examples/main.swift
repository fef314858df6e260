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

/// Training examples of one's own: rows of a flat array, written into the
/// span the trainer hands over (the protocol's whole contract).
struct Rows: TrainingExamples {
    let values: [Float]          // count × dimension, row by row
    let count: Int, dimension: Int
    func write(_ indices: ArraySlice<Int>, binarize: Bool, using rng: Xoshiro256, into out: inout MutableSpan<Float>) {
        for (r, i) in indices.enumerated() {
            for d in 0..<dimension {
                let v = values[i * dimension + d]
                out[r * dimension + d] = binarize ? (rng.uniform(Float.self) < v ? 1 : 0) : v
            }
        }
    }
    func firstNonFiniteRow() -> Int? { values.firstIndex { !$0.isFinite }.map { $0 / dimension } }
}

/// The parameters after two epochs on `examples` (a small Gaussian model, fixed seeds).
func trainedParameters(_ examples: some TrainingExamples) throws -> [Float] {
    let model = VariationalAutoencoder<Float>(ModelConfiguration(dataDimension: 4, latentDimension: 2, encoderHidden: [8],
                                                                 decoderHidden: [8], likelihood: .gaussian), seed: 1)
    let options = try TrainingOptions(epochs: 2, batchSize: 20)
    try Trainer(model: model, options: options, validation: nil).train(examples)
    return model.parameters
}

do {
    // One's own examples train the same model, to the bit, as an ImageSet of the same values.
    let values = (0..<400).map { Float(($0 * 37) % 11) / 11 }
    let own = try trainedParameters(Rows(values: values, count: 100, dimension: 4))
    let images = try trainedParameters(ImageSet(count: 100, width: 2, height: 2, pixels: values, labels: [UInt8](repeating: 0, count: 100)))
    emit("own_examples_match_image_set", own == images && own.allSatisfy(\.isFinite) ? 1 : 0)

    // A training loop of one's own with the public step: shuffled batches
    // written into one tensor (dynamic binarization), the workers' bounds and
    // gradient, Adam. Then a save into a new directory, a load, and per-row
    // log-likelihoods that agree to the bit.
    let rows = Rows(values: values, count: 100, dimension: 4)
    let looped = VariationalAutoencoder<Float>(ModelConfiguration(dataDimension: 4, latentDimension: 2, encoderHidden: [8],
                                                                  decoderHidden: [8]), seed: 3)
    let objective = try Objective(.iwae, samplesPerExample: 5)
    let workers = ModelWorkers(model: looped, seed: 1)
    workers.plan = workers.trainingPlan(batchSize: 20, objective: objective)
    let adam = Adam<Float>(count: looped.parameterCount, learningRate: 1e-2)
    var rng = Xoshiro256(seed: 2)
    let batch = Tensor<Float>(shape: [20, 4])
    var epochBounds = [Double]()
    for _ in 0..<30 {
        let order = Array(0..<rows.count).shuffled(using: &rng)
        var sum = 0.0
        for start in stride(from: 0, to: rows.count, by: 20) {
            batch.withMutableSpan { rows.write(order[start..<start + 20], binarize: true, using: rng, into: &$0) }
            sum += try workers.boundsAndGradient(batch.matrix, objective: objective).reduce(0.0) { $0 + Double($1) }
            workers.updateParameters(with: adam)
        }
        epochBounds.append(sum / Double(rows.count))
    }
    emit("loop_first_epoch_bound", epochBounds.first!)
    emit("loop_last_epoch_bound", epochBounds.last!)
    let saved = NSTemporaryDirectory() + "iwae-examples-\(getpid())/model"
    defer { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "iwae-examples-\(getpid())") }
    try Checkpoint(model: looped).save(to: saved)
    let before = try looped.logLikelihood(of: values, examples: 100, samples: 200)
    let after = try Checkpoint.load(from: saved).model.logLikelihood(of: values, examples: 100, samples: 200)
    emit("loaded_scores_match", before.logLikelihoods == after.logLikelihoods && after.logLikelihoods.count == 100 ? 1 : 0)
    emit("loop_test_nll", after.negativeLogLikelihood)

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
    // The same functions in Float, the engine's training precision.
    let floatWeights: [Float] = [-3, -1, -2, -4]
    emit("iwae_bound_float", Double(iwaeBound(logWeights: floatWeights)))
    emit("elbo_float", Double(elboEstimate(logWeights: floatWeights)))
    emit("logsumexp_float", Double(logSumExp(floatWeights)))
    emit("sigmoid_float", Double(sigmoid([Float(2)])[0]))

    // log p(x) of a trained model on test images, as `iwae evaluate` computes it.
    let arguments = CommandLine.arguments
    if arguments.count >= 4, let count = Int(arguments[2]), let k = Int(arguments[3]) {
        let checkpoint = try Checkpoint.load(from: arguments[1])
        guard let data = checkpoint.data else { throw IWAEError.invalidCheckpoint("the checkpoint does not record its data set") }
        let images = try data.load(.test).prefix(count)
        let estimate = try checkpoint.model.logLikelihood(of: images, samples: EvaluationSamples(k), seed: 1)
        emit("nll", estimate.negativeLogLikelihood)
        emit("nll_stderr", estimate.standardError)
        // The same rows as a user's table: a .npy of intensities, read back as a
        // `DataTable`, scored row by row as `iwae score` scores them.
        if arguments.count == 5 {
            let rows = try DataTable(values: images.pixels, rows: images.count, columns: images.dimension)
            let path = arguments[4]
            try Data(NPY.encode(rows.values(rows: 0..<rows.count), shape: [rows.count, rows.dimension])).write(to: URL(fileURLWithPath: path))
            let table = try DataTable(contentsOf: path)
            let scores = try checkpoint.model.logLikelihood(of: table, samples: EvaluationSamples(k), seed: 1)
            emit("table_nll", scores.negativeLogLikelihood)
            emit("table_first_row", scores.logLikelihoods[0])
            emit("table_first_row_stderr", scores.standardErrors[0])
        }
    }
} catch {
    FileHandle.standardError.write(Data("iwae-examples: error: \(error)\n".utf8))
    exit(1)
}
