import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

struct Speed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Training-step, k=5000 evaluation and batched-Cholesky speed, as fractions of the sgemm peak measured in the same run.")

    @Option(help: "Batch sizes of the training step.") var batches = PositiveIntegers([20, 100])
    @Option(help: "K values of the training step.") var ks = PositiveIntegers([1, 5, 50])
    @Option(help: "Seconds to time each training case.") var seconds: Double = 2
    @Option(help: "Test images of the k=5000 evaluation (0 to skip).") var evalImages: Int = 1000
    @Option(help: "Samples per image of the evaluation.") var evalK: Int = 5000
    @Option(help: "Encoder of the training step.") var encoder = CovarianceKind.diagonal
    @Option(help: "Stochastic layers of the model: 1 (784-200-200-50) or 2 (the paper's 784-200-200-100-100-100-50).")
    var layers = 1
    @Flag(help: "One JSON object per measured case instead of a table.") var json = false

    func run() throws {
        let encoderKind = encoder
        guard layers == 1 || layers == 2 else { throw IWAEError.invalidArgument("--layers must be 1 or 2, got \(layers)") }
        var configuration = layers == 1 ? ModelConfiguration(dataDimension: 784) : ModelConfiguration.twoLayer(dataDimension: 784)
        configuration.encoder = encoderKind
        let batchList = batches.values, kList = ks.values
        let cores = ProcessInfo.processInfo.activeProcessorCount
        var rows = [[(String, Any)]]()
        _ = measureSGEMMPeak(repetitions: 3)   // wakes OpenBLAS's threads: the first case's "before" is not a cold start
        if !json {
            print("OpenBLAS \(BLASLibrary.coreName), \(cores) cores; each case's fraction is of the sgemm peak (2048³, \(cores) threads) measured just before and just after it, the larger of the two; 'peak moved' is how far they differ (! above 10 %)")
            print("")
            print("training step (\(encoderKind.rawValue) encoder, Bernoulli decoder, " + (layers == 1 ? "784-200-200-50" : "two stochastic layers 784-200-200-100-100-100-50") + ", Adam)")
            print(" B    K  mode              ms/step  examples/s  GFLOP/s  of peak   peak GFLOP/s (moved)   gemm (decoder)  elementwise  sampling  covariance  rest")
        }
        let (images, mean) = benchmarkImages(count: max(batchList.max()!, 1))
        for batch in batchList {
            for k in kList {
                let (t, peak) = try bracketedByPeak {
                    var best: StepTiming?
                    for workers in Set([1, cores]).sorted() {
                        let timing = try timeTrainingStep(batch: batch, k: k, workers: workers, seconds: seconds, images: images,
                                                          mean: mean, configuration: configuration)
                        if best == nil || timing.secondsPerStep < best!.secondsPerStep { best = timing }
                    }
                    return best!
                }
                let gflops = t.flops / t.secondsPerStep / 1e9
                let row: [(String, Any)] = [
                    ("case", "train_step"), ("layers", layers), ("encoder", encoderKind.rawValue), ("batch", batch), ("k", k), ("mode", t.mode),
                    ("ms_per_step", t.secondsPerStep * 1e3), ("examples_per_s", Double(batch) / t.secondsPerStep),
                    ("gflops", gflops), ("peak_gflops", peak.gflops), ("peak_fraction", gflops / peak.gflops),
                    ("peak_before_gflops", peak.before), ("peak_after_gflops", peak.after), ("peak_moved", peak.moved),
                    ("gemm_fraction", t.phases[0] + t.phases[1]), ("decoder_gemm_fraction", t.phases[1]),
                    ("elementwise_fraction", t.phases[2]), ("sampling_fraction", t.phases[3]),
                    ("covariance_fraction", t.phases[4]), ("rest_fraction", max(0, 1 - t.phases.reduce(0, +))),
                ]
                rows.append(row)
                if !json {
                    print(String(format: "%3d %4d  ", batch, k) + t.mode.padding(toLength: 15, withPad: " ", startingAt: 0) + String(format: "%8.3f %11.0f %8.1f %7.1f%%   %7.1f (%4.1f%%)%@  %5.0f%% (%3.0f%%) %11.0f%% %8.0f%% %10.0f%% %5.0f%%",
                                 t.secondsPerStep * 1e3, Double(batch) / t.secondsPerStep, gflops,
                                 100 * gflops / peak.gflops, peak.gflops, 100 * peak.moved, (peak.moved > 0.1 ? "!" : " ") as NSString,
                                 100 * (t.phases[0] + t.phases[1]), 100 * t.phases[1], 100 * t.phases[2],
                                 100 * t.phases[3], 100 * t.phases[4], 100 * max(0, 1 - t.phases.reduce(0, +))))
                }
            }
        }
        if evalImages > 0 {
            let (e, peak) = try bracketedByPeak { try timeEvaluation(images: evalImages, k: evalK) }
            let gflops = e.flops / e.seconds / 1e9
            rows.append([("case", "evaluate"), ("batch", evalImages), ("k", evalK), ("mode", "workers=\(cores)"),
                         ("seconds", e.seconds), ("examples_per_s", Double(evalImages) / e.seconds), ("gflops", gflops),
                         ("peak_gflops", peak.gflops), ("peak_fraction", gflops / peak.gflops),
                         ("peak_before_gflops", peak.before), ("peak_after_gflops", peak.after), ("peak_moved", peak.moved),
                         ("peak_memory_mb", e.peakMemoryMB)])
            if !json {
                print("")
                print(String(format: "evaluation, k=%d on %d test images (iwae evaluate, whole process): %.2f s, %.1f GFLOP/s (%.1f%% of a peak of %.1f, moved %.1f%%%@), peak memory %.0f MB",
                             evalK, evalImages, e.seconds, gflops, 100 * gflops / peak.gflops, peak.gflops, 100 * peak.moved,
                             (peak.moved > 0.1 ? " !" : "") as NSString, e.peakMemoryMB))
            }
        }
        let (c, peak) = bracketedByPeak { timeCholesky(batch: 100, n: 50) }
        rows.append([("case", "cholesky"), ("batch", 100), ("k", 50), ("mode", "potrf"), ("ms_per_batch", c.seconds * 1e3),
                     ("gflops", c.flops / c.seconds / 1e9), ("peak_gflops", peak.gflops), ("peak_fraction", c.flops / c.seconds / 1e9 / peak.gflops)])
        if !json {
            print(String(format: "batched Cholesky, 100 factorizations of 50×50 (LAPACKE spotrf): %.3f ms per batch, %.2f GFLOP/s",
                         c.seconds * 1e3, c.flops / c.seconds / 1e9))
        } else {
            for row in rows { print(jsonLine(row)) }
        }
    }
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
    var secondsPerStep: Double
    var flops: Double
    /// Fractions of the workers' time in each `PhaseProfiler.Phase`.
    var phases: [Double]
}

/// Times whole training steps (gradient and Adam update) for about `seconds`,
/// then runs as many again with profilers attached for the phase breakdown.
func timeTrainingStep(batch: Int, k: Int, workers: Int, seconds: Double, images: Tensor<Float>, mean: [Float],
                      configuration: ModelConfiguration) throws -> StepTiming {
    let model = VariationalAutoencoder<Float>(configuration, seed: 1)
    model.initializeOutputBias(dataMean: mean)
    BLASLibrary.threads = workers == 1 ? ProcessInfo.processInfo.activeProcessorCount : 1
    let pool = ModelWorkers(model: model, workers: workers, seed: 2)
    let adam = Adam<Float>(count: model.store.values.count, learningRate: 1e-4)
    let x = MatrixView(images.pointer, rows: batch, columns: 784)
    func step() throws {
        try pool.stepGradient(x, objective: .iwae, samplesPerExample: k)
        pool.updateParameters(with: adam)
    }
    for _ in 0..<3 { try step() }
    var steps = 0
    let start = now()
    while now() - start < seconds || steps < 5 { try step(); steps += 1 }
    let perStep = (now() - start) / Double(steps)
    let profilers = pool.replicas.map { _ in PhaseProfiler() }
    for (replica, profiler) in zip(pool.replicas, profilers) { replica.profiler = profiler }
    let profiledStart = now()
    for _ in 0..<steps { try step() }
    let profiledWall = (now() - profiledStart) * Double(workers)
    let phases = PhaseProfiler.Phase.allCases.map { phase in profilers.reduce(0) { $0 + $1.seconds(phase) } / profiledWall }
    let mode = workers == 1 ? "blas-threads=\(BLASLibrary.threads)" : "workers=\(workers)"
    return StepTiming(mode: mode, secondsPerStep: perStep, flops: model.gemmFlopsPerStep(examples: batch, samplesPerExample: k), phases: phases)
}

/// Runs `iwae evaluate` on a freshly initialized model as a child process and
/// reads its wall time and peak resident memory.
func timeEvaluation(images: Int, k: Int) throws -> (seconds: Double, flops: Double, peakMemoryMB: Double) {
    let directory = NSTemporaryDirectory() + "iwae-bench-\(getpid())"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let model = VariationalAutoencoder<Float>(ModelConfiguration(dataDimension: 784), seed: 1)
    let (_, mean) = benchmarkImages(count: 1)
    model.initializeOutputBias(dataMean: mean)
    try Checkpoint(model: model, data: .files("fashion-mnist")).save(to: directory)
    let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("iwae")
    guard FileManager.default.isExecutableFile(atPath: executable.path) else {
        throw IWAEError.invalidArgument("cannot find the iwae executable beside iwae-bench (\(executable.path)); build both")
    }
    let process = Process()
    process.executableURL = executable
    process.arguments = ["evaluate", directory, "--k", "\(k)", "--test-examples", "\(images)", "--json"]
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
    return (wall, model.gemmFlopsForLogWeights(examples: examples, samplesPerExample: k), Double(usage.ru_maxrss) / 1024)
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
