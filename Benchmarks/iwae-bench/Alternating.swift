import ArgumentParser
import IWAE

/// What `libraries` and `layouts` share: variants of one training step
/// (plans of product libraries, worker layouts), each on its own copy of
/// the model, timed alternately round after round (A B C, C B A, …) so that
/// a neighbour's load falls on all of them; each ratio is the median of the
/// rounds' own ratios.
struct AlternatingSteps: ParsableArguments {
    @OptionGroup var shapes: StepShapes
    @Option(help: "Alternating rounds; each times every variant once.") var rounds = 11
    @Option(help: "Seconds of each timing in a round.") var seconds: Double = 0.4
    @Option(help: "A trained model (training output directory) to time instead of a fresh one (784-200-200-50).")
    var model: String?

    /// The images of the largest batch, and a maker of the model to time
    /// (a new copy at each call). Checks the options and loads `--model`
    /// once, so that a bad one fails before anything is printed.
    func prepare() throws -> (images: Tensor<Float>, makeModel: () throws -> VariationalAutoencoder<Float>) {
        guard rounds >= 1, seconds > 0 else { throw IWAEError.invalidArgument("--rounds must be at least 1 and --seconds positive") }
        let (images, mean) = benchmarkImages(count: shapes.batches.values.max()!)
        let makeModel = { [model] in try modelToTime(model, mean: mean) }
        _ = try makeModel()
        return (images, makeModel)
    }

    /// Seconds per step of every timer in every round (`[timer][round]`),
    /// `afterRound` called with those so far after each round.
    func time(_ timers: [StepTimer], afterRound: ([[Double]]) -> Void = { _ in }) throws -> [[Double]] {
        var times = Array(repeating: [Double](), count: timers.count)
        for round in 0..<rounds {
            for i in round % 2 == 0 ? Array(timers.indices) : timers.indices.reversed() {
                times[i].append(try timers[i].time(seconds: seconds).perStep)
            }
            afterRound(times)
        }
        return times
    }

    /// The median over rounds of timer `i`'s time over timer `j`'s.
    static func ratio(_ times: [[Double]], _ i: Int, _ j: Int) -> Double {
        median(zip(times[i], times[j]).map { $0 / $1 })
    }
}
