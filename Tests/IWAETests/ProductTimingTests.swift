import IWAE
import XCTest

/// `ProductTiming`, the record behind `iwae-bench products`: it counts the
/// calls it is shown, and a training step's record is the step's product
/// count (`gemmFlopsPerStep`, which every GFLOP/s figure divides by).
final class ProductTimingTests: XCTestCase {
    func testRecordsEachFloatProductByShapeAndKernelWhileOn() {
        let a = Tensor<Float>(shape: [4, 5]), b = Tensor<Float>(shape: [6, 5]), c = Tensor<Float>(shape: [4, 6])
        let d = Tensor<Float>(shape: [5, 6])
        a.fill(1); b.fill(2); c.fill(0); d.fill(1)
        gemm(c.matrix, a.matrix, .none, b.matrix, .transposed)   // before: not recorded
        ProductTiming.start()
        for _ in 0..<3 { gemm(c.matrix, a.matrix, .none, b.matrix, .transposed) }
        for _ in 0..<2 { gemm(d.matrix, a.matrix, .transposed, c.matrix, .none, beta: 1, kernel: .onednn) }
        let x = Tensor<Double>(shape: [2, 2]), y = Tensor<Double>(shape: [2, 2])
        gemm(y.matrix, x.matrix, .none, x.matrix, .none)   // Double: not recorded
        let record = ProductTiming.stop()
        gemm(c.matrix, a.matrix, .none, b.matrix, .transposed)   // after: not recorded

        XCTAssertEqual(record.count, 2)
        let forward = record.first { $0.key.transposeB == .transposed }
        let gradient = record.first { $0.key.transposeA == .transposed }
        XCTAssertEqual(forward?.value.calls, 3)
        XCTAssertEqual(gradient?.value.calls, 2)
        XCTAssertEqual(forward.map { [$0.key.m, $0.key.n, $0.key.kk] }, [4, 6, 5])
        XCTAssertEqual(gradient.map { [$0.key.m, $0.key.n, $0.key.kk] }, [5, 6, 4])
        XCTAssertEqual(forward?.key.kernel, .openblas)
        XCTAssertEqual(gradient?.key.kernel, .onednn)
        XCTAssertEqual(forward?.key.accumulates, false)
        XCTAssertEqual(gradient?.key.accumulates, true)
        XCTAssertEqual(forward?.key.flops, 2 * 4 * 6 * 5)
        XCTAssertGreaterThan(forward?.value.nanoseconds ?? 0, 0)

        ProductTiming.start()   // starts from empty
        XCTAssertEqual(ProductTiming.stop(), [:])
    }

    /// One data-parallel IWAE step records exactly the products whose count
    /// `gemmFlopsPerStep` gives (the first encoder layer without its input
    /// gradient, every other layer three products; the per-draw layers on
    /// B·K rows): one and two stochastic layers, one worker and two.
    func testOneTrainingStepRecordsTheProductsItsFLOPCountCounts() throws {
        var twoLayer = ModelConfiguration.twoLayer(dataDimension: 12)
        twoLayer.encoderHidden = [9]
        twoLayer.decoderHidden = [7]
        let configurations = [ModelConfiguration(dataDimension: 12, latentDimension: 3, encoderHidden: [8, 6], decoderHidden: [5]),
                              twoLayer]
        let rng = Xoshiro256(seed: 2)
        let (batch, k) = (7, 4)
        let x = Tensor<Float>(shape: [batch, 12], values: (0..<batch * 12).map { _ in Float(rng.next() % 2) })
        for configuration in configurations {
            for workers in [1, 2] {
                let model = VariationalAutoencoder<Float>(configuration, seed: 1)
                let pool = ModelWorkers(model: model, workers: workers, seed: 3)
                ProductTiming.start()
                _ = try pool.boundsAndGradient(x.matrix, objective: Objective(.iwae, samplesPerExample: k))
                let record = ProductTiming.stop()
                let recorded = record.reduce(0.0) { $0 + $1.key.flops * Double($1.value.calls) }
                XCTAssertEqual(recorded, model.gemmFlopsPerStep(examples: batch, drawsPerExample: k),
                               "\(configuration.stochasticLayers) stochastic layers, \(workers) workers")
                if configuration.stochasticLayers == 1 {
                    // By hand, 2·rows·in·out a product: the encoder on 7 rows, 12→8 forward and
                    // weight gradient (2688), 8→6 three products (2016), its two heads 6→3 three
                    // each (1512); the decoder on 7·4 = 28 rows, 3→5 and 5→12 three each (2520, 10080).
                    XCTAssertEqual(recorded, 2688 + 2016 + 1512 + 2520 + 10080, "\(workers) workers, counted by hand")
                }
            }
        }
    }
}
