import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

/// Table 1 of Burda et al. (2015), on this engine: VAE and IWAE for several
/// K, same architecture, seed and budget; test NLL by L_5000.
struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train VAE (ELBO) and IWAE for several K with the same seed and budget; report test NLL (k=5000), active units, train/test gap, speed.")

    @Option(help: "fashion-mnist or a directory of MNIST-format files.") var data = "fashion-mnist"
    @Option(help: "Objectives, comma-separated.") var objectives = "elbo,iwae"
    @Option(help: "K values, comma-separated.") var ks = PositiveIntegers([1, 5, 50])
    @Option(help: "Epochs per model (default 10; 3280 with --schedule paper; 1 with --quick).") var epochs: Int?
    @Option(help: "constant, or paper (3^i passes at rate·10^(-i/7)).") var schedule = LearningRateSchedule.constant
    @Option(help: "Examples per minibatch.") var batch = 100
    @Option(help: "Adam learning rate.") var learningRate = 1e-3
    @Option(help: "Seed of every model (same for all).") var seed: UInt64 = 1
    @Option(help: "Use only the first N training images (default: all; 10000 with --quick).") var trainExamples: Int?
    @Option(help: "Test images for the NLL (default 1000; 200 with --quick).") var testExamples: Int?
    @Option(help: "Training images for the train NLL of the gap (default 1000; 200 with --quick).") var trainEvalExamples: Int?
    @Option(help: "Importance samples of the evaluation.") var evalK = 5000
    @Option(help: "PNG chart of NLL and examples/s against K.") var chart = "iwae-bench.png"
    @Option(help: "Keep each model's checkpoint under this directory.") var out: String?
    @Flag(help: "About a minute: 1 epoch on 10,000 images, 200 evaluation images.") var quick = false
    @Flag(help: "One JSON object per model instead of the table.") var json = false

    func run() throws {
        let objectiveList = try objectives.split(separator: ",", omittingEmptySubsequences: false).map { name -> Objective in
            guard let o = Objective(rawValue: String(name)) else {
                throw IWAEError.invalidArgument("unknown objective '\(name)' in --objectives (expected elbo, iwae or elbo-analytic)")
            }
            return o
        }
        let kList = ks.values
        let epochCount = epochs ?? (quick ? 1 : schedule.totalEpochs ?? 10)
        let testCount = testExamples ?? (quick ? 200 : 1000)
        let trainEvalCount = trainEvalExamples ?? (quick ? 200 : 1000)
        guard epochCount >= 1, testCount >= 1, trainEvalCount >= 1, evalK >= 1 else {
            throw IWAEError.invalidArgument("epochs, test examples, train-eval examples and eval k must be at least 1")
        }
        guard chart.hasSuffix(".png") else { throw IWAEError.invalidArgument("--chart must name a .png file") }
        if let out { try prepareOutputDirectory(out) }

        let dataset = try MNISTFormatDataset.load(data)
        var train = dataset.train
        if let n = trainExamples ?? (quick ? 10_000 : nil) { train = train.prefix(n) }
        let test = dataset.test.prefix(testCount).binarizedForEvaluation()
        let trainEval = train.prefix(trainEvalCount).binarizedForEvaluation()
        let testImages = Tensor<Float>(shape: [test.count, test.dimension], values: test.pixels)
        let trainImages = Tensor<Float>(shape: [trainEval.count, trainEval.dimension], values: trainEval.pixels)
        let mean = train.pixelMean

        if !json {
            print("K comparison on \(data): \(train.count) training images, \(epochCount) epochs (\(schedule.rawValue)), batch \(batch), seed \(seed);"
                  + " NLL = −mean L_\(evalK) on \(test.count) test images, gap = test NLL − train NLL on \(trainEval.count) training images")
        }
        var rows = [Row]()
        for objective in objectiveList {
            for k in kList {
                let model = VariationalAutoencoder<Float>(ModelConfiguration(dataDimension: train.dimension), seed: seed)
                model.initializeOutputBias(dataMean: mean)
                let options = TrainingOptions(objective: objective, samplesPerExample: k, epochs: epochCount, batchSize: batch,
                                              learningRate: learningRate, schedule: schedule, seed: seed)
                let trainer = try Trainer(model: model, options: options, validation: nil)
                let label = "\(objective.rawValue) K=\(k)"
                let start = now()
                try trainer.train(train, onProgress: { p in
                    ProgressBar.draw("\(label) epoch \(p.epoch)/\(p.epochs)", done: p.batch, total: p.batches,
                                     detail: "bound \(formatted(p.runningBound))  \(Int(p.examplesPerSecond)) ex/s")
                })
                let trainSeconds = now() - start
                ProgressBar.finishLine()
                if let out {
                    let directory = out + "/\(objective.rawValue)-k\(k)"
                    try prepareOutputDirectory(directory)
                    try Checkpoint(model: model, data: .files(data),
                                   imageSize: Checkpoint.ImageSize(width: train.width, height: train.height)).save(to: directory)
                }
                ProgressBar.draw("\(label) evaluating k=\(evalK)", done: 0, total: 2, detail: "")
                let testEstimate = try trainer.workers.estimateLogLikelihood(testImages.matrix, samples: evalK, seed: 11)
                ProgressBar.draw("\(label) evaluating k=\(evalK)", done: 1, total: 2, detail: "")
                let trainEstimate = try trainer.workers.estimateLogLikelihood(trainImages.matrix, samples: evalK, seed: 12)
                ProgressBar.finishLine()
                if !json && rows.isEmpty { print("objective     K   test NLL   ± stderr   train NLL    gap   active units   train examples/s   train seconds") }
                let row = Row(objective: objective.rawValue, k: k, nll: testEstimate.negativeLogLikelihood,
                              nllStderr: testEstimate.standardError, trainNLL: trainEstimate.negativeLogLikelihood,
                              activeUnits: testEstimate.activeUnits,
                              examplesPerSecond: Double(train.count * epochCount) / trainSeconds, trainSeconds: trainSeconds)
                rows.append(row)
                if json {
                    print(jsonLine([("objective", row.objective), ("k", row.k), ("nll", row.nll), ("nll_stderr", row.nllStderr),
                                    ("train_nll", row.trainNLL), ("gap", row.nll - row.trainNLL), ("active_units", row.activeUnits),
                                    ("train_examples_per_s", row.examplesPerSecond), ("train_seconds", row.trainSeconds),
                                    ("epochs", epochCount), ("eval_k", evalK), ("test_examples", test.count)]))
                } else {
                    print(row.objective.padding(toLength: 9, withPad: " ", startingAt: 0) + String(format: " %5d %10.2f %10.2f %11.2f %6.2f %14d %18.0f %15.1f",
                                 row.k, row.nll, row.nllStderr, row.trainNLL, row.nll - row.trainNLL,
                                 row.activeUnits, row.examplesPerSecond, row.trainSeconds))
                }
            }
        }
        try writeChart(rows, to: chart)
        if !json { print("chart: \(chart)") }
    }

    struct Row {
        var objective: String
        var k: Int
        var nll: Double
        var nllStderr: Double
        var trainNLL: Double
        var activeUnits: Int
        var examplesPerSecond: Double
        var trainSeconds: Double
    }

    func writeChart(_ rows: [Row], to path: String) throws {
        var names = [String]()
        for row in rows where !names.contains(row.objective) { names.append(row.objective) }
        func series(_ value: (Row) -> Double) -> [ChartSeries] {
            names.enumerated().map { i, name in
                ChartSeries(name: name == "elbo" ? "VAE (ELBO)" : name.uppercased(),
                            points: rows.filter { $0.objective == name }.map { (Double($0.k), value($0)) },
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
