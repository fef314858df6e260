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

    @OptionGroup var steps: AlternatingSteps

    func run() throws {
        let (images, makeModel) = try steps.prepare()
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let choices: [GEMMChoice] = [.auto, .onednn, .openblas]
        print("CPU \(Processor.current.summary); OpenBLAS \(BLASLibrary.coreName); \(cores) workers; \(steps.rounds) alternating rounds of \(steps.seconds) s per plan")
        print("  B    K   auto ms   onednn/auto   openblas/auto   auto's plan")
        for batch in steps.shapes.batches.values {
            for k in steps.shapes.ks.values {
                let timers = try choices.map { try StepTimer(batch: batch, k: k, workers: cores, images: images, model: makeModel(), gemm: $0, precision: .fp32) }
                let times = try steps.time(timers)
                func ratio(_ i: Int) -> Double { AlternatingSteps.ratio(times, i, 0) }
                print(String(format: "%3d %4d  %8.3f   %11.3f   %13.3f   ", batch, k, median(times[0]) * 1e3, ratio(1), ratio(2)) + timers[0].pool.plan.grouped)
            }
        }
    }
}
