import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Estimate the test log-likelihood log p(x) of a trained model: L_k (Burda et al. 2015) or annealed importance sampling.")

    /// How log p(x) is estimated.
    enum Method: String, ExpressibleByArgument, CaseIterable { case iwae, ais }

    @Argument(help: "Training output directory (or a model.safetensors file).") var checkpoint: String
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var estimation: EstimationOptions
    @Option(help: "iwae: L_k with k importance samples (--k); ais: annealed importance sampling from the prior with HMC (--ais-steps, --leapfrog, --chains).")
    var method: Method = .iwae
    @OptionGroup var ais: AISOptions
    @Option(help: "Evaluate the first N test images (default: all).") var testExamples: Int?
    @Flag(help: "Print one JSON object instead of a table.") var json = false
    @Option(help: "Also write each test image's L_k, its Monte Carlo standard error and the Monte Carlo ELBO to this file, one JSON object per line (for paired comparisons of models on the same images).")
    var perExample: String?

    func run() throws {
        let (samples, k, seed) = (try estimation.samples(), estimation.k, estimation.seed)
        if method == .ais { _ = try ais.settings() } else if ais.given { throw IWAEError.invalidArgument("--ais-steps, --leapfrog, --chains, --pilot-chains, --schedule, --step-size and --ais-start are for --method ais") }
        if let n = testExamples, n < 1 { throw IWAEError.invalidArgument("--test-examples must be at least 1, got \(n)") }
        if let perExample { try checkWritableFile(perExample, option: "--per-example") }
        let loaded = try Checkpoint.load(from: checkpoint)
        let model = loaded.model
        let (dataName, testSet) = try loadTestSet(dataOptions, checkpoint: loaded)
        var test = testSet
        if let n = testExamples { test = test.prefix(n) }
        let x = model.evaluationRows(test)
        let workers = try estimation.workers(loaded)
        if method == .ais { return try evaluateByAIS(workers, test: test, x: x, dataName: dataName) }
        let started = Date()
        let modelUnits = try workers.estimateLogLikelihood(x.matrix, samples: samples, seed: seed) { done in
            let elapsed = Date().timeIntervalSince(started)
            ProgressBar.draw("evaluating k=\(k)", done: done, total: test.count,
                             detail: "\(formatted(Double(done) / max(elapsed, 1e-9), 1)) \(test.noun)/s")
        }
        // In the data's own units: + log |dy/dv| of a table's standardization (0 otherwise).
        let estimate = modelUnits.shifted(by: test.logJacobian)
        let seconds = Date().timeIntervalSince(started)
        ProgressBar.finishLine()
        guard estimate.meanLogLikelihood.isFinite else {
            throw IWAEError.numerical("the log-likelihood estimate is not finite (\(estimate.meanLogLikelihood))")
        }
        if let perExample {
            let lines = estimate.logLikelihoods.indices.map { i in
                jsonLine([("index", i), ("bound", estimate.logLikelihoods[i]), ("standard_error", estimate.standardErrors[i]),
                          ("elbo", estimate.elbos[i])]) + "\n"
            }
            try writeFileAtomically(Array(lines.joined().utf8), to: perExample)
        }
        let exact = model.isLinearGaussian ? try model.exactLogLikelihood(x.matrix) : nil
        let exactNLL = exact.map { -$0.reduce(0, +) / Double($0.count) - test.logJacobian }
        if json {
            let fields: [(String, any JSONField)] = [
                ("nll", estimate.negativeLogLikelihood), ("nll_stderr", estimate.standardError),
                ("active_units", estimate.activeUnits), ("elbo", estimate.meanELBO),
                ("reconstruction", estimate.meanReconstruction), ("kl", estimate.meanKL),
                ("k", k), ("examples", estimate.examples), ("precision", workers.plan.precision.rawValue),
                ("latent_dimension", model.configuration.latentDimension),
                ("active_units_per_layer", estimate.activeUnitsPerLayer),
                ("latent_dimensions", model.configuration.latentDimensions),
                ("seconds", seconds), ("data", dataName), ("log_jacobian", test.logJacobian),
            ]
            print(jsonLine(fields + (exactNLL.map { [("exact_nll", $0)] } ?? [])))
        } else {
            print("test \(test.noun)".padding(toLength: 19, withPad: " ", startingAt: 0) + "\(estimate.examples) (\(dataName))")
            print("log p(x) ≈ L_\(k)  \(formatted(estimate.meanLogLikelihood)) ± \(formatted(estimate.standardError)) nats")
            print("NLL                \(formatted(estimate.negativeLogLikelihood)) nats")
            if test.logJacobian != 0 {
                print("units              the data's own: standardized features' log-likelihood + log|dy/dx| = \(formatted(test.logJacobian))")
            }
            if model.configuration.stochasticLayers == 1 {
                print("ELBO               \(formatted(estimate.meanELBO)) nats = reconstruction \(formatted(estimate.meanReconstruction)) − KL \(formatted(estimate.meanKL)) (KL in closed form; Monte Carlo ELBO shown)")
            } else {
                print("ELBO               \(formatted(estimate.meanELBO)) nats (Monte Carlo); reconstruction \(formatted(estimate.meanReconstruction))")
            }
            if let exactNLL { print("exact NLL          \(formatted(exactNLL, 4)) nats (linear-Gaussian closed form); estimate − exact \(formatted(estimate.negativeLogLikelihood - exactNLL, 4))") }
            let perLayer = zip(estimate.activeUnitsPerLayer, model.configuration.latentDimensions).enumerated()
                .map { "z\($0.offset + 1): \($0.element.0) of \($0.element.1)" }.joined(separator: ", ")
            print("active units       \(perLayer)")
            print("time               \(formatted(seconds, 1)) s")
        }
    }
}


/// The options of an estimate of log p(x) (`evaluate`, `score`): k, the
/// seed, the threads, and the products' library and precision.
struct EstimationOptions: ParsableArguments {
    @Option(help: "Importance samples per row (k of L_k).") var k: Int = EvaluationSamples.standard.perExample
    @Option(help: "Seed of the importance samples (row r draws from its own stream: estimates do not depend on the other rows or on chunks).")
    var seed: UInt64 = LogLikelihoodEstimate.standardSeed
    @Option(help: "Worker threads (default: all active cores).") var threads: Int?
    @Option(help: "Library of the products: auto (the faster on this machine, per product), openblas or onednn. Default: the plan the checkpoint was trained with, else auto.")
    var gemm: GEMMChoice?
    @Option(help: "Inputs of the products: fp32 or bf16 (default: the precision the checkpoint was trained with).")
    var precision: Precision?

    /// k, checked.
    func samples() throws -> EvaluationSamples { try EvaluationSamples(k) }

    /// The checkpoint's model on `threads` cores, with the plan of products
    /// it was trained with (or `gemm`'s, timed for the evaluation's passes)
    /// and its precision (or `precision`).
    func workers(_ loaded: Checkpoint) throws -> ModelWorkers<Float> {
        if let t = threads, !(1...TrainingOptions.maximumWorkers).contains(t) {
            throw IWAEError.invalidArgument("--threads must be between 1 and \(TrainingOptions.maximumWorkers), got \(t)")
        }
        let samples = try self.samples()
        let model = loaded.model
        let workers = ModelWorkers(model: model, workers: threads, seed: seed)
        let precision = self.precision ?? model.plan.precision
        if gemm != nil || loaded.trainingState?.plan == nil || precision != model.plan.precision {
            // A pass's examples and draws (`estimateLogLikelihood`'s rows).
            workers.plan = model.computePlan(gemm ?? .auto, precision: precision, examples: samples.examplesPerPass(),
                                             drawsPerExample: samples.drawsPerPass(), threads: workers.workerCount > 1 ? 1 : BLASLibrary.threads)
        }
        if precision == .bf16 { FileHandle.standardError.write(Data("iwae: products: \(workers.plan.grouped)\n".utf8)) }
        return workers
    }
}
