import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

struct GradStats: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grad-stats",
        abstract: "Signal-to-noise ratio and variance of the gradient estimators (Rainforth et al. 2018) on a fixed batch, per parameter group, the slope of log SNR against log K, and the figure (--plot).")

    @Argument(help: "Training output directory (or model.safetensors); omit with --fresh.") var checkpoint: String?
    @Flag(help: "Use a freshly initialized model of the default architecture instead of a checkpoint.") var fresh = false
    @OptionGroup var dataOptions: DataOptions
    @Option(help: "Estimators, comma-separated: reparam, score, score-vimco, stl, dreg.") var estimators = "reparam,score,stl,dreg"
    @Option(help: "K values, comma-separated (per group with --ms).") var ks = PositiveIntegers([1, 10, 100])
    @Option(help: "miwae, piwae: M values, comma-separated (one series of K per M).") var ms = PositiveIntegers([1])
    @Option(help: "Independent gradient draws per estimator and K.") var draws = 100
    @Option(help: "Examples in the fixed batch (the first test images).") var batch = 20
    @Option(help: "Bound whose gradient is estimated: iwae, elbo, miwae, ciwae or piwae.") var objective = BoundKind.iwae
    @Option(help: "ciwae: β, the ELBO's share.") var beta: Double?
    @Option(help: "Seed of the draws (and of --fresh initialization).") var seed: UInt64 = 1
    @Option(help: "Write the figure: a PNG of SNR against K on log–log axes, one panel per parameter group, one line per estimator and M.") var plot: String?
    @Flag(help: "One JSON object per estimator, M, parameter group and K instead of the tables.") var json = false

    func run() throws {
        guard objective != .elboAnalytic else { throw IWAEError.invalidArgument("--objective must not be elbo-analytic (its encoder gradient is in closed form)") }
        guard !estimators.isEmpty else { throw IWAEError.invalidArgument("--estimators must name at least one estimator") }
        let estimatorList = try estimators.split(separator: ",", omittingEmptySubsequences: false).map { name in
            let (estimator, baseline) = try Objective.estimator(named: String(name))
            return (String(name), estimator, baseline)
        }
        guard draws >= 2 else { throw IWAEError.invalidArgument("--draws must be at least 2, got \(draws)") }
        guard batch >= 1 else { throw IWAEError.invalidArgument("--batch must be at least 1, got \(batch)") }
        if let plot, !plot.hasSuffix(".png") { throw IWAEError.invalidArgument("--plot must name a .png file, got \(plot)") }
        // Combinations an estimator does not support (VIMCO at K = 1) are skipped; none at all is an error.
        var series = [SNRSeries]()
        var skipped = [(String, Error)]()
        for (name, e, b) in estimatorList {
            for m in ms.values {
                var cells = [Objective]()
                for k in ks.values {
                    do { cells.append(try Objective(objective, samplesPerExample: k, estimator: e, baseline: b, groups: m, beta: beta)) }
                    catch { skipped.append(("\(name) at M=\(m), K=\(k)", error)) }
                }
                if !cells.isEmpty { series.append(SNRSeries(name: name, groups: m, objectives: cells)) }
            }
        }
        if series.isEmpty, let first = skipped.first { throw first.1 }
        if !json { for (what, why) in skipped { print("skipping \(what): \(why)") } }
        let model: VariationalAutoencoder<Float>
        let test: Examples
        if fresh {
            guard checkpoint == nil else { throw IWAEError.invalidArgument("give a checkpoint or --fresh, not both") }
            let source = try dataOptions.source()
            test = .images(try source.load(.test))
            model = VariationalAutoencoder<Float>(ModelConfiguration(dataDimension: test.dimension), seed: seed)
            try model.initializeOutputLayer(from: try source.load(.train), .glorot)   // as a new run begins
        } else {
            guard let checkpoint else { throw IWAEError.invalidArgument("give a checkpoint directory or --fresh") }
            let loaded = try Checkpoint.load(from: checkpoint)
            model = loaded.model
            test = try loadTestSet(dataOptions, checkpoint: loaded).examples
        }
        // The buffers of the largest M·K draws per example, for the model loaded.
        try TrainingOptions.checkBufferMemory(samples: series.flatMap(\.objectives).map(\.drawsPerExample).max()!, batch: batch,
                                              dimension: model.configuration.dataDimension, hidden: model.configuration.widestLayer)
        let x = model.evaluationRows(test.prefix(batch))
        let groups = ParameterGroup.allCases.filter { !model.parameters(of: $0).joined().isEmpty }

        if !json {
            print("gradient statistics: \(objective.rawValue) bound, batch of \(x.matrix.rows) test images, \(draws) draws each; SNR = mean over parameters of |E g| / std g")
            let snrHeaders: [String] = groups.map { group in "\(group.rawValue) SNR".leftPadded(13) }
            let varianceHeaders: [String] = groups.map { group in "\(group.rawValue) variance".leftPadded(18) }
            print("estimator      M     K  ESS/K  " + snrHeaders.joined(separator: " ") + "  " + varianceHeaders.joined(separator: " "))
        }
        var effectiveSampleFractions = [Int: Double]()
        for index in series.indices {
            for objective in series[index].objectives {
                let k = objective.samplesPerExample
                let workers = ModelWorkers(model: model, seed: seed &+ UInt64(k))
                let statistics = try workers.gradientStatistics(x.matrix, objective: objective, draws: draws) { done in
                    ProgressBar.draw("\(series[index].name) M=\(objective.groups) K=\(k)", done: done, total: draws, detail: "")
                }
                ProgressBar.finishLine()
                let summaries = groups.map { statistics[$0]! }
                series[index].points.append(summaries)
                // How far these K draws are from the asymptotic regime (ESS/K near 1): of the model, not the estimator.
                let ess = try effectiveSampleFractions[k] ?? model.effectiveSampleFraction(x.matrix, drawsPerExample: k, repeats: 20,
                                                                                           seed: seed &+ UInt64(k))
                effectiveSampleFractions[k] = ess
                series[index].effectiveSampleFractions.append(ess)
                if !json {
                    print(series[index].name.padding(toLength: 11, withPad: " ", startingAt: 0)
                          + String(format: " %3d %5d  %5.3f  ", objective.groups, k, ess)
                          + summaries.map { String(format: "%13.4f", $0.snr) }.joined(separator: " ") + "  "
                          + summaries.map { String(format: "%18.4g", $0.totalVariance) }.joined(separator: " "))
                }
            }
        }
        // The slope of log SNR against log K, per series and group.
        if !json { print("slope of log SNR against log K (± standard error; Rainforth et al. predict −0.5 for the IWAE encoder, +0.5 for its decoder):") }
        for s in series {
            let ks = s.objectives.map(\.samplesPerExample)
            for (g, group) in groups.enumerated() {
                let snr = s.points.map { $0[g].snr }
                let fit = logLogSlope(ks: ks, snr: snr)
                if json {
                    for (i, k) in ks.enumerated() {
                        let summary = s.points[i][g]
                        print(jsonLine([("estimator", s.name), ("objective", self.objective.rawValue), ("m", s.groups), ("group", group.rawValue),
                                        ("k", k), ("snr", summary.snr), ("slope", fit.slope), ("slope_stderr", fit.standardError),
                                        ("draws", draws), ("variance", summary.totalVariance), ("mean_norm", summary.meanNorm),
                                        ("ess_fraction", s.effectiveSampleFractions[i])]))
                    }
                } else {
                    print("  " + s.name.padding(toLength: 11, withPad: " ", startingAt: 0) + String(format: " M=%-3d ", s.groups)
                          + group.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)
                          + String(format: " %+.3f ± %.3f", fit.slope, fit.standardError))
                }
            }
        }
        if let plot {
            let palette = LineChart.palette
            let charts = groups.enumerated().map { g, group in
                LineChart(title: "\(group.rawValue.uppercased()) SNR", xLabel: "K", yLabel: "SNR", logX: true, logY: true,
                          series: series.enumerated().map { i, s in
                              ChartSeries(name: (s.name + (s.groups > 1 ? " M\(s.groups)" : "")).uppercased(),
                                          points: zip(s.objectives, s.points).map { (Double($0.samplesPerExample), $1[g].snr) },
                                          color: palette[i % palette.count])
                          }).render()
            }
            var image = RGBImage(width: charts.map(\.width).reduce(0, +), height: charts.map(\.height).max()!)
            var left = 0
            for chart in charts { image.draw(chart, at: left, 0); left += chart.width }
            try writeFileAtomically(try image.png(), to: plot)
            if !json { print("plot: \(plot)") }
        }
    }
}

/// One line of the SNR figure: an estimator at one M, its objectives in
/// increasing K, and each one's summary per parameter group.
private struct SNRSeries {
    var name: String
    var groups: Int
    var objectives: [Objective]
    var points: [[(meanNorm: Double, totalVariance: Double, snr: Double)]] = []
    /// Mean ESS / K of one group's K draws, per objective.
    var effectiveSampleFractions: [Double] = []
}
