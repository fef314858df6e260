import ArgumentParser
import Foundation
import IWAECore
import IWAEData
import IWAELinearAlgebra

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a VAE (--objective elbo) or an IWAE (--objective iwae); writes DIR/model.safetensors and DIR/metrics.jsonl.")

    @OptionGroup var dataOptions: DataOptions
    @Option(help: "Bound to maximize: elbo, iwae or elbo-analytic (closed-form KL).") var objective: String = "iwae"
    @Option(name: .customLong("k"), help: "Importance samples per example (K).") var samples: Int = 5
    @Option(help: "Passes over the training set.") var epochs: Int = 5
    @Option(help: "Examples per minibatch.") var batch: Int = 100
    @Option(help: "Adam learning rate (the base rate of a schedule).") var learningRate: Double = 1e-3
    @Option(help: "Learning-rate schedule: constant, or paper (3^i passes at rate·10^(-i/7), i = 0…7).") var schedule: String = "constant"
    @Option(help: "Adam epsilon (the IWAE paper's 1e-4).") var adamEpsilon: Double = 1e-4
    @Option(help: "Seed of initialization, shuffling, binarization and sampling.") var seed: UInt64 = 1
    @Option(help: "Training images held out for the per-epoch validation bound.") var validationExamples: Int = 5000
    @Option(help: "Use only the first N training images (default: all).") var trainExamples: Int?
    @Option(help: "Latent dimension k.") var latent: Int = 50
    @Option(help: "Hidden widths of encoder and decoder, comma-separated (the decoder mirrors them).") var hidden: String = "200,200"
    @Option(help: "Encoder hidden widths, or 'none' (default: --hidden).") var encoderHidden: String?
    @Option(help: "Decoder hidden widths, or 'none' for a linear decoder (default: --hidden reversed).") var decoderHidden: String?
    @Option(help: "Encoder covariance: diagonal or full (A Aᵀ + diag(softplus(d)), Cholesky).") var encoder: String = "diagonal"
    @Option(help: "Prior: standard (N(0, I)) or learned (N(λ₁, diag(λ₂))).") var prior: String = "standard"
    @Option(help: "Likelihood: bernoulli (binarized images) or gaussian (real values).") var likelihood: String = "bernoulli"
    @Option(help: "σ of the Gaussian likelihood (its start value with --learn-sigma).") var sigma: Double = 1
    @Flag(help: "Train σ² of the Gaussian likelihood.") var learnSigma = false
    @Option(help: "Encoder gradient estimator: reparam, score, stl or dreg.") var estimator: String = "reparam"
    @Option(help: "Score-function baseline: none or vimco.") var baseline: String = "none"
    @OptionGroup var synthetic: SyntheticOptions
    @Option(help: "Hidden nonlinearity: tanh, relu, softplus, sigmoid.") var activation: String = "tanh"
    @Option(help: "Worker threads (default: all active cores); results depend on seed and thread count.") var threads: Int?
    @Option(help: "Output directory.") var out: String = ""
    @Option(help: "Also write a checkpoint every N training steps within an epoch (default: at each epoch's end only).")
    var checkpointEvery: Int?
    @Option(help: "Continue the run in DIR from its last checkpoint (options come from the checkpoint; --epochs and --checkpoint-every may be given).")
    var resume: String?

    /// Options that may accompany --resume.
    static let resumeOptions: Set<String> = ["--resume", "--epochs", "--checkpoint-every"]

    func run() throws {
        if let resume { return try Train.resume(resume) }
        guard !out.isEmpty else { throw IWAEError.invalidArgument("missing --out DIR (or --resume DIR)") }
        try train(resuming: nil)
    }

    /// Rebuilds the original command from the checkpoint and continues it.
    static func resume(_ directory: String) throws {
        let arguments = Array(CommandLine.arguments.drop { $0 != "train" }.dropFirst())
        for argument in arguments where argument.hasPrefix("--") {
            let name = String(argument.split(separator: "=", maxSplits: 1)[0])
            guard resumeOptions.contains(name) else {
                throw IWAEError.invalidArgument("\(name) cannot be combined with --resume: the run's options come from its checkpoint (only --epochs and --checkpoint-every may be given)")
            }
        }
        let checkpoint = try Checkpoint.load(from: directory)
        guard checkpoint.trainingState != nil, checkpoint.optimizer != nil, let saved = checkpoint.info["arguments"],
              let original = try? JSONSerialization.jsonObject(with: Data(saved.utf8)) as? [String] else {
            throw IWAEError.invalidCheckpoint("\(Checkpoint.path(for: directory)) has no training state to resume from")
        }
        var command = try Train.parse(original)
        let given = try Train.parse(arguments)
        command.out = directory
        if arguments.contains(where: { $0 == "--epochs" || $0.hasPrefix("--epochs=") }) { command.epochs = given.epochs }
        if given.checkpointEvery != nil { command.checkpointEvery = given.checkpointEvery }
        command.threads = checkpoint.info["threads"].flatMap(Int.init)
        command.resume = nil
        try command.train(resuming: checkpoint)
    }

    func train(resuming checkpoint: Checkpoint?) throws {
        guard let objective = Objective(rawValue: objective) else {
            throw IWAEError.invalidArgument("unknown objective '\(objective)' (expected elbo, iwae or elbo-analytic)")
        }
        guard let activation = Activation(rawValue: activation), activation != .identity else {
            throw IWAEError.invalidArgument("unknown activation '\(activation)' (expected tanh, relu, softplus or sigmoid)")
        }
        let widths = try parseWidths(hidden, option: "--hidden", allowNone: false)
        let encoderWidths = try encoderHidden.map { try parseWidths($0, option: "--encoder-hidden", allowNone: true) } ?? widths
        let decoderWidths = try decoderHidden.map { try parseWidths($0, option: "--decoder-hidden", allowNone: true) } ?? widths.reversed()
        guard let encoderKind = EncoderKind(rawValue: encoder) else {
            throw IWAEError.invalidArgument("unknown encoder '\(encoder)' (expected diagonal or full)")
        }
        guard let priorKind = PriorKind(rawValue: prior) else {
            throw IWAEError.invalidArgument("unknown prior '\(prior)' (expected standard or learned)")
        }
        guard let likelihoodKind = LikelihoodKind(rawValue: likelihood) else {
            throw IWAEError.invalidArgument("unknown likelihood '\(likelihood)' (expected bernoulli or gaussian)")
        }
        if learnSigma && likelihoodKind != .gaussian {
            throw IWAEError.invalidArgument("--learn-sigma needs --likelihood gaussian")
        }
        guard let schedule = LearningRateSchedule(rawValue: schedule) else {
            throw IWAEError.invalidArgument("unknown schedule '\(schedule)' (expected constant or paper)")
        }
        guard let estimatorKind = GradientEstimator(rawValue: estimator) else {
            throw IWAEError.invalidArgument("unknown estimator '\(estimator)' (expected reparam, score, stl or dreg)")
        }
        guard let baselineKind = ScoreBaseline(rawValue: baseline) else {
            throw IWAEError.invalidArgument("unknown baseline '\(baseline)' (expected none or vimco)")
        }
        let options = TrainingOptions(objective: objective, samplesPerExample: samples, epochs: epochs, batchSize: batch,
                                      learningRate: learningRate, schedule: schedule, adamEpsilon: adamEpsilon,
                                      estimator: estimatorKind, baseline: baselineKind, seed: seed, workers: threads)
        try options.validate()
        if let n = checkpointEvery, n < 1 { throw IWAEError.invalidArgument("--checkpoint-every must be at least 1, got \(n)") }
        if let n = trainExamples, n < 1 { throw IWAEError.invalidArgument("--train-examples must be at least 1, got \(n)") }
        try prepareOutputDirectory(out)
        if checkpoint == nil && FileManager.default.fileExists(atPath: out + "/" + Checkpoint.fileName) {
            throw IWAEError.invalidArgument("\(out) already holds a checkpoint: continue it with --resume \(out), or choose another --out")
        }

        let source = try DataSource(name: dataSource(dataOptions.data), settings: synthetic.settings)
        if source.isRealValued && likelihoodKind == .bernoulli {
            throw IWAEError.invalidArgument("\(source.name) is real-valued: use --likelihood gaussian")
        }
        var trainingImages = try source.load(.train)
        try checkMemory(samples: samples, batch: batch, dimension: trainingImages.dimension,
                        hidden: (widths + encoderWidths + decoderWidths + [latent]).max()!)
        if let n = trainExamples { trainingImages = trainingImages.prefix(n) }
        let split = try trainingImages.splitValidation(count: validationExamples, seed: seed ^ 0x5B11)
        let configuration = ModelConfiguration(dataDimension: trainingImages.dimension, latentDimension: latent,
                                               encoderHidden: encoderWidths, decoderHidden: decoderWidths,
                                               activation: activation, encoder: encoderKind, prior: priorKind,
                                               likelihood: likelihoodKind, sigma: sigma, learnSigma: learnSigma)
        try configuration.validate()
        let model = VariationalAutoencoder<Float>(configuration, seed: seed)
        model.initializeOutputBias(dataMean: split.train.pixelMean)
        let heldOut = likelihoodKind == .bernoulli ? split.validation.binarizedOnce(seed: heldOutBinarizationSeed) : split.validation
        let trainer = try Trainer(model: model, options: options, validation: split.validation.count > 0 ? heldOut : nil)
        if let checkpoint {
            guard checkpoint.model.configuration == configuration, let saved = checkpoint.optimizer, let state = checkpoint.trainingState else {
                throw IWAEError.invalidCheckpoint("the checkpoint in \(out) does not match the command that wrote it")
            }
            model.store.values.pointer.update(from: checkpoint.model.store.values.pointer, count: model.store.values.count)
            trainer.optimizer.restore(step: saved.step, firstMoment: saved.firstMoment, secondMoment: saved.secondMoment)
            try trainer.restore(state)
        }
        let thisCommand = try JSONSerialization.data(withJSONObject: Array(CommandLine.arguments.drop { $0 != "train" }.dropFirst()))
        let originalArguments = checkpoint?.info["arguments"] ?? String(decoding: thisCommand, as: UTF8.self)
        var info: [String: String] = source.settings.merging([
            "arguments": originalArguments, "epochs": String(epochs),
            "objective": objective.rawValue, "estimator": estimatorKind.rawValue, "baseline": baselineKind.rawValue, "k": String(samples),
            "batch": String(batch), "learning_rate": String(learningRate), "schedule": schedule.rawValue, "adam_epsilon": String(adamEpsilon),
            "seed": String(seed), "threads": String(trainer.workers.workerCount), "image_width": String(trainingImages.width), "image_height": String(trainingImages.height),
            "train_examples": String(split.train.count), "validation_examples": String(split.validation.count),
            "epoch": "0", "step": "0",
        ]) { a, _ in a }
        if let checkpoint {
            ProgressBar.log("resuming \(out) at epoch \(checkpoint.trainingState!.epoch), step \(checkpoint.trainingState!.step) (\(epochs) epochs in all)")
        } else {
            ProgressBar.log("training \(objective.rawValue) K=\(samples) on \(split.train.count) images (\(split.validation.count) held out), batch \(batch), \(epochs) epochs, \(model.store.values.count) parameters")
        }
        func save(_ state: TrainingState) throws {
            info["epoch"] = String(state.epoch)
            info["step"] = String(state.step)
            try Checkpoint(model: model, info: info, optimizer: trainer.optimizer, trainingState: state).save(to: out)
        }
        if checkpoint == nil { try save(trainer.currentState) }
        let stop = SignalFlag.install()
        // Fault injection for the crash-recovery tests: die (SIGKILL) or be
        // interrupted (SIGINT) right after a given step, as from outside.
        let killAtStep = ProcessInfo.processInfo.environment["IWAE_FAULT_KILL_AT_STEP"].flatMap(Int.init)
        let interruptAtStep = ProcessInfo.processInfo.environment["IWAE_FAULT_INTERRUPT_AT_STEP"].flatMap(Int.init)
        let metricsPath = out + "/metrics.jsonl"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let started = Date()
        do {
            try trainer.train(split.train, checkpointEvery: checkpointEvery, shouldStop: { stop.isSet }, afterStep: { step in
                if step == killAtStep { kill(getpid(), SIGKILL) }
                if step == interruptAtStep { kill(getpid(), SIGINT) }
            }, onCheckpoint: save, onProgress: { p in
                ProgressBar.draw("epoch \(p.epoch)/\(p.epochs)", done: p.batch, total: p.batches,
                                 detail: "bound \(formatted(p.runningBound))  \(Int(p.examplesPerSecond)) ex/s")
            }, onEpoch: { m, state in
                try save(state)
                try appendLine(String(decoding: try encoder.encode(m), as: UTF8.self), to: metricsPath)
            let validation = m.validationBound.map { "  validation \(formatted($0))" } ?? ""
            ProgressBar.log("epoch \(m.epoch)/\(epochs)  train \(formatted(m.trainBound))\(validation)  \(Int(m.examplesPerSecond)) ex/s  \(formatted(m.seconds, 1)) s")
            })
        } catch IWAEError.interrupted(let message) {
            throw IWAEError.interrupted("\(message); checkpoint saved in \(out); continue with: iwae train --resume \(out)")
        }
        ProgressBar.log("done in \(formatted(Date().timeIntervalSince(started), 1)) s; checkpoint \(out)/\(Checkpoint.fileName)")
    }
}

/// SIGINT and SIGTERM set a flag that the training loop polls after each step.
final class SignalFlag: @unchecked Sendable {
    nonisolated(unsafe) static var raised: sig_atomic_t = 0
    nonisolated(unsafe) static var signal: Int32 = 0

    var isSet: Bool { SignalFlag.raised != 0 }

    static func install() -> SignalFlag {
        let handler: @convention(c) (Int32) -> Void = { number in
            SignalFlag.signal = number
            SignalFlag.raised = 1
        }
        Foundation.signal(SIGINT, handler)
        Foundation.signal(SIGTERM, handler)
        return SignalFlag()
    }
}

/// Widths like "200,200", or "none" (no hidden layer) when allowed.
func parseWidths(_ text: String, option: String, allowNone: Bool) throws -> [Int] {
    if allowNone && text == "none" { return [] }
    let widths = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !widths.isEmpty, widths.allSatisfy({ $0 != nil && $0! >= 1 }) else {
        throw IWAEError.invalidArgument("\(option) must be positive widths separated by commas\(allowNone ? " or 'none'" : ""), got '\(text)'")
    }
    return widths.map { $0! }
}

/// Options of the synthetic `--data linear-gaussian` source.
struct SyntheticOptions: ParsableArguments {
    @Option(help: "linear-gaussian: data dimension D.") var syntheticDimension: Int?
    @Option(help: "linear-gaussian: latent dimension of the generating model.") var syntheticLatent: Int?
    @Option(help: "linear-gaussian: observation noise σ of the generating model.") var syntheticNoise: Double?
    @Option(help: "linear-gaussian: training examples.") var syntheticExamples: Int?
    @Option(help: "linear-gaussian: test examples.") var syntheticTestExamples: Int?
    @Option(help: "linear-gaussian: seed of the generating model.") var syntheticSeed: UInt64?

    var settings: [String: String] {
        var s = [String: String]()
        if let v = syntheticDimension { s["synthetic_dimension"] = String(v) }
        if let v = syntheticLatent { s["synthetic_latent"] = String(v) }
        if let v = syntheticNoise { s["synthetic_noise"] = String(v) }
        if let v = syntheticExamples { s["synthetic_examples"] = String(v) }
        if let v = syntheticTestExamples { s["synthetic_test_examples"] = String(v) }
        if let v = syntheticSeed { s["synthetic_seed"] = String(v) }
        return s
    }
}

/// Refuses up front a K or batch whose buffers would not fit in memory,
/// saying how much they would need.
func checkMemory(samples: Int, batch: Int, dimension: Int, hidden: Int) throws {
    let (rows, o1) = samples.multipliedReportingOverflow(by: batch)
    let perRow = 4 * (3 * dimension + 4 * hidden + 64)
    let (bytes, o2) = rows.multipliedReportingOverflow(by: perRow)
    let available = Int(ProcessInfo.processInfo.physicalMemory)
    if o1 || o2 || bytes > available / 2 {
        let need = o1 || o2 ? "more than 2^63 bytes" : "\(bytes / (1 << 20)) MiB"
        throw IWAEError.invalidArgument("k=\(samples) × batch=\(batch) would need \(need) of buffers; this machine has \(available / (1 << 20)) MiB")
    }
}

/// Appends one line to a file and flushes it to disk.
func appendLine(_ line: String, to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    guard fd >= 0 else { throw IWAEError.writeFailed("cannot write \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let bytes = Array((line + "\n").utf8)
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == bytes.count, fsync(fd) == 0 else {
        throw IWAEError.writeFailed("cannot write \(path): \(String(cString: strerror(errno)))")
    }
}
