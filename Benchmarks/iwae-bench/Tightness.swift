import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

/// How tight the tight bound is (Mathematics §9): on the same test images,
/// L_K for each K against the AIS estimate of log p(x), paired per image,
/// with the exact log p(x) where the model has one (linear-Gaussian) and
/// BDMC's gap on data simulated from the model.
struct Tightness: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "L_K against K (log axis) on the same test images, with AIS as a line and the BDMC gap on simulated data; a PNG, a table or JSON lines.")

    @Argument(help: "A trained model (training output directory or model.safetensors).") var model: String
    @Option(help: "K values of L_K, comma-separated.") var ks = PositiveIntegers([1, 10, 100, 1000, 5000, 100_000])
    @Option(help: "The first N test images (rows) of the model's data.") var examples = 100
    @Option(help: "AIS and BDMC: intermediate distributions T.") var aisSteps = 1000
    @Option(help: "AIS and BDMC: leapfrog steps per transition.") var leapfrog = 10
    @Option(help: "AIS and BDMC: chains per example.") var chains = 16
    @Option(help: "BDMC: examples simulated from the model (0: no BDMC).") var bdmcExamples = 100
    @Option(help: "Seed of the draws and chains.") var seed: UInt64 = 1
    @Option(help: "Worker threads (default: all active cores).") var threads: Int?
    @Option(help: "The figure.") var chart = "iwae-bench-tightness.png"
    @Flag(help: "JSON lines (one per K, then one for AIS and BDMC) instead of the table.") var json = false

    func run() throws {
        guard chart.hasSuffix(".png") else { throw IWAEError.invalidArgument("--chart must name a .png file") }
        guard examples >= 1, bdmcExamples >= 0 else { throw IWAEError.invalidArgument("--examples must be at least 1 and --bdmc-examples at least 0") }
        let samples = try ks.values.map { try EvaluationSamples($0) }
        let settings = try AISSettings(steps: aisSteps, leapfrogSteps: leapfrog, chains: chains)
        if let t = threads, !(1...TrainingOptions.maximumWorkers).contains(t) {
            throw IWAEError.invalidArgument("--threads must be between 1 and \(TrainingOptions.maximumWorkers), got \(t)")
        }
        let checkpoint = try Checkpoint.load(from: model)
        guard let source = checkpoint.data, let test = try source.loadTest() else {
            throw IWAEError.invalidArgument("\(model) records no data set with test rows")
        }
        let rows = test.prefix(examples), network = checkpoint.model
        let x = network.evaluationRows(rows)
        let workers = ModelWorkers(model: network, workers: threads, seed: seed)
        var started = Date()
        let ais = try workers.annealedImportanceSampling(x.matrix, settings: settings, seed: seed) { done in
            ProgressBar.draw("AIS T=\(aisSteps)", done: done, total: rows.count, detail: "")
        }
        ProgressBar.finishLine()
        let aisSeconds = Date().timeIntervalSince(started)
        guard ais.logLikelihoods.allSatisfy(\.isFinite) else { throw IWAEError.numerical("AIS diverged: no figure written") }
        var bounds = [(k: Int, mean: Double, gap: Double, gapError: Double, seconds: Double)]()
        for s in samples {
            started = Date()
            let estimate = try workers.estimateLogLikelihood(x.matrix, samples: s, seed: seed) { done in
                ProgressBar.draw("L_\(s.perExample)", done: done, total: rows.count, detail: "")
            }
            ProgressBar.finishLine()
            // Paired per image: AIS − L_K.
            let differences = zip(ais.logLikelihoods, estimate.logLikelihoods).map { $0 - $1 }
            bounds.append((s.perExample, estimate.meanLogLikelihood, differences.reduce(0, +) / Double(differences.count),
                           standardErrorOfMean(differences), Date().timeIntervalSince(started)))
        }
        let bdmc = bdmcExamples > 0 ? try workers.bidirectionalMonteCarlo(examples: bdmcExamples, settings: settings, seed: seed) : nil
        let exact = network.isLinearGaussian ? try network.exactLogLikelihood(x.matrix) : nil
        let exactMean = exact.map { $0.reduce(0, +) / Double($0.count) }
        if json {
            for b in bounds {
                print(jsonLine([("k", b.k), ("bound", b.mean), ("ais_minus_bound", b.gap), ("ais_minus_bound_stderr", b.gapError),
                                ("examples", rows.count), ("seconds", b.seconds)]))
            }
            var fields: [(String, any JSONField)] = [("ais", ais.meanLogLikelihood), ("ais_steps", aisSteps), ("leapfrog", leapfrog),
                                                     ("chains", chains), ("acceptance", ais.acceptanceRates.reduce(0, +) / Double(ais.examples)),
                                                     ("examples", rows.count), ("seconds", aisSeconds)]
            if let bdmc {
                fields += [("bdmc_lower", bdmc.lower.meanLogLikelihood), ("bdmc_upper", bdmc.upper.meanLogLikelihood), ("bdmc_gap", bdmc.gap),
                           ("bdmc_examples", bdmcExamples)]
            }
            if let exactMean { fields.append(("exact", exactMean)) }
            print(jsonLine(fields))
        } else {
            print("\(rows.count) test rows of \(source.name); AIS T = \(aisSteps), L = \(leapfrog), \(chains) chains: \(formatted(ais.meanLogLikelihood)) nats (\(formatted(aisSeconds, 1)) s)")
            if let exactMean { print("exact log p(x)     \(formatted(exactMean)) nats (linear-Gaussian)") }
            for b in bounds {
                print("L_\(b.k)".padding(toLength: 10, withPad: " ", startingAt: 0)
                      + "\(formatted(b.mean))   AIS − L_K \(formatted(b.gap, 3)) ± \(formatted(b.gapError, 3)) (paired)")
            }
            if let bdmc {
                print("BDMC on \(bdmcExamples) simulated examples: lower \(formatted(bdmc.lower.meanLogLikelihood)), upper \(formatted(bdmc.upper.meanLogLikelihood)), gap \(formatted(bdmc.gap, 3)) nats")
            }
        }
        let ksAxis = bounds.map { Double($0.k) }
        func flat(_ y: Double) -> [(x: Double, y: Double)] { [(ksAxis.min()!, y), (ksAxis.max()!, y)] }
        var series = [ChartSeries(name: "L_K", points: bounds.map { (Double($0.k), $0.mean) }, color: LineChart.palette[0]),
                      ChartSeries(name: "AIS T=\(aisSteps)", points: flat(ais.meanLogLikelihood), color: LineChart.palette[1])]
        if let bdmc { series.append(ChartSeries(name: "AIS + BDMC GAP", points: flat(ais.meanLogLikelihood + bdmc.gap), color: LineChart.palette[2])) }
        if let exactMean { series.append(ChartSeries(name: "EXACT", points: flat(exactMean), color: LineChart.palette[3])) }
        let image = LineChart(title: "HOW TIGHT IS L_K", xLabel: "K", yLabel: "NATS", logX: true, series: series).render()
        try writeFileAtomically(try image.png(), to: chart)
        if !json { print("chart: \(chart)") }
    }
}
