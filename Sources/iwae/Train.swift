import ArgumentParser
import Foundation
import IWAE
import IWAEConsole
import IWAEMPI

/// The defaults of `iwae train`, from their one home in the library.
private let modelDefaults = ModelConfiguration(dataDimension: 1)
private let trainingDefaults = TrainingOptions.defaults

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a VAE (--objective elbo) or an IWAE (--objective iwae); writes DIR/model.safetensors and DIR/metrics.jsonl.",
        discussion: "A run continues from its last checkpoint with 'iwae resume DIR', also spelled 'iwae train --resume DIR'.")

    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var objectiveOptions: ObjectiveOptions
    @Option(help: "Passes over the training set.") var epochs: Int = trainingDefaults.epochs
    @Option(help: "Examples per minibatch.") var batch: Int = trainingDefaults.batchSize
    @Option(help: "Adam learning rate (the base rate of a schedule).") var learningRate: Double = trainingDefaults.learningRate
    @Option(help: "Learning-rate schedule (paper: 3^i passes at rate·10^(-i/7), i = 0…7).")
    var schedule: LearningRateSchedule = trainingDefaults.schedule
    @Option(help: "Adam epsilon (the IWAE paper's 1e-4).") var adamEpsilon: Double = trainingDefaults.adamEpsilon
    @Option(help: "Decoder output weights at the start: glorot (random) or pca (the training images' principal directions, at Glorot's scale).")
    var outputInit: OutputInitialization = trainingDefaults.outputInitialization
    @Option(help: "Seed of initialization, shuffling, binarization and sampling.") var seed: UInt64 = trainingDefaults.seed
    @OptionGroup var tableOptions: TableOptions
    @Option(help: "Training examples held out for the per-epoch validation bound (default: 5,000; for a table, a tenth of its training rows up to 5,000).")
    var validationExamples: Int?
    @Option(help: "Use only the first N training images (default: all).") var trainExamples: Int?
    @Option(help: "Latent dimension k.") var latent: Int = modelDefaults.latentDimension
    @Option(help: "Hidden widths of encoder and decoder, comma-separated (the decoder mirrors them).")
    var hidden = Widths(modelDefaults.encoderHidden)
    @Option(help: "Encoder hidden widths, or 'none' (default: --hidden).") var encoderHidden: Widths?
    @Option(help: "Decoder hidden widths, or 'none' for a linear decoder (default: --hidden reversed).") var decoderHidden: Widths?
    @Option(help: ArgumentHelp("A stochastic layer above z₁ (repeat for more): DIM@Q_HIDDEN[/P_HIDDEN], q(z_{l+1}|z_l) and p(z_l|z_{l+1}) hidden widths or 'none' (p defaults to q's reversed).",
                               discussion: "The IWAE paper's two-layer model is --latent 100 --hidden 200,200 --upper-layer 50@100,100.",
                               valueName: "dim@widths"))
    var upperLayer: [UpperLayerArgument] = []
    @Option(help: "Encoder covariance (full: A Aᵀ + diag(softplus(d)), Cholesky).") var encoder: CovarianceKind = modelDefaults.encoder
    @Option(help: "Prior: standard N(0, I) or learned N(λ₁, diag(λ₂)).") var prior: PriorKind = modelDefaults.prior
    @Option(help: "Likelihood: bernoulli (binarized images) or gaussian (real values). Default: gaussian for a continuous table, else bernoulli.")
    var likelihood: LikelihoodKind?
    @Option(help: "σ of the Gaussian likelihood (its start value with --learn-sigma).") var sigma: Double = modelDefaults.sigma
    @Flag(inversion: .prefixedNo, help: "Train σ² of the Gaussian likelihood (default: on for a continuous table, off otherwise).")
    var learnSigma: Bool?
    @Flag(inversion: .prefixedNo, help: "With --learn-sigma: one σ² per feature, N(f(z), diag(σ_d²)) (default: on for a continuous table, off otherwise).")
    var sigmaPerFeature: Bool?
    @OptionGroup var synthetic: SyntheticOptions
    @Option(help: "Hidden nonlinearity.") var activation: Activation = modelDefaults.activation
    @Option(help: "Worker threads (default: all active cores, shared among the ranks on a machine); results depend on seed and the thread count over all ranks.") var threads: Int?
    @OptionGroup var rankOptions: RankOptions
    @Option(help: "Library of the products: auto (each product by the faster of OpenBLAS and oneDNN on this machine, timed once and kept in a cache), openblas or onednn. The plan is recorded in the checkpoint and kept on --resume.")
    var gemm: GEMMChoice = trainingDefaults.gemm
    @Option(help: "Inputs of the layers' products: fp32, or bf16 (rounded to bfloat16, accumulated in fp32; parameters, Adam and every reduction stay fp32). Recorded in the checkpoint and kept on --resume.")
    var precision: Precision = trainingDefaults.precision
    @Option(help: "Output directory.") var out: String = ""
    @OptionGroup var checkpointOptions: CheckpointOptions
    func run() throws {
        let ranks = ProcessRanks.current
        try rankOptions.configure()
        var created = false
        do {
            let (run, images) = try ranks.together { try prepareNewRun(writesDirectory: ranks.rank == 0, created: &created) }
            let stop = SignalFlag.install()
            try run.train(examples: images, resuming: nil, ranks: ranks, shouldStop: { stop.isSet }, events: .console,
                          faults: .fromEnvironment(rank: ranks.rank))
        } catch {
            // Only the process that made the directory and holds its lock may
            // take it back: a racing run that lost either leaves it alone.
            RunDirectory.removeIfUnused(out, created: created)
            throw error
        }
    }

    /// A new run: the options checked, the `--out` directory created (or
    /// found) and locked by the writing rank (`created` says whether this
    /// process made it), the training images loaded.
    private func prepareNewRun(writesDirectory: Bool, created: inout Bool) throws -> (TrainingRun, Examples) {
        let options = try TrainingOptions(objective: try objectiveOptions.objective(), epochs: epochs, batchSize: batch,
                                          learningRate: learningRate, schedule: schedule, adamEpsilon: adamEpsilon,
                                          outputInitialization: outputInit, seed: seed,
                                          workers: threads ?? ProcessRanks.defaultWorkers, gemm: gemm, precision: precision)
        let requested = try synthetic.source(dataOptions, tables: tableOptions)
        let (loaded, source) = try requested.loadTraining()
        // A table says what it is; the other sources keep the Bernoulli default.
        let isTable: Bool = { if case .table = source { return true } else { return false } }()
        let likelihood = self.likelihood ?? (isTable && source.isRealValued ? .gaussian : modelDefaults.likelihood)
        let learnSigma = self.learnSigma ?? (isTable && likelihood == .gaussian)
        if learnSigma && likelihood != .gaussian { throw IWAEError.invalidArgument("--learn-sigma needs --likelihood gaussian") }
        if sigmaPerFeature == true && !learnSigma { throw IWAEError.invalidArgument("--sigma-per-feature needs a learned σ² (--likelihood gaussian --learn-sigma)") }
        let perFeature = sigmaPerFeature ?? (isTable && learnSigma)
        if source.isRealValued && likelihood == .bernoulli {
            throw IWAEError.invalidArgument("\(source.name) is real-valued: use --likelihood gaussian")
        }
        if case .table(let table) = source {
            ProgressBar.log(tableSummary(table, rows: loaded, likelihood: likelihood, learnSigma: learnSigma, perFeature: perFeature))
        }
        let images = loaded
        let encoderWidths = encoderHidden?.values ?? hidden.values
        let decoderWidths = decoderHidden?.values ?? hidden.values.reversed()
        try TrainingOptions.checkBufferMemory(samples: options.objective.drawsPerExample, batch: batch, dimension: images.dimension,
                        hidden: (hidden.values + encoderWidths + decoderWidths + [latent]
                                 + upperLayer.flatMap { [$0.layer.dimension] + $0.layer.encoderHidden + $0.layer.decoderHidden }).max()!)
        var configuration = ModelConfiguration(dataDimension: images.dimension, latentDimension: latent,
                                               encoderHidden: encoderWidths, decoderHidden: decoderWidths,
                                               activation: activation, encoder: encoder, prior: prior,
                                               likelihood: likelihood, sigma: sigma, learnSigma: learnSigma)
        configuration.upperLayers = upperLayer.map(\.layer)
        configuration.sigmaPerFeature = perFeature
        try configuration.validate()
        try TrainingOptions.checkModelMemory(configuration, workers: options.workers)
        let run = try TrainingRun(directory: out, configuration: configuration, options: options, data: source,
                                  trainExamplesLimit: trainExamples, validationExamples: validationExamples,
                                  checkpointEvery: checkpointOptions.checkpointEvery)
        if writesDirectory {
            created = try RunDirectory.create(out)
            try RunDirectory.lock(out)
            if FileManager.default.fileExists(atPath: out + "/" + Checkpoint.fileName) {
                throw IWAEError.invalidArgument("\(out) already holds a checkpoint: continue it with --resume \(out), or choose another --out")
            }
        }
        return (run, images)
    }
}

/// When a run writes checkpoints besides each epoch's end, as `train` and `resume` take it
/// (checked by `TrainingRun`).
struct CheckpointOptions: ParsableArguments {
    @Option(help: "Also write a checkpoint every N training steps within an epoch (default: at each epoch's end only).")
    var checkpointEvery: Int?
}

/// The objective's four options; `objective()` makes the one value that
/// carries them, checked there.
struct ObjectiveOptions: ParsableArguments {
    private static let defaults = Objective.standard
    @Option(name: .customLong("objective"), help: "Bound to maximize (elbo-analytic: the ELBO with its KL in closed form).")
    var bound: BoundKind = defaults.bound
    @Option(help: "Importance samples per example (K; per group with --m).") var k: Int = defaults.samplesPerExample
    @Option(help: "miwae, piwae: groups of K draws (M), M·K draws per example.") var m: Int = defaults.groups
    @Option(help: "ciwae: the ELBO's share β in β·ELBO + (1−β)·IWAE-K.") var beta: Double?
    @Option(help: "Encoder gradient estimator.") var estimator: GradientEstimator = defaults.estimator
    @Option(help: "Score-function baseline.") var baseline: ScoreBaseline = defaults.baseline

    func objective() throws -> Objective {
        try Objective(bound, samplesPerExample: k, estimator: estimator, baseline: baseline, groups: m, beta: beta)
    }
}

/// What was decided about a table, in one line: its size and type, its
/// kind and how it is modelled, where the test rows come from.
private func tableSummary(_ table: TableSource, rows: Examples, likelihood: LikelihoodKind, learnSigma: Bool, perFeature: Bool) -> String {
    let how: String
    switch (table.kind, table.encoding) {
    case (.binary?, _): how = "binary (every value 0 or 1)"
    case (.intensity?, .intensity(let scale)?): how = "intensities (v/\(Int(scale)), binarized as MNIST)"
    case (.intensity?, _): how = "intensities in [0, 1] (binarized as MNIST)"
    default: how = "continuous (standardized per feature; log-likelihoods reported in the data's units)"
    }
    let decoder = likelihood == .gaussian ? "Gaussian decoder, \(learnSigma ? (perFeature ? "a learned variance per feature" : "learned variance") : "fixed variance")" : "Bernoulli decoder"
    let test = table.testFile.map { "test rows from \($0)" }
        ?? table.testFraction.map { "\(formatted($0 * 100, 1)) % of the rows held out for testing (seed \(table.splitSeed))" }
        ?? "no test rows (evaluate with --data FILE)"
    if case .table(let t) = rows {
        return "data: \(table.name): \(t.count) training rows × \(t.dimension) features of \(t.raw.elementType.rawValue): \(how); \(decoder) (--data-kind and --likelihood override); \(test)"
    }
    return "data: \(table.name)"
}

/// Options of a table given to `--data`: its columns, its kind, its test rows.
struct TableOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Columns of a table to read: 0-based indices and ranges (0,2,5-9) or, for a CSV header, names (age,income).", valueName: "list"))
    var columns: String?
    @Option(help: "What a table's values are: binary (0/1), intensity (binarized as MNIST) or continuous (a Gaussian on standardized features). Default: decided from the values.")
    var dataKind: TableKind?
    @Option(help: "Test rows of a table from this file (same columns): evaluate and score read them.") var testData: String?
    @Option(help: "The array or tensor of --test-data (.npz, .safetensors).") var testKey: String?
    @Option(help: "Hold out this fraction of the table's rows for testing (chosen by --split-seed; recorded in the checkpoint).")
    var testFraction: Double?
    @Option(help: "Seed of the --test-fraction split.") var splitSeed: UInt64 = 1

    /// Whether any of these was given (they need a table).
    var given: Bool { columns != nil || dataKind != nil || testData != nil || testKey != nil || testFraction != nil }
}

extension TableKind: ExpressibleByArgument {}

/// Options of the synthetic `--data linear-gaussian` source.
struct SyntheticOptions: ParsableArguments {
    private static let defaults = LinearGaussianData()
    @Option(help: "linear-gaussian: data dimension D.") var syntheticDimension: Int = defaults.dimension
    @Option(help: "linear-gaussian: latent dimension of the generating model.") var syntheticLatent: Int = defaults.latentDimension
    @Option(help: "linear-gaussian: observation noise σ of the generating model.") var syntheticNoise: Double = defaults.noise
    @Option(help: "linear-gaussian: training examples.") var syntheticExamples: Int = 10_000
    @Option(help: "linear-gaussian: test examples.") var syntheticTestExamples: Int = 1_000
    @Option(help: "linear-gaussian: seed of the generating model.") var syntheticSeed: UInt64 = defaults.seed
    @Option(help: "linear-gaussian: a second latent layer of this dimension (the chain z₂ → z₁ → x).") var syntheticUpperLatent: Int?

    /// The data source `--data` names, with these settings for
    /// linear-gaussian and `tables`' for a table file.
    func source(_ options: DataOptions, tables: TableOptions) throws -> DataSource {
        if options.namesTable, let file = options.data {
            var columns: ColumnSelection?
            if let text = tables.columns {
                guard let parsed = ColumnSelection(text) else { throw IWAEError.invalidArgument("--columns takes 0-based indices, ranges (5-9) or names, comma-separated; got '\(text)'") }
                columns = parsed
            }
            return .table(try TableSource(file: file, key: options.dataKey, columns: columns, testFile: tables.testData,
                                          testKey: tables.testKey, testFraction: tables.testFraction, splitSeed: tables.splitSeed,
                                          kind: tables.dataKind))
        }
        if tables.given { throw IWAEError.invalidArgument("--columns, --data-kind, --test-data, --test-key and --test-fraction are for a table given to --data (.npy, .npz, .csv, .tsv, .safetensors)") }
        if options.dataKey != nil { throw IWAEError.invalidArgument("--data-key names an array of a .npz or .safetensors --data file") }
        guard let name = options.data else { return try options.source() }
        let generator = LinearGaussianData(dimension: syntheticDimension, latentDimension: syntheticLatent,
                                           noise: syntheticNoise, seed: syntheticSeed, upperDimension: syntheticUpperLatent)
        return try DataSource(name: name, generator: generator, trainExamples: syntheticExamples,
                              testExamples: syntheticTestExamples, mnistDirectory: options.mnistDirectory)
    }
}

