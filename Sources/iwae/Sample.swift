import ArgumentParser
import Foundation
import IWAE
import IWAEConsole

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a PNG: decoded prior samples (left) beside test images and their reconstructions (right, in pairs).")

    @Argument(help: "Training output directory (or a model.safetensors file).") var checkpoint: String
    @OptionGroup var dataOptions: DataOptions
    @Option(help: "PNG file to write.") var out: String
    @Option(help: "Rows of the grid.") var rows: Int = 10
    @Option(help: "Seed of the prior samples.") var seed: UInt64 = 1

    func run() throws {
        guard (1...100).contains(rows) else { throw IWAEError.invalidArgument("--rows must be between 1 and 100, got \(rows)") }
        guard out.hasSuffix(".png") else { throw IWAEError.invalidArgument("--out must name a .png file, got \(out)") }
        let loaded = try Checkpoint.load(from: checkpoint)
        let model = loaded.model
        let testSet = try loadTestSet(dataOptions, checkpoint: loaded).examples.prefix(rows * 5).images()
        let d = model.configuration.dataDimension, k = model.configuration.latentDimension
        let (w, h) = (testSet.width, testSet.height)
        let columns = 10
        // Left panel: σ(f(z)) for z ~ N(0, I).
        let z = Tensor<Float>(shape: [rows * columns, k])
        Xoshiro256(seed: seed).fillStandardNormal(z.pointer, count: z.count)
        let samples = Tensor<Float>(shape: [rows * columns, d])
        model.decodeMeans(z.matrix, into: samples.pointer)
        // Right panel: test images and σ(f(μ(x))) for their binarizations.
        let pairs = columns / 2
        let test = testSet.prefix(rows * pairs)
        let binary = model.evaluationImages(test)
        let x = Tensor<Float>(shape: [test.count, d], values: binary.pixels)
        _ = try model.encode(x.matrix)
        let mu = Tensor<Float>(shape: [test.count, k])
        for r in 0..<test.count { for u in 0..<k { mu[r * k + u] = model.encoder.means[r, u] } }
        let reconstructions = Tensor<Float>(shape: [test.count, d])
        model.decodeMeans(mu.matrix, into: reconstructions.pointer)

        let gap = w / 2
        let width = (2 * columns) * w + gap, height = rows * h
        var pixels = [UInt8](repeating: 255, count: width * height)
        func paint(_ source: UnsafePointer<Float>, row: Int, column: Int, offset: Int) {
            for y in 0..<h { for x in 0..<w {
                let v = max(0, min(1, source[y * w + x]))
                pixels[(row * h + y) * width + offset + column * w + x] = UInt8((v * 255).rounded())
            } }
        }
        for r in 0..<rows {
            for c in 0..<columns { paint(samples.pointer + (r * columns + c) * d, row: r, column: c, offset: 0) }
            for p in 0..<pairs where r * pairs + p < test.count {
                let i = r * pairs + p
                test.pixels.withUnsafeBufferPointer { paint($0.baseAddress! + i * d, row: r, column: 2 * p, offset: columns * w + gap) }
                paint(reconstructions.pointer + i * d, row: r, column: 2 * p + 1, offset: columns * w + gap)
            }
        }
        try writeFileAtomically(try encodeGrayscalePNG(width: width, height: height, pixels: pixels), to: out)
        print("wrote \(out) (\(width)×\(height)): \(rows * columns) prior samples, \(test.count) test images with reconstructions")
    }
}
