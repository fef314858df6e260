import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

struct GradStats: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grad-stats",
        abstract: "Signal-to-noise ratio and variance of the gradient estimators (Rainforth et al. 2018) on a fixed batch.")

    @Argument(help: "Training output directory (or model.safetensors); omit with --fresh.") var checkpoint: String?
    @Flag(help: "Use a freshly initialized model of the default architecture instead of a checkpoint.") var fresh = false
    @OptionGroup var dataOptions: DataOptions
    @Option(help: "Estimators, comma-separated: reparam, score, score-vimco, stl, dreg.") var estimators = "reparam,score,stl,dreg"
    @Option(help: "K values, comma-separated.") var ks = PositiveIntegers([1, 10, 100])
    @Option(help: "Independent gradient draws per estimator and K.") var draws = 100
    @Option(help: "Examples in the fixed batch (the first test images).") var batch = 20
    @Option(help: "Bound whose gradient is estimated: iwae or elbo.") var objective = BoundKind.iwae
    @Option(help: "Seed of the draws (and of --fresh initialization).") var seed: UInt64 = 1
    @Option(help: "Write a PNG plot of SNR against K.") var plot: String?
    @Flag(help: "One JSON object per estimator and K instead of the table.") var json = false

    func run() throws {
        guard objective != .elboAnalytic else { throw IWAEError.invalidArgument("--objective must be iwae or elbo, got elbo-analytic") }
        let kList = ks.values
        guard !estimators.isEmpty else { throw IWAEError.invalidArgument("--estimators must name at least one estimator") }
        let estimatorList = try estimators.split(separator: ",", omittingEmptySubsequences: false).map { name in
            let (estimator, baseline) = try Objective.estimator(named: String(name))
            return (String(name), estimator, baseline)
        }
        guard draws >= 2 else { throw IWAEError.invalidArgument("--draws must be at least 2, got \(draws)") }
        guard batch >= 1 else { throw IWAEError.invalidArgument("--batch must be at least 1, got \(batch)") }
        if let plot, !plot.hasSuffix(".png") { throw IWAEError.invalidArgument("--plot must name a .png file, got \(plot)") }
        // Combinations an estimator does not support (VIMCO at K = 1) are skipped; none at all is an error.
        var cells = [(name: String, objective: Objective)]()
        var skipped = [(String, Error)]()
        for (name, e, b) in estimatorList {
            for k in kList {
                do {
                    cells.append((name, try Objective(objective, samplesPerExample: k, estimator: e, baseline: b)))
                } catch {
                    skipped.append(("\(name) at K=\(k)", error))
                }
            }
        }
        if cells.isEmpty, let first = skipped.first { throw first.1 }
        if !json { for (what, why) in skipped { print("skipping \(what): \(why)") } }
        try TrainingOptions.checkBufferMemory(samples: kList.max()!, batch: batch, dimension: 784, hidden: 200)

        let model: VariationalAutoencoder<Float>
        let test: ImageSet
        if fresh {
            guard checkpoint == nil else { throw IWAEError.invalidArgument("give a checkpoint or --fresh, not both") }
            let source = try dataOptions.source()
            test = try source.load(.test)
            model = VariationalAutoencoder<Float>(ModelConfiguration(dataDimension: test.dimension), seed: seed)
            model.initializeOutputBias(dataMean: try source.load(.train).pixelMean)
        } else {
            guard let checkpoint else { throw IWAEError.invalidArgument("give a checkpoint directory or --fresh") }
            let loaded = try Checkpoint.load(from: checkpoint)
            model = loaded.model
            test = try loadTestSet(dataOptions, checkpoint: loaded).images
        }
        let examples = test.prefix(batch)
        let binary = model.evaluationImages(examples)
        let x = Tensor<Float>(shape: [binary.count, binary.dimension], values: binary.pixels)
        let encoderRange = model.encoderParameters, decoderRange = model.decoderParameters

        var rows = [(name: String, k: Int, encoder: (Double, Double, Double), decoder: (Double, Double, Double))]()
        if !json {
            print("gradient statistics: \(objective.rawValue) bound, batch of \(x.matrix.rows) test images, \(draws) draws each; SNR = mean over parameters of |E g| / std g")
            print("estimator        K   encoder SNR   decoder SNR   encoder variance   decoder variance   ‖E g_enc‖   ‖E g_dec‖")
        }
        for (name, cellObjective) in cells {
            let k = cellObjective.samplesPerExample
            do {
                let workers = ModelWorkers(model: model, seed: seed &+ UInt64(k))
                let moments = GradientMoments(count: model.store.values.count)
                for draw in 0..<draws {
                    try workers.stepGradient(x.matrix, objective: cellObjective)
                    workers.collectGradient()
                    moments.add(model.store.gradients.pointer)
                    ProgressBar.draw("\(name) K=\(k)", done: draw + 1, total: draws, detail: "")
                }
                ProgressBar.finishLine()
                let e = moments.summary(encoderRange), d = moments.summary(decoderRange)
                rows.append((name, k, (e.snr, e.totalVariance, e.meanNorm), (d.snr, d.totalVariance, d.meanNorm)))
                if json {
                    print(jsonLine([("estimator", name), ("k", k), ("draws", draws), ("encoder_snr", e.snr), ("decoder_snr", d.snr),
                                    ("encoder_variance", e.totalVariance), ("decoder_variance", d.totalVariance),
                                    ("encoder_mean_norm", e.meanNorm), ("decoder_mean_norm", d.meanNorm)]))
                } else {
                    print(name.padding(toLength: 12, withPad: " ", startingAt: 0)
                          + String(format: " %5d %13.4f %13.4f %18.4g %18.4g %11.4g %11.4g", k, e.snr, d.snr, e.totalVariance,
                                   d.totalVariance, e.meanNorm, d.meanNorm))
                }
            }
        }
        if let plot {
            func series(_ pick: @escaping (((Double, Double, Double), (Double, Double, Double))) -> Double) -> [ChartSeries] {
                estimatorList.enumerated().map { i, entry in
                    ChartSeries(name: entry.0.uppercased(), points: rows.filter { $0.name == entry.0 }.map { (Double($0.k), pick(($0.encoder, $0.decoder))) },
                                color: LineChart.palette[i % LineChart.palette.count])
                }
            }
            let encoderChart = LineChart(title: "ENCODER SNR", xLabel: "K", yLabel: "SNR", logX: true, logY: true, series: series { $0.0.0 }).render()
            let decoderChart = LineChart(title: "DECODER SNR", xLabel: "K", yLabel: "SNR", logX: true, logY: true, series: series { $0.1.0 }).render()
            var image = RGBImage(width: encoderChart.width + decoderChart.width, height: encoderChart.height)
            image.draw(encoderChart, at: 0, 0)
            image.draw(decoderChart, at: encoderChart.width, 0)
            try writeFileAtomically(try image.png(), to: plot)
            if !json { print("plot: \(plot)") }
        }
    }
}
