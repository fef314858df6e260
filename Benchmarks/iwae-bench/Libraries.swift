import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

/// The product libraries in whole training steps: the plan `--gemm auto`
/// makes (each site timed alone) against every site on oneDNN and every
/// site on OpenBLAS, same build, same model, timed alternately round after
/// round (A B C C B A …); each plan's ratio to auto is the median of the
/// rounds' own ratios. A product timed alone cannot see what its neighbours
/// in the step do to the caches; this sees the whole step.
struct Libraries: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The plan --gemm auto makes against all-oneDNN and all-OpenBLAS plans, in whole training steps timed alternately (a worker per core); the median over rounds of each round's ratio to auto.")

    @OptionGroup var shapes: StepShapes
    @Option(help: "Alternating rounds; each times every plan once.") var rounds = 9
    @Option(help: "Seconds of each timing in a round.") var seconds: Double = 0.3
    @Option(help: "A trained model (training output directory) to time instead of a fresh one (784-200-200-50).")
    var model: String?

    func run() throws {
        guard rounds >= 1, seconds > 0 else { throw IWAEError.invalidArgument("--rounds must be at least 1 and --seconds positive") }
        let (images, mean) = benchmarkImages(count: shapes.batches.values.max()!)
        func makeModel() throws -> VariationalAutoencoder<Float> { try modelToTime(model, mean: mean) }
        _ = try makeModel()   // a bad --model fails before anything is printed
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let choices: [GEMMChoice] = [.auto, .onednn, .openblas]
        print("CPU \(Processor.current.summary); OpenBLAS \(BLASLibrary.coreName); \(cores) workers; \(rounds) alternating rounds of \(seconds) s per plan")
        print("  B    K   auto ms   onednn/auto   openblas/auto   auto's plan")
        for batch in shapes.batches.values {
            for k in shapes.ks.values {
                let timers = try choices.map { try StepTimer(batch: batch, k: k, workers: cores, images: images, model: makeModel(), gemm: $0, precision: .fp32) }
                var times = Array(repeating: [Double](), count: timers.count)
                for round in 0..<rounds {
                    for i in round % 2 == 0 ? Array(timers.indices) : timers.indices.reversed() {
                        times[i].append(try timers[i].time(seconds: seconds).perStep)
                    }
                }
                func ratio(_ i: Int) -> Double { median(zip(times[i], times[0]).map { $0 / $1 }) }
                print(String(format: "%3d %4d  %8.3f   %11.3f   %13.3f   ", batch, k, median(times[0]) * 1e3, ratio(1), ratio(2)) + timers[0].pool.plan.grouped)
            }
        }
    }
}
