import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

/// A training step's products one by one: each shape's wall time in the
/// step (`ProductTiming`), where the step's other passes and its other
/// core leave the caches as they are, against the same product alone on
/// warm operands, same kernel, same threads. Their gap is what a product
/// loses to the step around it; the sum alone is what the step's products
/// cost at best with these kernels.
struct Products: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A training step's products one by one: each shape's time in the step against the same product alone (warm operands, same kernel and threads), and what the rest of the step takes.")

    @Option(help: "Batch size of the training step.") var batch = 20
    @Option(help: "K of the training step.") var k = 50
    @Option(help: "Workers (training's layout: one per core) or 1 (one worker, all cores in each product).")
    var workers: Int?
    @Option(help: "Seconds of steps to record.") var seconds: Double = 4
    @Option(help: "A trained model (training output directory) to time instead of a fresh one (784-200-200-50).")
    var model: String?
    @OptionGroup var products: ProductOptions
    var gemm: GEMMChoice { products.gemm }
    var precision: Precision { products.precision }
    @Flag(help: "One JSON object per product, then one for the step, instead of a table.") var json = false

    func run() throws {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let workerCount = workers ?? cores
        guard batch > 0, k > 0 else { throw IWAEError.invalidArgument("--batch and --k must be positive, got \(batch) and \(k)") }
        guard (1...cores).contains(workerCount) else { throw IWAEError.invalidArgument("--workers must be between 1 and \(cores), got \(workerCount)") }
        guard seconds > 0 else { throw IWAEError.invalidArgument("--seconds must be positive, got \(seconds)") }
        let (images, mean) = benchmarkImages(count: batch)
        let timed = try modelToTime(model, mean: mean)
        let timer = try StepTimer(batch: batch, k: k, workers: workerCount, images: images, model: timed, gemm: gemm, precision: precision)
        ProductTiming.start()
        let (perStep, steps) = try timer.time(seconds: seconds)
        let record = ProductTiming.stop()

        // Per worker and step: each worker records its own calls.
        let share = 1 / Double(steps * workerCount)
        let rows = record.sorted { $0.value.nanoseconds > $1.value.nanoseconds }.map { call, total in
            ProductRow(call: call, callsPerStep: Double(total.calls) * share, inStep: Double(total.nanoseconds) / Double(total.calls) / 1e9,
                       alone: timeAlone(call))
        }
        let inStep = rows.reduce(0) { $0 + $1.inStep * $1.callsPerStep }
        // Only when every shape was timed alone (not for bf16 kernels).
        let alone = rows.allSatisfy { $0.alone != nil } ? rows.reduce(0.0) { $0 + $1.alone! * $1.callsPerStep } : nil
        if json {
            for r in rows {
                print(jsonLine([("case", "product"), ("product", r.label), ("kernel", r.call.kernel.rawValue), ("m", r.call.m), ("n", r.call.n),
                           ("kk", r.call.kk), ("accumulates", r.call.accumulates), ("calls_per_worker_step", r.callsPerStep),
                           ("in_step_us", r.inStep * 1e6), ("alone_us", r.alone.map { $0 * 1e6 }),
                           ("in_step_gflops", r.call.flops / r.inStep / 1e9)]))
            }
            print(jsonLine([("case", "step"), ("batch", batch), ("k", k), ("workers", workerCount), ("precision", precision.rawValue),
                       ("ms_per_step", perStep * 1e3), ("products_in_step_ms", inStep * 1e3), ("products_alone_ms", alone.map { $0 * 1e3 }),
                       ("rest_ms", (perStep - inStep) * 1e3)]))
            return
        }
        print("CPU \(Processor.current.summary); OpenBLAS \(BLASLibrary.coreName); \(workerCount) worker(s), \(BLASLibrary.threads) thread(s) a product")
        print("B \(batch), K \(k), \(precision.rawValue), products (--gemm \(gemm.rawValue)): \(timer.pool.plan.grouped)")
        print("\(steps) steps of \(String(format: "%.3f", perStep * 1e3)) ms; per worker and step:")
        print("product                                kernel                   calls   in step µs   alone µs   step/alone   GFLOP/s in step")
        for r in rows {
            let alone = r.alone.map { String(format: "%.1f", $0 * 1e6) } ?? "-", ratio = r.alone.map { String(format: "%.3f", r.inStep / $0) } ?? "-"
            print(r.label.padding(toLength: 38, withPad: " ", startingAt: 0) + " " + r.call.kernel.rawValue.padding(toLength: 22, withPad: " ", startingAt: 0)
                  + String(format: " %7.2f %12.1f ", r.callsPerStep, r.inStep * 1e6) + leftPadded(alone, 10) + " " + leftPadded(ratio, 12)
                  + String(format: " %17.1f", r.call.flops / r.inStep / 1e9))
        }
        print(String(format: "products: %.3f ms in the step (%.0f%% of it), ", inStep * 1e3, 100 * inStep / perStep)
              + (alone.map { String(format: "%.3f ms alone", $0 * 1e3) } ?? "not timed alone (bf16 kernels)")
              + String(format: "; the rest of the step (passes, Adam, waiting): %.3f ms", (perStep - inStep) * 1e3))
    }
}

/// One product shape of a step.
private struct ProductRow {
    var call: ProductTiming.Call
    var callsPerStep: Double
    /// Seconds per call in the step, and alone (nil: a bf16 kernel, whose
    /// operands a step gives rounded; not timed alone).
    var inStep: Double
    var alone: Double?

    /// The layer product it is, by its layout (`ProductSite`'s names), its
    /// rows, and "+=" when it adds to C.
    var label: String {
        let (m, n, kk) = (call.m, call.n, call.kk)
        let adds = call.accumulates ? " +=" : ""
        switch (call.transposeA, call.transposeB) {
        case (.none, .transposed): return "forward \(kk)→\(n), \(m) rows" + adds
        case (.transposed, .none): return "weight-gradient \(n)→\(m), \(kk) rows" + adds
        case (.none, .none): return "input-gradient \(n)→\(kk), \(m) rows" + adds
        case (.transposed, .transposed): return "\(m)×\(n)×\(kk), both transposed" + adds
        }
    }
}

/// Seconds per call of `call` alone, on warm operands (best of five rounds
/// of about a millisecond each), with the step's threads per product; nil
/// for a bf16 kernel.
private func timeAlone(_ call: ProductTiming.Call) -> Double? {
    guard call.kernel.precision == .fp32 else { return nil }
    let (m, n, kk) = (call.m, call.n, call.kk)
    let a = Tensor<Float>(shape: call.transposeA == .none ? [m, kk] : [kk, m])
    let b = Tensor<Float>(shape: call.transposeB == .none ? [kk, n] : [n, kk])
    let c = Tensor<Float>(shape: [m, n])
    let rng = Xoshiro256(seed: 3)
    rng.fillUniform(a.pointer, count: a.count)
    rng.fillUniform(b.pointer, count: b.count)
    c.fill(0)
    let beta: Float = call.accumulates ? 1 : 0
    func run() { gemm(c.matrix, a.matrix, call.transposeA, b.matrix, call.transposeB, beta: beta, kernel: call.kernel) }
    let calls = max(1, min(1000, Int(1e6 / call.flops)))
    return withSubnormalsFlushed {
        run()
        var best = Double.infinity
        for _ in 0..<5 {
            let start = now()
            for _ in 0..<calls { run() }
            best = min(best, (now() - start) / Double(calls))
        }
        return best
    }
}

/// `text` right-aligned in `width` characters.
private func leftPadded(_ text: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - text.count)) + text }
