import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

/// bf16 against fp32 in one run: the training steps of `speed` and the
/// k = 5000 evaluation, the two precisions timed alternately, round after
/// round, in the order A B B A, so that a neighbour's load falls on both;
/// the ratio is the median of the rounds' own ratios (pair by pair).
struct Precisions: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "bf16 against fp32, same build, same run, alternating: each training step at both layouts (one worker on all cores, a worker per core) and the k=5000 evaluation; the median over rounds of each round's bf16/fp32 ratio, at the faster layouts.")

    @OptionGroup var shapes: StepShapes
    @Option(help: "Alternating rounds; each times every precision and layout once.") var rounds = 5
    @Option(help: "Seconds of each timing in a round.") var seconds: Double = 0.4
    @Option(help: "Test images of the k=5000 evaluation (0 to skip).") var evalImages: Int = 1000
    @Option(help: "Rounds of the evaluation (each runs iwae evaluate in fp32 and in bf16).") var evalRounds = 3
    @Option(help: "A trained model (training output directory). Default: one trained here for --train-epochs on Fashion-MNIST (IWAE, K = 5, batch 100).")
    var model: String?
    @Option(help: "Epochs of the model trained here when --model is not given (0: a fresh 784-200-200-50 model).") var trainEpochs = 1
    @Flag(help: "One JSON object per case instead of a table.") var json = false

    func run() throws {
        guard rounds >= 1, evalRounds >= 1 else { throw IWAEError.invalidArgument("--rounds and --eval-rounds must be at least 1") }
        guard seconds > 0, evalImages >= 0 else { throw IWAEError.invalidArgument("--seconds must be positive and --eval-images at least 0") }
        guard trainEpochs >= 0 else { throw IWAEError.invalidArgument("--train-epochs must be at least 0, got \(trainEpochs)") }
        let trained = try TrainedModel(directory: model, configuration: ModelConfiguration(dataDimension: 784), epochs: trainEpochs, quiet: json)
        defer { trained?.removeIfMadeHere() }
        let configuration = trained?.configuration ?? ModelConfiguration(dataDimension: 784)
        let (images, mean) = benchmarkImages(count: shapes.batches.values.max()!)
        func makeModel() throws -> VariationalAutoencoder<Float> { try trained?.load() ?? freshModel(configuration, mean: mean) }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let layouts = Set([1, cores]).sorted()
        if !json {
            print("CPU \(Processor.current.summary); OpenBLAS \(BLASLibrary.coreName), \(cores) cores; bf16 units: \(BFloat16Units.current.name)")
            print("model: \(trained?.description ?? "fresh"); \(rounds) alternating rounds of \(seconds) s per precision and layout; ms: medians; ratio: the median of the rounds' bf16 / fp32, at the faster layouts (at most 1.03: never slower)")
            print(" B    K   fp32 ms (layout)     bf16 ms (layout)     bf16/fp32   bf16 plan")
        }
        var worst = 0.0
        for batch in shapes.batches.values {
            for k in shapes.ks.values {
                var timers = [(Precision, Int, StepTimer)]()
                for layout in layouts {
                    for precision in Precision.allCases {
                        timers.append((precision, layout, try StepTimer(batch: batch, k: k, workers: layout, images: images, model: makeModel(),
                                                                        gemm: .auto, precision: precision)))
                    }
                }
                var times = Array(repeating: [Double](), count: timers.count)
                var layoutRunning: Int?
                for round in 0..<rounds {
                    // A B B A: every other round backwards, so that no timer always follows the same one.
                    let order = round % 2 == 0 ? Array(timers.indices) : timers.indices.reversed()
                    for i in order {
                        // A layout whose products run on OpenMP's threads leaves them spinning
                        // for a while after: at a change of layout, an untimed run first.
                        if timers[i].1 != layoutRunning { _ = try timers[i].2.time(seconds: 0.01); layoutRunning = timers[i].1 }
                        times[i].append(try timers[i].2.time(seconds: seconds).perStep)
                    }
                }
                func best(_ precision: Precision) -> (index: Int, ms: Double, layout: Int, plan: ComputePlan) {
                    let candidates = timers.indices.filter { timers[$0].0 == precision }
                        .map { (index: $0, ms: median(times[$0]) * 1e3, layout: timers[$0].1, plan: timers[$0].2.pool.plan) }
                    return candidates.min { $0.ms < $1.ms }!
                }
                let (fp32, bf16) = (best(.fp32), best(.bf16))
                // Pair by pair: a round's two timings are close in time, so the machine's drift over the run cancels.
                let ratio = median(zip(times[bf16.index], times[fp32.index]).map { $0 / $1 })
                worst = max(worst, ratio)
                func mode(_ layout: Int) -> String { layout == 1 ? "blas-threads=\(cores)" : "workers=\(layout)" }
                if json {
                    print(jsonLine([("case", "train_step"), ("batch", batch), ("k", k), ("fp32_ms_per_step", fp32.ms), ("fp32_mode", mode(fp32.layout)),
                                    ("bf16_ms_per_step", bf16.ms), ("bf16_mode", mode(bf16.layout)), ("bf16_over_fp32", ratio),
                                    ("bf16_plan", bf16.plan.grouped), ("rounds", rounds)]))
                } else {
                    print(String(format: "%3d %4d  %8.3f %-13@ %8.3f %-13@ %6.3f%@   ", batch, k, fp32.ms, "(\(mode(fp32.layout)))" as NSString,
                                 bf16.ms, "(\(mode(bf16.layout)))" as NSString, ratio, (ratio > 1.03 ? " !" : "  ") as NSString)
                          + bf16.plan.grouped)
                }
            }
        }
        if evalImages > 0 {
            let evaluated = try makeModel()
            var evaluationSeconds = [Precision: [Double]]()
            for round in 0..<evalRounds {
                for precision in round % 2 == 0 ? Precision.allCases : Precision.allCases.reversed() {
                    evaluationSeconds[precision, default: []].append(try timeEvaluation(images: evalImages, k: 5000, model: evaluated, precision: precision).seconds)
                }
            }
            let (fp32, bf16) = (median(evaluationSeconds[.fp32]!), median(evaluationSeconds[.bf16]!))
            let ratio = median(zip(evaluationSeconds[.bf16]!, evaluationSeconds[.fp32]!).map { $0 / $1 })
            worst = max(worst, ratio)
            if json {
                print(jsonLine([("case", "evaluate"), ("batch", evalImages), ("k", 5000), ("fp32_seconds", fp32), ("bf16_seconds", bf16),
                                ("bf16_over_fp32", ratio), ("rounds", evalRounds)]))
            } else {
                print(String(format: "evaluation, k=5000 on %d test images (iwae evaluate, whole process, medians of %d each): fp32 %.2f s, bf16 %.2f s, bf16/fp32 %.3f (median of the rounds' ratios)%@",
                             evalImages, evalRounds, fp32, bf16, ratio, (ratio > 1.03 ? " !" : "") as NSString))
            }
        }
        if !json { print(String(format: "worst bf16/fp32: %.3f", worst)) }
    }
}

/// The median of `values` (the mean of the middle two for an even count).
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    let n = sorted.count
    return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
}
