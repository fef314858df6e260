import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

struct Speed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Training-step, k=5000 evaluation and batched-Cholesky speed, of a fresh and of a trained model, as fractions of the hardware's fp32 peak and of the best sgemm measured in the same run.")

    @OptionGroup var shapes: StepShapes
    @Option(help: "Seconds to time each training case.") var seconds: Double = 2
    @Option(help: "Test images of the k=5000 evaluation (0 to skip).") var evalImages: Int = 1000
    @Option(help: "Samples per image of the evaluation.") var evalK: Int = 5000
    @Option(help: "Encoder of the training step.") var encoder = CovarianceKind.diagonal
    @Option(help: "Stochastic layers of the model: 1 (784-200-200-50) or 2 (the paper's 784-200-200-100-100-100-50).")
    var layers = 1
    @Option(help: "A trained model (training output directory) to time beside a fresh one of its architecture. Default: one trained here for --train-epochs on Fashion-MNIST (IWAE, K = 5, batch 100).")
    var model: String?
    @Option(help: "Epochs of the model trained here when --model is not given (0: time fresh models only).") var trainEpochs = 1
    @OptionGroup var products: ProductOptions
    var gemm: GEMMChoice { products.gemm }
    var precision: Precision { products.precision }
    @Flag(help: "One JSON object per measured case instead of a table.") var json = false

    func run() throws {
        let encoderKind = encoder
        guard layers == 1 || layers == 2 else { throw IWAEError.invalidArgument("--layers must be 1 or 2, got \(layers)") }
        guard trainEpochs >= 0 else { throw IWAEError.invalidArgument("--train-epochs must be at least 0, got \(trainEpochs)") }
        var configuration = layers == 1 ? ModelConfiguration(dataDimension: 784) : ModelConfiguration.twoLayer(dataDimension: 784)
        configuration.encoder = encoderKind
        let trained = try TrainedModel(directory: model, configuration: configuration, epochs: trainEpochs, quiet: json)
        if let trained { configuration = trained.configuration }
        defer { trained?.removeIfMadeHere() }
        let batchList = shapes.batches.values, kList = shapes.ks.values
        let cores = ProcessInfo.processInfo.activeProcessorCount
        var rows = [[(String, any JSONField)]]()
        // The hardware's peak does not change, but a neighbour's burst during its
        // measurement reads low and inflates every fraction against it: measured
        // again after each case, each case is taken against the largest so far.
        var hardware = measureHardwarePeak()
        let sgemm = measureSGEMMPeak(repetitions: 3)   // also wakes OpenBLAS's threads: the first case's "before" is not a cold start
        let architecture = layers == 1 ? "784-200-200-50" : "two stochastic layers 784-200-200-100-100-100-50"
        if !json {
            print("CPU \(Processor.current.summary); OpenBLAS \(BLASLibrary.coreName), \(cores) cores")
            print(String(format: "hardware fp32 peak %.1f GFLOP/s (independent %d-bit FMAs on %d cores); best sgemm %.1f GFLOP/s (2048³, %d threads), %.0f%% of it",
                         hardware, Processor.current.vectorBits, cores, sgemm, cores, 100 * sgemm / hardware))
            print("'of hw' is of the hardware peak (the largest of it and the peaks measured after each case so far), 'of sgemm' of the sgemm peak measured just before and after the case (the larger; ! when they differ by more than 10 %)")
            print(trained.map { "trained: \($0.description); 'trained/fresh' is its step time over a fresh model's, best of 3 alternating rounds each" } ?? "trained: none (--train-epochs 0)")
            print("")
            print("training step (\(configuration.encoder.rawValue) encoder, Bernoulli decoder, \(architecture), Adam)")
            print(" B    K  mode              ms/step  examples/s  GFLOP/s  of hw  of sgemm   trained ms  trained/fresh   gemm (decoder)  elementwise  sampling  covariance  rest")
        }
        let (images, mean) = benchmarkImages(count: max(batchList.max()!, 1))
        var shownPlan: ComputePlan?
        for batch in batchList {
            for k in kList {
                let (t, peak) = try bracketedByPeak {
                    try fastestLayout(cores: cores) { workers in
                        try timeTrainingStep(batch: batch, k: k, workers: workers, seconds: seconds, images: images,
                                             model: freshModel(configuration, mean: mean), gemm: gemm, precision: precision)
                    }
                }
                // Fresh against trained, alternating, at the faster layout.
                let pair = try trained.map { trained in
                    try timeFreshAndTrained(batch: batch, k: k, workers: t.workers, seconds: seconds, images: images,
                                            fresh: freshModel(configuration, mean: mean), trained: try trained.load(), gemm: gemm,
                                            precision: precision)
                }
                hardware = max(hardware, measureHardwarePeak())
                let gflops = t.flops / t.secondsPerStep / 1e9
                let ratio = pair.map { $0.trained / $0.fresh }
                var row: [(String, any JSONField)] = [
                    ("case", "train_step"), ("layers", configuration.stochasticLayers), ("encoder", configuration.encoder.rawValue),
                    ("batch", batch), ("k", k), ("mode", t.mode), ("gemm_plan", t.plan.summary), ("precision", precision.rawValue),
                    ("ms_per_step", t.secondsPerStep * 1e3), ("examples_per_s", Double(batch) / t.secondsPerStep),
                    ("gflops", gflops), ("hardware_peak_gflops", hardware), ("hardware_fraction", gflops / hardware),
                    ("peak_gflops", peak.gflops), ("peak_fraction", gflops / peak.gflops),
                    ("peak_before_gflops", peak.before), ("peak_after_gflops", peak.after), ("peak_moved", peak.moved),
                    ("gemm_fraction", t.phases[0] + t.phases[1]), ("decoder_gemm_fraction", t.phases[1]),
                    ("elementwise_fraction", t.phases[2]), ("sampling_fraction", t.phases[3]),
                    ("covariance_fraction", t.phases[4]), ("rest_fraction", max(0, 1 - t.phases.reduce(0, +))),
                ]
                if let pair, let ratio {
                    row += [("fresh_alternating_ms_per_step", pair.fresh * 1e3), ("trained_ms_per_step", pair.trained * 1e3),
                            ("trained_ratio", ratio)]
                }
                rows.append(row)
                if !json && t.plan != shownPlan {
                    print("    products (--gemm \(gemm.rawValue)): \(t.plan.grouped)")
                    shownPlan = t.plan
                }
                if !json {
                    let trainedColumns = pair.map { String(format: "%11.3f  %13.2f", $0.trained * 1e3, ratio!) }
                        ?? String(repeating: " ", count: 26)
                    print(String(format: "%3d %4d  ", batch, k) + t.mode.padding(toLength: 15, withPad: " ", startingAt: 0)
                          + String(format: "%8.3f %11.0f %8.1f %5.1f%%   %5.1f%%%@ ", t.secondsPerStep * 1e3, Double(batch) / t.secondsPerStep,
                                   gflops, 100 * gflops / hardware, 100 * gflops / peak.gflops, (peak.moved > 0.1 ? "!" : " ") as NSString)
                          + trainedColumns
                          + String(format: "  %7.0f%% (%3.0f%%) %11.0f%% %8.0f%% %10.0f%% %5.0f%%",
                                   100 * (t.phases[0] + t.phases[1]), 100 * t.phases[1], 100 * t.phases[2],
                                   100 * t.phases[3], 100 * t.phases[4], 100 * max(0, 1 - t.phases.reduce(0, +))))
                }
            }
        }
        if evalImages > 0 {
            let (e, peak) = try bracketedByPeak { try timeEvaluation(images: evalImages, k: evalK, model: freshModel(configuration, mean: mean), precision: precision) }
            let trainedEvaluation = try trained.map { try timeEvaluation(images: evalImages, k: evalK, model: try $0.load(), precision: precision) }
            hardware = max(hardware, measureHardwarePeak())
            let gflops = e.flops / e.seconds / 1e9
            var row: [(String, any JSONField)] = [("case", "evaluate"), ("batch", evalImages), ("k", evalK), ("mode", "workers=\(cores)"),
                         ("seconds", e.seconds), ("examples_per_s", Double(evalImages) / e.seconds), ("gflops", gflops),
                         ("hardware_peak_gflops", hardware), ("hardware_fraction", gflops / hardware),
                         ("peak_gflops", peak.gflops), ("peak_fraction", gflops / peak.gflops),
                         ("peak_before_gflops", peak.before), ("peak_after_gflops", peak.after), ("peak_moved", peak.moved),
                         ("peak_memory_mb", e.peakMemoryMB)]
            if let trainedEvaluation { row += [("trained_seconds", trainedEvaluation.seconds), ("trained_ratio", trainedEvaluation.seconds / e.seconds)] }
            rows.append(row)
            if !json {
                print("")
                print(String(format: "evaluation, k=%d on %d test images (iwae evaluate, whole process): %.2f s, %.1f GFLOP/s (%.1f%% of a hardware peak of %.1f, %.1f%% of an sgemm peak of %.1f, moved %.1f%%%@), peak memory %.0f MB",
                             evalK, evalImages, e.seconds, gflops, 100 * gflops / hardware, hardware, 100 * gflops / peak.gflops, peak.gflops, 100 * peak.moved,
                             (peak.moved > 0.1 ? " !" : "") as NSString, e.peakMemoryMB)
                      + (trainedEvaluation.map { String(format: "; trained model %.2f s (trained/fresh %.2f)", $0.seconds, $0.seconds / e.seconds) } ?? ""))
            }
        }
        let (c, peak) = bracketedByPeak { timeCholesky(batch: 100, n: 50) }
        rows.append([("case", "cholesky"), ("batch", 100), ("k", 50), ("mode", "potrf"), ("ms_per_batch", c.seconds * 1e3),
                     ("gflops", c.flops / c.seconds / 1e9), ("hardware_peak_gflops", hardware),
                     ("hardware_fraction", c.flops / c.seconds / 1e9 / hardware),
                     ("peak_gflops", peak.gflops), ("peak_fraction", c.flops / c.seconds / 1e9 / peak.gflops)])
        if !json {
            print(String(format: "hardware fp32 peak, the largest measured in this run: %.1f GFLOP/s", hardware))
            print(String(format: "batched Cholesky, 100 factorizations of 50×50 (LAPACKE spotrf): %.3f ms per batch, %.2f GFLOP/s",
                         c.seconds * 1e3, c.flops / c.seconds / 1e9))
        } else {
            for row in rows { print(jsonLine(row)) }
        }
    }
}

