import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

/// The gradient's signal-to-noise ratio against K, Rainforth et al. (2018)'s
/// figure: for a trained model, the SNR of each parameter group (encoder,
/// decoder, prior) under each estimator at each K, on log–log axes, with the
/// fitted slope of each line (`logLogSlope`).
struct SNR: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "SNR of the encoder's, decoder's and prior's gradients against K, one line per group and estimator, on log–log axes (a PNG), with the fitted slopes.")

    @Option(help: "A trained model (training output directory). Default: one trained here for --train-epochs on Fashion-MNIST (IWAE, K = 5, batch 100).")
    var model: String?
    @Option(help: "Epochs of the model trained here when --model is not given.") var trainEpochs = 1
    @Option(help: "K values, comma-separated.") var ks = PositiveIntegers([1, 4, 16, 64])
    @Option(help: "Estimators, comma-separated.") var estimators = CommaSeparated<GradientEstimator>([.reparam, .dreg])
    @Option(help: "Bound whose gradient is measured.") var objective = BoundKind.iwae
    @Option(help: "miwae, piwae: M groups of K draws.") var m = 1
    @Option(help: "ciwae: β, the ELBO's share.") var beta: Double?
    @Option(help: "Independent gradient draws per estimator and K.") var draws = 100
    @Option(help: "Examples in the fixed batch (the first test images).") var batch = 20
    @Option(help: "Seed of the draws.") var seed: UInt64 = 1
    @Option(help: "The figure.") var chart = "iwae-bench-snr.png"
    @Flag(help: "One JSON object per estimator, group and K instead of the tables.") var json = false

    func run() throws {
        guard draws >= 2, batch >= 1 else { throw IWAEError.invalidArgument("--draws must be at least 2 and --batch at least 1") }
        guard chart.hasSuffix(".png") else { throw IWAEError.invalidArgument("--chart must name a .png file") }
        let lines = try estimators.values.map { estimator in
            try ks.values.map { try Objective(objective, samplesPerExample: $0, estimator: estimator, groups: m, beta: beta) }
        }
        try TrainingOptions.checkBufferMemory(samples: lines.joined().map(\.drawsPerExample).max()!, batch: batch, dimension: 784, hidden: 200)
        guard let trained = try TrainedModel(directory: model, configuration: ModelConfiguration(dataDimension: 784),
                                             epochs: trainEpochs, quiet: json) else {
            throw IWAEError.invalidArgument("no model: give --model DIR, or install dataset-fashion-mnist and leave --train-epochs at least 1")
        }
        defer { trained.removeIfMadeHere() }
        let network = try trained.load()
        let test = try MNISTFormatDataset.load("fashion-mnist", split: .test).prefix(batch)
        let binary = network.evaluationImages(test)
        let x = Tensor<Float>(shape: [binary.count, binary.dimension], values: binary.pixels)
        let groups = ParameterGroup.allCases.filter { !network.parameters(of: $0).joined().isEmpty }
        if !json {
            print("SNR against K: \(trained.description); \(objective.rawValue) bound, batch of \(batch) test images, \(draws) draws per point")
        }
        var series = [ChartSeries]()
        for (e, line) in lines.enumerated() {
            var snr = [ParameterGroup: [Double]]()
            for objective in line {
                let workers = ModelWorkers(model: network, seed: seed &+ UInt64(objective.samplesPerExample))
                let statistics = try workers.gradientStatistics(x.matrix, objective: objective, draws: draws) { done in
                    ProgressBar.draw("\(objective.estimator.rawValue) K=\(objective.samplesPerExample)", done: done, total: draws, detail: "")
                }
                ProgressBar.finishLine()
                for group in groups { snr[group, default: []].append(statistics[group]!.snr) }
            }
            for (g, group) in groups.enumerated() {
                let values = snr[group]!, fit = logLogSlope(ks: ks.values, snr: values)
                let estimator = estimators.values[e].rawValue
                if json {
                    for (k, value) in zip(ks.values, values) {
                        print(jsonLine([("estimator", estimator), ("objective", objective.rawValue), ("m", m), ("group", group.rawValue),
                                        ("k", k), ("snr", value), ("slope", fit.slope), ("slope_stderr", fit.standardError)]))
                    }
                } else {
                    print(estimator.padding(toLength: 8, withPad: " ", startingAt: 0) + group.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
                          + zip(ks.values, values).map { String(format: "  K=%d %.4f", $0, $1) }.joined()
                          + String(format: "   slope %+.3f ± %.3f", fit.slope, fit.standardError))
                }
                series.append(ChartSeries(name: "\(group.rawValue) \(estimator)".uppercased(), points: zip(ks.values, values).map { (Double($0), $1) },
                                          color: LineChart.palette[(e * groups.count + g) % LineChart.palette.count]))
            }
        }
        let image = LineChart(title: "GRADIENT SNR", xLabel: "K", yLabel: "SNR", logX: true, logY: true, series: series).render()
        try writeFileAtomically(try image.png(), to: chart)
        if !json { print("chart: \(chart)") }
    }
}
