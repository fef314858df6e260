// The measurements behind `iwae-bench speed` (and `scaling`): models to time,
// a training step's time and phases, the k-sample evaluation, the batched
// Cholesky factorization.
import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

/// A fresh model of `configuration` (seed 1), its output bias at the logit of the pixel means.
func freshModel(_ configuration: ModelConfiguration, mean: [Float]) -> VariationalAutoencoder<Float> {
    let model = VariationalAutoencoder<Float>(configuration, seed: 1)
    if configuration.dataDimension == mean.count { model.initializeOutputBias(dataMean: mean) }
    return model
}

/// The products' library and precision, as `speed` and `products` take them.
struct ProductOptions: ParsableArguments {
    @Option(help: "Library of the products: auto (the faster per product, as training plans them), openblas or onednn.")
    var gemm = GEMMChoice.auto
    @Option(help: "Inputs of the products: fp32, or bf16 (rounded to bfloat16, accumulated in fp32).")
    var precision = Precision.fp32
}

/// The training steps' shapes, as `speed`, `libraries` and `precisions` take them.
struct StepShapes: ParsableArguments {
    @Option(help: "Batch sizes of the training step.") var batches = PositiveIntegers([20, 100])
    @Option(help: "K values of the training step.") var ks = PositiveIntegers([1, 5, 50])
}

/// The faster of one worker with all cores in BLAS and one worker per core
/// (training's own layout), timed on fresh models.
func fastestLayout(cores: Int, _ time: (Int) throws -> StepTiming) rethrows -> StepTiming {
    var best: StepTiming?
    for workers in Set([1, cores]).sorted() {
        let timing = try time(workers)
        if best == nil || timing.secondsPerStep < best!.secondsPerStep { best = timing }
    }
    return best!
}

/// The model saved in `directory` (a training output directory, `--model`),
/// refused unless it models 784-pixel images as the benchmarks' images are.
func loadModelToTime(_ directory: String) throws -> Checkpoint {
    let loaded = try Checkpoint.load(from: directory)
    guard loaded.model.configuration.dataDimension == 784 else {
        throw IWAEError.invalidArgument("--model must be a model of 784-pixel images, got \(loaded.model.configuration.dataDimension)")
    }
    return loaded
}

/// `--model`'s model, or without one a fresh 784-200-200-50 model with its
/// output bias at `mean`.
func modelToTime(_ directory: String?, mean: [Float]) throws -> VariationalAutoencoder<Float> {
    try directory.map { try loadModelToTime($0).model } ?? freshModel(ModelConfiguration(dataDimension: 784), mean: mean)
}

/// The trained model `iwae-bench speed` times beside a fresh one: a
/// checkpoint given with --model, or one trained here on Fashion-MNIST.
struct TrainedModel {
    var checkpoint: String
    var description: String
    var configuration: ModelConfiguration
    /// Whether `checkpoint` is a directory made here, removed by `removeIfMadeHere`.
    private var madeHere = false

    /// nil when there is nothing to train on or `epochs` is 0.
    init?(directory: String?, configuration: ModelConfiguration, epochs: Int, quiet: Bool) throws {
        if let directory {
            let loaded = try loadModelToTime(directory)
            checkpoint = directory
            self.configuration = loaded.model.configuration
            let objective = loaded.training?.options.objective
            description = "\(directory) (" + (objective.map { "\($0.bound.rawValue), K = \($0.samplesPerExample)" } ?? "no training record")
                + (loaded.trainingState.map { ", \($0.step) steps" } ?? "") + ")"
            return
        }
        guard epochs > 0, let train = try? MNISTFormatDataset.load("fashion-mnist", split: .train) else { return nil }
        let path = NSTemporaryDirectory() + "iwae-bench-trained-\(getpid())"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let model = VariationalAutoencoder<Float>(configuration, seed: 1)
        let options = try TrainingOptions(objective: try Objective(.iwae, samplesPerExample: 5), epochs: epochs, batchSize: 100, learningRate: 1e-3, seed: 1)
        let start = now()
        try Trainer(model: model, options: options, validation: nil).train(train)
        try Checkpoint(model: model, data: .files("fashion-mnist")).save(to: path)
        checkpoint = path
        madeHere = true
        self.configuration = configuration
        description = String(format: "IWAE, K = 5, %d epoch(s) of %d Fashion-MNIST images, batch 100, Adam 10⁻³, seed 1, here (%.1f s)",
                              epochs, train.count, now() - start)
    }

    func removeIfMadeHere() { if madeHere { try? FileManager.default.removeItem(atPath: checkpoint) } }

    /// A new copy of the trained model, for one timing.
    func load() throws -> VariationalAutoencoder<Float> { try Checkpoint.load(from: checkpoint).model }
}

/// The sgemm peak measured just before and just after a case.
struct BracketingPeak {
    var before: Double
    var after: Double
    /// The larger: a case's fraction of it is never flattered by one slow measurement.
    var gflops: Double { Swift.max(before, after) }
    /// How far the two differ, relative to the larger.
    var moved: Double { abs(before - after) / gflops }
}

/// Runs `body` between two measurements of the sgemm peak.
func bracketedByPeak<T>(_ body: () throws -> T) rethrows -> (T, BracketingPeak) {
    let before = measureSGEMMPeak()
    let value = try body()
    return (value, BracketingPeak(before: before, after: measureSGEMMPeak()))
}

struct StepTiming {
    var mode: String
    var workers: Int
    /// The products' kernels.
    var plan: ComputePlan
    var secondsPerStep: Double
    var flops: Double
    /// Fractions of the workers' time in each `PhaseProfiler.Phase`.
    var phases: [Double]
}

/// Whole training steps (gradient and Adam update) of one model on a fixed
/// batch, with the plan of product libraries a training run of this shape
/// makes (`Trainer`), ready to be timed again and again.
final class StepTimer {
    let pool: ModelWorkers<Float>
    let adam: Adam<Float>
    let x: MatrixView<Float>
    let objective: Objective
    let workers: Int

    init(batch: Int, k: Int, workers: Int, images: Tensor<Float>, model: VariationalAutoencoder<Float>, gemm: GEMMChoice,
         precision: Precision) throws {
        BLASLibrary.threads = workers == 1 ? ProcessInfo.processInfo.activeProcessorCount : 1
        pool = ModelWorkers(model: model, workers: workers, seed: 2)
        pool.plan = model.computePlan(gemm, precision: precision, examples: (batch + workers - 1) / workers, drawsPerExample: k,
                                      threads: BLASLibrary.threads)
        adam = Adam<Float>(count: model.store.values.count, learningRate: 1e-4)
        x = MatrixView(images.pointer, rows: batch, columns: 784)
        objective = try Objective(.iwae, samplesPerExample: k)
        self.workers = workers
        // Warm-up: three steps, and with several workers until the layout
        // chooser has timed both layouts (its first probe, a start-up cost
        // that a training run pays once, not a step's).
        var warm = 0
        while warm < 3 || (workers > 1 && warm < 64 && WorkerLayout.allCases.contains { pool.layouts.estimate($0) == nil }) {
            try step()
            warm += 1
        }
    }

    func step() throws {
        try pool.stepGradient(x, objective: objective)
        pool.updateParameters(with: adam)
    }

    /// Seconds per step over about `seconds` (at least 5 steps), and the step count.
    func time(seconds: Double) throws -> (perStep: Double, steps: Int) {
        BLASLibrary.threads = workers == 1 ? ProcessInfo.processInfo.activeProcessorCount : 1
        var steps = 0
        let start = now()
        while now() - start < seconds || steps < 5 { try step(); steps += 1 }
        return ((now() - start) / Double(steps), steps)
    }

    /// Fractions of the workers' time in each `PhaseProfiler.Phase` over `steps` steps.
    func phases(steps: Int) throws -> [Double] {
        let profilers = pool.replicas.map { _ in PhaseProfiler() }
        for (replica, profiler) in zip(pool.replicas, profilers) { replica.profiler = profiler }
        defer { for replica in pool.replicas { replica.profiler = nil } }
        let start = now()
        for _ in 0..<steps { try step() }
        let wall = (now() - start) * Double(workers)
        return PhaseProfiler.Phase.allCases.map { phase in profilers.reduce(0) { $0 + $1.seconds(phase) } / wall }
    }

    /// The figures of one timing: `perStep` seconds, `phases` as `phases(steps:)` gives them.
    func timing(perStep: Double, phases: [Double]) -> StepTiming {
        StepTiming(mode: workers == 1 ? "blas-threads=\(BLASLibrary.threads)" : "workers=\(workers)", workers: workers,
                   plan: pool.plan, secondsPerStep: perStep,
                   flops: pool.model.gemmFlopsPerStep(examples: x.rows, drawsPerExample: objective.samplesPerExample), phases: phases)
    }
}

/// Times whole training steps of `model` for about `seconds`, then runs as
/// many again with profilers attached for the phase breakdown.
func timeTrainingStep(batch: Int, k: Int, workers: Int, seconds: Double, images: Tensor<Float>,
                      model: VariationalAutoencoder<Float>, gemm: GEMMChoice, precision: Precision) throws -> StepTiming {
    let timer = try StepTimer(batch: batch, k: k, workers: workers, images: images, model: model, gemm: gemm, precision: precision)
    let (perStep, steps) = try timer.time(seconds: seconds)
    return timer.timing(perStep: perStep, phases: try timer.phases(steps: steps))
}

/// A fresh and a trained model's step time at the same shape, timed in
/// `rounds` alternating rounds (fresh, trained, fresh, …) of `seconds /
/// rounds` each; the best round of each, so that the machine's drift does
/// not pass for a difference between the models.
func timeFreshAndTrained(batch: Int, k: Int, workers: Int, seconds: Double, images: Tensor<Float>,
                         fresh: VariationalAutoencoder<Float>, trained: VariationalAutoencoder<Float>, gemm: GEMMChoice,
                         precision: Precision, rounds: Int = 3) throws -> (fresh: Double, trained: Double) {
    let timers = [try StepTimer(batch: batch, k: k, workers: workers, images: images, model: fresh, gemm: gemm, precision: precision),
                  try StepTimer(batch: batch, k: k, workers: workers, images: images, model: trained, gemm: gemm, precision: precision)]
    var best = [Double.infinity, Double.infinity]
    for _ in 0..<rounds {
        for (i, timer) in timers.enumerated() { best[i] = Swift.min(best[i], try timer.time(seconds: seconds / Double(rounds)).perStep) }
    }
    return (best[0], best[1])
}

/// Runs `iwae evaluate` on `model` as a child process and reads its wall
/// time and peak resident memory.
func timeEvaluation(images: Int, k: Int, model: VariationalAutoencoder<Float>, precision: Precision) throws -> (seconds: Double, flops: Double, peakMemoryMB: Double) {
    let directory = NSTemporaryDirectory() + "iwae-bench-\(getpid())"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    try Checkpoint(model: model, data: .files("fashion-mnist")).save(to: directory)
    let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("iwae")
    guard FileManager.default.isExecutableFile(atPath: executable.path) else {
        throw IWAEError.invalidArgument("cannot find the iwae executable beside iwae-bench (\(executable.path)); build both")
    }
    let process = Process()
    process.executableURL = executable
    process.arguments = ["evaluate", directory, "--k", "\(k)", "--test-examples", "\(images)", "--json", "--precision", precision.rawValue]
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    let start = now()
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let wall = now() - start
    guard process.terminationStatus == 0,
          let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
          let examples = json["examples"] as? Int else {
        throw IWAEError.invalidArgument("iwae evaluate failed (is dataset-fashion-mnist installed?)")
    }
    var usage = rusage()
    getrusage(RUSAGE_CHILDREN.rawValue, &usage)
    return (wall, model.gemmFlopsForLogWeights(examples: examples, drawsPerExample: k), Double(usage.ru_maxrss) / 1024)
}

/// Times `batch` Cholesky factorizations of n×n SPD matrices (best of 20).
func timeCholesky(batch: Int, n: Int) -> (seconds: Double, flops: Double) {
    let rng = Xoshiro256(seed: 5)
    let source = Tensor<Float>(shape: [batch, n, n])
    for b in 0..<batch {
        let a = (0..<n * n).map { _ in rng.uniform(Float.self) - 0.5 }
        for i in 0..<n { for j in 0..<n {
            var s: Float = i == j ? 1 : 0
            for l in 0..<n { s += a[i * n + l] * a[j * n + l] }
            source[b * n * n + i * n + j] = s
        } }
    }
    let work = Tensor<Float>(shape: [batch, n, n])
    var best = Double.infinity
    for _ in 0..<20 {
        work.pointer.update(from: source.pointer, count: source.count)
        let start = now()
        _ = batchedCholesky(work.pointer, batch: batch, n: n)
        best = min(best, now() - start)
    }
    return (best, Double(batch) * Double(n) * Double(n) * Double(n) / 3)
}
