import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

/// The training step's worker layouts in whole steps: the workers spread
/// over the cores, the workers in turn on one core, and the layout
/// training uses (chosen step by step from the steps' times,
/// `LayoutChooser`), timed alternately round after round (A B C C B A …).
/// Where the host moves two virtual cores near and apart within seconds,
/// the better fixed layout changes from round to round; the chosen one
/// should follow it. Each ratio is the median of the rounds' own ratios;
/// "of best" compares the chosen layout with the faster fixed one of the
/// same round.
struct Layouts: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The training step with its workers spread over the cores, in turn on one core, and as training chooses (by timing the steps as they run), alternating; medians over rounds of each round's ratios.")

    @OptionGroup var steps: AlternatingSteps
    @Flag(help: "Print every round's times (ms per step: spread, in turn, chosen).") var eachRound = false

    func run() throws {
        let (images, makeModel) = try steps.prepare()
        let cores = ProcessInfo.processInfo.activeProcessorCount
        guard cores > 1 else { throw IWAEError.invalidArgument("one core: the layouts are the same") }
        print("CPU \(Processor.current.summary); OpenBLAS \(BLASLibrary.coreName); \(cores) workers; \(steps.rounds) alternating rounds of \(steps.seconds) s per layout")
        print("  B    K  spread ms  in turn ms  chosen ms  chosen/spread  chosen/in turn  chosen/best  chosen in turn")
        let fixed: [WorkerLayout?] = [.spread, .inTurn, nil]
        for batch in steps.shapes.batches.values {
            for k in steps.shapes.ks.values {
                let timers = try fixed.map { layout in
                    let timer = try StepTimer(batch: batch, k: k, workers: cores, images: images, model: makeModel(), gemm: .auto, precision: .fp32)
                    timer.pool.fixedLayout = layout
                    return timer
                }
                let chosen = timers[2].pool
                let before = WorkerLayout.allCases.map { chosen.layouts.steps(in: $0) }
                let times = try steps.time(timers) { times in
                    if eachRound { print("       " + times.map { String(format: "%8.3f", $0.last! * 1e3) }.joined(separator: " ")) }
                }
                let counted = WorkerLayout.allCases.map { chosen.layouts.steps(in: $0) }
                let inTurn = Double(counted[1] - before[1]) / Double(Swift.max(1, counted[0] + counted[1] - before[0] - before[1]))
                func ratio(_ i: Int, _ j: Int) -> Double { AlternatingSteps.ratio(times, i, j) }
                let ofBest = median(times[2].indices.map { times[2][$0] / Swift.min(times[0][$0], times[1][$0]) })
                print(String(format: "%3d %4d  %9.3f  %10.3f  %9.3f  %13.3f  %14.3f  %11.3f  %13.0f %%", batch, k,
                             median(times[0]) * 1e3, median(times[1]) * 1e3, median(times[2]) * 1e3,
                             ratio(2, 0), ratio(2, 1), ofBest, 100 * inTurn))
            }
        }
    }
}
