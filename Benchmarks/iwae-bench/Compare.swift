import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

/// Table 1 of Burda et al. (2015), on this engine: one and two stochastic
/// layers × VAE and IWAE × K, same seed and budget for every row; test NLL by
/// L_5000, active units per layer, beside the paper's own figures.
struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train VAE (ELBO) and IWAE for several K and architectures with the same seed and budget; report test NLL (k=5000), active units per layer, train/test gap, speed.")

    @Option(help: "mnist (Burda et al.'s data), fashion-mnist, a directory of MNIST-format files, or a table (.npy, .npz, .csv, .tsv, .safetensors; see iwae train).")
    var data = "fashion-mnist"
    @Option(help: "A table's array or tensor (.npz, .safetensors).") var dataKey: String?
    @Option(help: "A table's test rows, from this file.") var testData: String?
    @Option(help: "A table's test rows: this fraction of its rows, held out (seed 1).") var testFraction: Double?
    @Option(help: "Stochastic layers of the architectures to compare, comma-separated: 1 (784-200-200-50) and 2 (…-100-100-50). Default: 1,2 on mnist, 1 otherwise.")
    var layers: PositiveIntegers?
    @Option(help: "Objectives, comma-separated: elbo, iwae, elbo-analytic, miwae, ciwae, piwae.")
    var objectives = CommaSeparated<BoundKind>([.elbo, .iwae])
    @Option(help: "K values, comma-separated (per group for miwae and piwae).") var ks = PositiveIntegers([1, 5, 50])
    @Option(help: "miwae, piwae rows: M groups of K draws.") var m = 1
    @Option(help: "ciwae rows: β, the ELBO's share.") var beta = 0.5
    @Option(help: "Epochs per model (default 10; 3280 with --schedule paper; 1 with --quick).") var epochs: Int?
    @Option(help: "constant, or paper (3^i passes at rate·10^(-i/7)).") var schedule = LearningRateSchedule.constant
    @Option(help: "Examples per minibatch.") var batch = 100
    @Option(help: "Encoder gradient estimator of the IWAE, MIWAE and PIWAE rows (reparam: the paper's; dreg: Tucker et al.'s, the same gradient with less variance). The other rows use reparam.")
    var iwaeEstimator = GradientEstimator.reparam
    @Option(help: "Adam learning rate.") var learningRate = 1e-3
    @Option(help: "Decoder output weights at the start: glorot, or pca (the training images' principal directions at Glorot's scale).")
    var outputInit = OutputInitialization.glorot
    @Option(help: "Seed of every model (same for all).") var seed: UInt64 = 1
    @Option(help: "Inputs of the products in training and evaluation: fp32, or bf16 (rounded to bfloat16, accumulated in fp32).")
    var precision = Precision.fp32
    @Option(help: "Use only the first N training images (default: all; 10000 with --quick).") var trainExamples: Int?
    @Option(help: "Test images for the NLL (default 1000; 200 with --quick).") var testExamples: Int?
    @Option(help: "Training images for the train NLL of the gap (default 1000; 200 with --quick).") var trainEvalExamples: Int?
    @Option(help: "Importance samples of the evaluation.") var evalK = 5000
    @Option(help: "PNG chart of NLL and examples/s against K.") var chart = "iwae-bench.png"
    @Option(help: "Keep each model's checkpoint under this directory.") var out: String?
    @Flag(help: "About a minute: 1 epoch on 10,000 images, 200 evaluation images.") var quick = false
    @Flag(help: "One JSON object per model instead of the table.") var json = false

    func run() throws {
        // Every row's objective, checked before the first one trains.
        let objectiveRows = try objectives.values.map { bound in
            try ks.values.map { k in
                try Objective(bound, samplesPerExample: k, estimator: [.iwae, .miwae, .piwae].contains(bound) ? iwaeEstimator : .reparam,
                              groups: bound == .miwae || bound == .piwae ? m : 1, beta: bound == .ciwae ? beta : nil)
            }
        }
        let epochCount = epochs ?? (quick ? 1 : schedule.totalEpochs ?? 10)
        let testCount = testExamples ?? (quick ? 200 : 1000)
        let trainEvalCount = trainEvalExamples ?? (quick ? 200 : 1000)
        guard epochCount >= 1, testCount >= 1, trainEvalCount >= 1 else {
            throw IWAEError.invalidArgument("epochs, test examples and train-eval examples must be at least 1")
        }
        let evaluationSamples = try EvaluationSamples(evalK)
        guard chart.hasSuffix(".png") else { throw IWAEError.invalidArgument("--chart must name a .png file") }
        if let out { try prepareOutputDirectory(out) }

        let architectures = layers?.values ?? (data == "mnist" ? [1, 2] : [1])
        guard architectures.allSatisfy({ $0 == 1 || $0 == 2 }) else { throw IWAEError.invalidArgument("--layers takes 1 and 2") }
        let requested: DataSource = RawTable.isTableFile(data)
            ? .table(try TableSource(file: data, key: dataKey, testFile: testData, testFraction: testFraction))
            : try DataSource(name: data)
        let (loaded, source) = try requested.loadTraining()
        var train = loaded
        if let n = trainExamples ?? (quick ? 10_000 : nil) { train = train.prefix(n) }
        guard let testSet = try source.loadTest() else {
            throw IWAEError.invalidArgument("\(data) has no test rows: give --test-data or --test-fraction")
        }
        let test = testSet.prefix(testCount)
        // A continuous table: a Gaussian decoder with a learned variance per feature on its standardized features, NLL in its units.
        let gaussian = source.isRealValued
        func configured(_ c: ModelConfiguration) -> ModelConfiguration {
            var c = c
            if gaussian { c.likelihood = .gaussian; c.learnSigma = true; c.sigmaPerFeature = true }
            return c
        }
        let evaluationModel = VariationalAutoencoder<Float>(configured(ModelConfiguration(dataDimension: train.dimension)))
        let testImages = evaluationModel.evaluationRows(test)
        let trainImages = evaluationModel.evaluationRows(train.prefix(trainEvalCount))
        let trainEval = train.prefix(trainEvalCount)
        let jacobian = test.logJacobian

        if !json {
            print("K comparison on \(data), the same budget for every row: \(train.count) training \(train.noun), \(epochCount) epochs (\(schedule.rawValue)), batch \(batch), Adam \(learningRate), seed \(seed), IWAE estimator \(iwaeEstimator.rawValue), output init \(outputInit.rawValue);"
                  + " NLL = −mean L_\(evalK) on \(test.count) test \(test.noun)\(jacobian != 0 ? " (in the data's units)" : ""), gap = test NLL − train NLL on \(trainEval.count) training \(train.noun)"
                  + (data == "mnist" ? "; paper = Burda et al. (2015) Table 1, MNIST, after 3,280 passes" : ""))
        }
        var rows = [Row]()
        for architecture in architectures {
        for objectivesOfBound in objectiveRows {
            for objective in objectivesOfBound {
                let k = objective.samplesPerExample
                let configuration = configured(architecture == 1 ? ModelConfiguration(dataDimension: train.dimension)
                                                                 : ModelConfiguration.twoLayer(dataDimension: train.dimension))
                let model = VariationalAutoencoder<Float>(configuration, seed: seed)
                let options = try TrainingOptions(objective: objective, epochs: epochCount, batchSize: batch,
                                                  learningRate: learningRate, schedule: schedule,
                                                  outputInitialization: outputInit, seed: seed, precision: precision)
                let trainer = try Trainer(model: model, options: options, validation: nil)
                let label = "\(architecture)-layer \(objective.label) K=\(k)"
                let start = now()
                try trainer.train(train, onProgress: { p in
                    ProgressBar.draw("\(label) epoch \(p.epoch)/\(p.epochs)", done: p.batch, total: p.batches,
                                     detail: "bound \(formatted(p.runningBound))  \(Int(p.examplesPerSecond)) ex/s")
                })
                let trainSeconds = now() - start
                ProgressBar.finishLine()
                if let out {
                    let variant = (objective.groups > 1 ? "-m\(objective.groups)" : "") + (objective.beta.map { "-beta\($0)" } ?? "")
                    let directory = out + "/\(architecture)layer-\(objective.bound.rawValue)\(variant)-k\(k)"
                    try prepareOutputDirectory(directory)
                    try Checkpoint(model: model, data: source,
                                   imageSize: train.imageSize.map { Checkpoint.ImageSize(width: $0.width, height: $0.height) }).save(to: directory)
                }
                ProgressBar.draw("\(label) evaluating k=\(evalK)", done: 0, total: 2, detail: "")
                let testEstimate = try trainer.workers.estimateLogLikelihood(testImages.matrix, samples: evaluationSamples, seed: 11).shifted(by: jacobian)
                ProgressBar.draw("\(label) evaluating k=\(evalK)", done: 1, total: 2, detail: "")
                let trainEstimate = try trainer.workers.estimateLogLikelihood(trainImages.matrix, samples: evaluationSamples, seed: 12).shifted(by: jacobian)
                ProgressBar.finishLine()
                if !json && rows.isEmpty {
                    print("layers  objective     K   test NLL   ± stderr   train NLL    gap   active units   train examples/s   train seconds   paper NLL   paper active")
                }
                let row = Row(architecture: architecture, objective: objective.label, k: k, nll: testEstimate.negativeLogLikelihood,
                              nllStderr: testEstimate.standardError, trainNLL: trainEstimate.negativeLogLikelihood,
                              activeUnits: testEstimate.activeUnitsPerLayer,
                              examplesPerSecond: Double(train.count * epochCount) / trainSeconds, trainSeconds: trainSeconds)
                rows.append(row)
                let paper = data == "mnist" ? PaperTable1.entry(layers: architecture, bound: objective.bound, k: k) : nil
                if json {
                    var fields: [(String, any JSONField)] = [("architecture", "\(architecture)-layer"), ("objective", row.objective), ("k", row.k), ("precision", precision.rawValue),
                                                   ("nll", row.nll), ("nll_stderr", row.nllStderr), ("train_nll", row.trainNLL),
                                                   ("gap", row.nll - row.trainNLL), ("active_units", row.activeUnits.reduce(0, +)),
                                                   ("active_units_per_layer", row.activeUnits),
                                                   ("train_examples_per_s", row.examplesPerSecond), ("train_seconds", row.trainSeconds),
                                                   ("epochs", epochCount), ("eval_k", evalK), ("test_examples", test.count),
                                                   ("output_init", outputInit.rawValue)]
                    if let paper { fields += [("paper_nll", paper.nll), ("paper_active_units_per_layer", paper.active)] }
                    print(jsonLine(fields))
                } else {
                    let active = row.activeUnits.map(String.init).joined(separator: "+")
                    let paperText = paper.map { String(format: "%11.2f   %@", $0.nll, $0.active.map(String.init).joined(separator: "+")) } ?? "          –   –"
                    print(String(format: "%6d  ", architecture) + row.objective.padding(toLength: 9, withPad: " ", startingAt: 0)
                          + String(format: " %5d %10.2f %10.2f %11.2f %6.2f ", row.k, row.nll, row.nllStderr, row.trainNLL, row.nll - row.trainNLL)
                          + active.leftPadded(14) + String(format: " %18.0f %15.1f ", row.examplesPerSecond, row.trainSeconds) + paperText)
                }
            }
        }
        }
        try writeChart(rows, to: chart)
        if !json { print("chart: \(chart)") }
    }

    struct Row {
        var architecture: Int
        var objective: String
        var k: Int
        var nll: Double
        var nllStderr: Double
        var trainNLL: Double
        var activeUnits: [Int]
        var examplesPerSecond: Double
        var trainSeconds: Double
    }

    func writeChart(_ rows: [Row], to path: String) throws {
        var names = [String]()
        func name(_ row: Row) -> String {
            (row.objective == "elbo" ? "VAE" : row.objective.uppercased()) + (rows.contains { $0.architecture != row.architecture } ? " \(row.architecture)L" : "")
        }
        for row in rows where !names.contains(name(row)) { names.append(name(row)) }
        func series(_ value: (Row) -> Double) -> [ChartSeries] {
            names.enumerated().map { i, label in
                ChartSeries(name: label,
                            points: rows.filter { name($0) == label }.map { (Double($0.k), value($0)) },
                            color: LineChart.palette[i % LineChart.palette.count])
            }
        }
        let nll = LineChart(title: "TEST NLL (K=\(evalK))", xLabel: "K", yLabel: "NATS", logX: true, series: series(\.nll)).render()
        let speed = LineChart(title: "TRAINING SPEED", xLabel: "K", yLabel: "EXAMPLES/S", logX: true, logY: true,
                              series: series(\.examplesPerSecond)).render()
        var image = RGBImage(width: nll.width + speed.width, height: max(nll.height, speed.height))
        image.draw(nll, at: 0, 0)
        image.draw(speed, at: nll.width, 0)
        try writeFileAtomically(try image.png(), to: path)
    }
}

/// Burda et al. (2015), Table 1, MNIST: test NLL (k = 5000) and active units
/// per stochastic layer after 3,280 passes (the paper's figures, for comparison).
enum PaperTable1 {
    static func entry(layers: Int, bound: BoundKind, k: Int) -> (nll: Double, active: [Int])? {
        let table: [String: (Double, [Int])] = [
            "1 elbo 1": (86.76, [19]), "1 elbo 5": (86.47, [20]), "1 elbo 50": (86.35, [20]),
            "1 iwae 1": (86.76, [19]), "1 iwae 5": (85.54, [22]), "1 iwae 50": (84.78, [25]),
            "2 elbo 1": (85.33, [16, 5]), "2 elbo 5": (85.01, [17, 5]), "2 elbo 50": (84.78, [17, 5]),
            "2 iwae 1": (85.33, [16, 5]), "2 iwae 5": (83.89, [21, 5]), "2 iwae 50": (82.90, [26, 7]),
        ]
        return table["\(layers) \(bound.rawValue) \(k)"].map { (nll: $0.0, active: $0.1) }
    }
}
