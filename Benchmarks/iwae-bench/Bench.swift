import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iwae-bench",
        abstract: "Benchmarks of the IWAE engine: the K comparison of Burda et al. (2015) Table 1, and raw speed.",
        subcommands: [Compare.self, Speed.self, Products.self, Libraries.self, Layouts.self, Precisions.self, Scaling.self, Tightness.self, UserLoop.self],
        defaultSubcommand: Compare.self)

    static func main() {
        relaunchWithBestBLASKernels()
        runCommandLine(Bench.self, tool: "iwae-bench")
    }
}

/// Wall-clock seconds.
func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// Best GFLOP/s of OpenBLAS sgemm on an n×n×n product with all cores, the
/// ceiling every other figure is a fraction of.
func measureSGEMMPeak(n: Int = 2048, repetitions: Int = 5) -> Double {
    let saved = BLASLibrary.threads
    BLASLibrary.threads = ProcessInfo.processInfo.activeProcessorCount
    defer { BLASLibrary.threads = saved }
    let a = Tensor<Float>(shape: [n, n]), b = Tensor<Float>(shape: [n, n]), c = Tensor<Float>(shape: [n, n])
    let rng = Xoshiro256(seed: 1)
    rng.fillUniform(a.pointer, count: a.count)
    rng.fillUniform(b.pointer, count: b.count)
    gemm(c.matrix, a.matrix, .none, b.matrix, .none)
    var best = 0.0
    for _ in 0..<repetitions {
        let start = now()
        gemm(c.matrix, a.matrix, .none, b.matrix, .none)
        best = max(best, 2 * Double(n) * Double(n) * Double(n) / (now() - start) / 1e9)
    }
    return best
}

/// Binary images for timing: Fashion-MNIST test images when installed, else
/// random ones of the same size.
func benchmarkImages(count: Int) -> (images: Tensor<Float>, mean: [Float]) {
    if let test = try? MNISTFormatDataset.load("fashion-mnist", split: .test) {
        let set = test.prefix(count).binarizedOnce(seed: 1)
        return (Tensor(shape: [set.count, set.dimension], values: set.pixels), test.pixelMean)
    }
    let rng = Xoshiro256(seed: 1)
    let t = Tensor<Float>(shape: [count, 784])
    for i in 0..<t.count { t[i] = rng.next() % 3 == 0 ? 1 : 0 }
    return (t, [Float](repeating: 1.0 / 3, count: 784))
}

