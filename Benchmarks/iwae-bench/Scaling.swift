import ArgumentParser
import Foundation
import IWAE
import IWAEConsole
import IWAEMPI

/// Data-parallel scaling across MPI ranks on this machine: R ranks × 1
/// worker against one process × R workers, the same training step (gradient,
/// cross-rank sum, Adam), alternated round by round in one run; and the
/// cost of one gradient sum at several sizes, for the model
/// step(N) = compute / N + α + β · bytes.
///
/// Run it plainly: it times the one-process case itself and launches
/// `mpirun -np R iwae-bench scaling …` for the other (the child, seeing
/// mpirun, times the ranks and prints JSON rows). Needs `--traits MPI`.
struct Scaling: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Throughput of R MPI ranks × 1 worker against 1 process × R workers (needs --traits MPI and mpirun).")

    @Option(help: "Batch sizes.") var batches = PositiveIntegers([100])
    @Option(help: "K values.") var ks = PositiveIntegers([5, 50])
    @Option(help: "Ranks (and the one process's workers).") var ranks = 2
    @Option(help: "Reducers to time, comma-separated.") var reducers = CommaSeparated<GradientReducer>([.ordered, .allreduce])
    @Option(help: "Seconds to time each case in each round.") var seconds: Double = 3
    @Option(help: "Rounds, alternating the two layouts; medians are reported.") var rounds = 3
    @Option(help: "Stochastic layers: 1 or 2.") var layers = 1
    @Option(help: "Extra mpirun arguments, space-separated.")
    var mpirunArguments = "--oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none"
    @Flag(help: "One JSON object per row instead of a table.") var json = false

    func run() throws {
        guard layers == 1 || layers == 2 else { throw IWAEError.invalidArgument("--layers must be 1 or 2, got \(layers)") }
        let reducerList = reducers.values
        guard ranks >= 2 else { throw IWAEError.invalidArgument("--ranks must be at least 2, got \(ranks)") }
        guard ProcessLaunch.supportsMPI else {
            throw IWAEError.invalidArgument("scaling needs MPI: build with 'swift build -c release --traits MPI' (Debian: libopenmpi-dev openmpi-bin)")
        }
        if ProcessLaunch.launchedRanks > 1 { return try runAsRank(reducerList) }
        try drive(reducerList)
    }

    var configuration: ModelConfiguration {
        layers == 1 ? ModelConfiguration(dataDimension: 784) : ModelConfiguration.twoLayer(dataDimension: 784)
    }

    /// The parent: one process × R workers here, R ranks by mpirun, alternated.
    private func drive(_ reducerList: [GradientReducer]) throws {
        let (images, mean) = benchmarkImages(count: batches.values.max()!)
        var single = [String: [Double]]()
        var spread = [String: [RankTiming]]()
        let executable = CommandLine.arguments[0]
        for round in 1...rounds {
            for batch in batches.values {
                for k in ks.values {
                    let t = try timeTrainingStep(batch: batch, k: k, workers: ranks, seconds: seconds, images: images,
                                                 model: freshModel(configuration, mean: mean), gemm: .openblas, precision: .fp32)
                    single["\(batch)/\(k)", default: []].append(t.secondsPerStep)
                }
            }
            for reducer in reducerList {
                let arguments = ["-np", "\(ranks)"] + mpirunArguments.split(separator: " ").map(String.init)
                    + [executable, "scaling", "--batches", batches.defaultValueDescription, "--ks", ks.defaultValueDescription,
                       "--ranks", "\(ranks)", "--reducers", reducer.rawValue, "--seconds", "\(seconds)", "--layers", "\(layers)"]
                let rows = try runMPIRun(arguments)
                for row in rows { spread["\(row.batch)/\(row.k)/\(reducer.rawValue)", default: []].append(row) }
            }
            if !json { FileHandle.standardError.write(Data("round \(round)/\(rounds) done\n".utf8)) }
        }
        let median = { (v: [Double]) -> Double in v.sorted()[v.count / 2] }
        if !json {
            print("\(ranks) MPI ranks × 1 worker vs 1 process × \(ranks) workers, \(layers) stochastic layer\(layers == 1 ? "" : "s"), medians of \(rounds) alternating rounds")
            print("  B    K  reducer     1×\(ranks) ms/step  \(ranks)×1 ms/step  ratio  sum ms/step  share  sum alone ms")
        }
        for batch in batches.values {
            for k in ks.values {
                let one = median(single["\(batch)/\(k)"]!)
                for reducer in reducerList {
                    let rows = spread["\(batch)/\(k)/\(reducer.rawValue)"] ?? []
                    guard !rows.isEmpty else { continue }
                    let step = median(rows.map(\.secondsPerStep))
                    let exchange = median(rows.map(\.exchangeSecondsPerStep))
                    let alone = median(rows.map(\.sumAloneSeconds))
                    let fields: [(String, any JSONField)] = [
                        ("case", "scaling"), ("layers", layers), ("batch", batch), ("k", k), ("ranks", ranks), ("reducer", reducer.rawValue),
                        ("single_ms_per_step", one * 1e3), ("ranks_ms_per_step", step * 1e3), ("ratio", one / step),
                        ("exchange_ms_per_step", exchange * 1e3), ("exchange_share", exchange / step), ("sum_alone_ms", alone * 1e3),
                        ("parameters", rows[0].parameters),
                    ]
                    if json { print(jsonLine(fields)) } else {
                        print(String(format: "%3d %4d  %-10@ %12.3f %14.3f %6.3f %12.3f %5.1f%% %13.3f", batch, k, reducer.rawValue as NSString,
                                     one * 1e3, step * 1e3, one / step, exchange * 1e3, 100 * exchange / step, alone * 1e3))
                    }
                }
            }
        }
        // The cost of one sum by size (the last round's child measured it).
        for reducer in reducerList {
            guard let row = spread.first(where: { $0.key.hasSuffix("/" + reducer.rawValue) })?.value.last else { continue }
            let sizes = row.sumSizes, times = row.sumSeconds.map { $0 * 1e3 }
            let fit = fitLatencyBandwidth(bytes: sizes.map { Double($0 * 4) }, seconds: row.sumSeconds)
            let fields: [(String, any JSONField)] = [("case", "sum_cost"), ("ranks", ranks), ("reducer", reducer.rawValue),
                                           ("floats", sizes), ("ms", times),
                                           ("latency_us", fit.latency * 1e6), ("gb_per_s", 1 / fit.secondsPerByte / 1e9)]
            if json { print(jsonLine(fields)) } else {
                print(String(format: "sum of n floats across %d ranks (%@): ", ranks, reducer.rawValue as NSString)
                      + zip(sizes, times).map { String(format: "n=%d %.3f ms", $0, $1) }.joined(separator: ", ")
                      + String(format: "; fit α = %.1f µs, 1/β = %.2f GB/s", fit.latency * 1e6, 1 / fit.secondsPerByte / 1e9))
            }
        }
    }

    /// Runs mpirun and returns the rows its rank 0 printed.
    private func runMPIRun(_ arguments: [String]) throws -> [RankTiming] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["mpirun"] + arguments
        var environment = ProcessInfo.processInfo.environment
        if getuid() == 0 {
            environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
            environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        }
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let line = String(decoding: errors, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? "status \(process.terminationStatus)"
            throw IWAEError.invalidArgument("mpirun failed: \(line)")
        }
        let rows = String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap {
            try? JSONDecoder().decode(RankTiming.self, from: Data($0.utf8))
        }
        guard rows.count == batches.values.count * ks.values.count else {
            throw IWAEError.invalidArgument("mpirun printed \(rows.count) timing rows, expected \(batches.values.count * ks.values.count)")
        }
        return rows
    }

    /// A child under mpirun: times the step on R ranks and one sum by size;
    /// rank 0 prints a JSON row per case.
    private func runAsRank(_ reducerList: [GradientReducer]) throws {
        #if MPI
        let group = MPIRanks(reducer: reducerList[0])
        defer { group.finish() }
        let (images, mean) = benchmarkImages(count: batches.values.max()!)
        let workers = Swift.max(1, ProcessInfo.processInfo.activeProcessorCount / group.localCount)
        BLASLibrary.threads = 1
        for batch in batches.values {
            for k in ks.values {
                let model = VariationalAutoencoder<Float>(configuration, seed: 1)
                model.initializeOutputBias(dataMean: mean)
                let pool = ModelWorkers(model: model, workers: workers, seed: 2, ranks: group)
                let adam = Adam<Float>(count: model.store.values.count, learningRate: 1e-4)
                let x = MatrixView(images.pointer, rows: batch, columns: 784)
                let objective = try Objective(.iwae, samplesPerExample: k)
                func step() throws {
                    try pool.stepGradient(x, objective: objective)
                    pool.updateParameters(with: adam)
                    _ = group.anyRank(false)   // the training loop's stop check
                }
                let warmupStart = now()
                for _ in 0..<3 { try step() }
                // Rank 0 picks the step count from its warm-up; all ranks run it.
                var count: [UInt64] = [group.rank == 0 ? UInt64(Swift.max(5, seconds / ((now() - warmupStart) / 3))) : 0]
                count.withUnsafeMutableBufferPointer { group.merge($0) }
                let steps = Int(count[0])
                let exchangeBefore = group.exchangeSeconds
                let start = now()
                for _ in 0..<steps { try step() }
                let perStep = (now() - start) / Double(steps)
                let exchange = (group.exchangeSeconds - exchangeBefore) / Double(steps)
                let alone = timeSum(group, count: model.store.values.count)
                let sizes = [1_000, 10_000, 100_000, model.store.values.count]
                let row = RankTiming(batch: batch, k: k, secondsPerStep: perStep, exchangeSecondsPerStep: exchange,
                                     sumAloneSeconds: alone, parameters: model.store.values.count,
                                     sumSizes: sizes, sumSeconds: sizes.map { timeSum(group, count: $0) })
                if group.rank == 0 { print(String(decoding: try JSONEncoder().encode(row), as: UTF8.self)) }
            }
        }
        #endif
    }

    #if MPI
    /// Median seconds of one `sum` of `count` floats, the ranks started together.
    private func timeSum(_ group: MPIRanks, count: Int) -> Double {
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        defer { buffer.deallocate() }
        buffer.update(repeating: 1)
        var times = [Double]()
        for _ in 0..<21 {
            group.barrier()
            let start = now()
            group.sum(buffer)
            times.append(now() - start)
        }
        return times.sorted()[times.count / 2]
    }
    #endif
}

/// What rank 0 of the mpirun child reports for one case.
struct RankTiming: Codable {
    var batch: Int
    var k: Int
    var secondsPerStep: Double
    /// Seconds per step inside `sum` and `merge` (waiting for the other ranks included).
    var exchangeSecondsPerStep: Double
    /// One gradient sum alone, the ranks started together (median).
    var sumAloneSeconds: Double
    var parameters: Int
    var sumSizes: [Int]
    var sumSeconds: [Double]
}

/// Least squares t = α + β · bytes.
func fitLatencyBandwidth(bytes: [Double], seconds: [Double]) -> (latency: Double, secondsPerByte: Double) {
    let n = Double(bytes.count)
    let mx = bytes.reduce(0, +) / n, my = seconds.reduce(0, +) / n
    let sxy = zip(bytes, seconds).reduce(0) { $0 + ($1.0 - mx) * ($1.1 - my) }
    let sxx = bytes.reduce(0) { $0 + ($1 - mx) * ($1 - mx) }
    let beta = sxy / sxx
    return (Swift.max(0, my - beta * mx), beta)
}
