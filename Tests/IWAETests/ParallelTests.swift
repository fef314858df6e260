import IWAE
import RealModule
import XCTest

/// Data-parallel workers compute exactly what one model computes on the same
/// blocks with the same random streams.
final class ParallelTests: XCTestCase {
    func testTwoWorkersEqualTheSumOfTheirBlocks() throws {
        let configuration = ModelConfiguration(dataDimension: 12, latentDimension: 3, encoderHidden: [8], decoderHidden: [8])
        let model = VariationalAutoencoder<Double>(configuration, seed: 1)
        let rng = Xoshiro256(seed: 2)
        let x = Tensor<Double>(shape: [7, 12], values: (0..<84).map { _ in Double(rng.next() % 2) })
        let pool = ModelWorkers(model: model, workers: 2, seed: 9)
        model.store.zeroGradients()
        let bounds = Array(try pool.accumulateGradient(x.matrix, objective: .iwae, samplesPerExample: 4))
        let parallel = model.store.gradients.array

        // The same blocks (4 + 3 rows) on a fresh model with the workers' seeds.
        let reference = VariationalAutoencoder<Double>(configuration, seed: 1)
        let references = ModelWorkers(model: reference, workers: 2, seed: 9)   // for its generators only
        reference.store.zeroGradients()
        var expectedBounds = [Double]()
        for (w, rows) in [0..<4, 4..<7].enumerated() {
            let b = try reference.accumulateGradient(x.matrix.rows(rows), objective: .iwae, samplesPerExample: 4,
                                                 using: references.generators[w], lossScale: 1.0 / 7)
            expectedBounds += Array(b)
        }
        assertClose(bounds, expectedBounds, rtol: 1e-12)
        assertClose(parallel, reference.store.gradients.array, rtol: 1e-10, atol: 1e-14)
    }

    func testParallelEstimateMergesBlocks() throws {
        let configuration = ModelConfiguration(dataDimension: 10, latentDimension: 2, encoderHidden: [6], decoderHidden: [6])
        let model = VariationalAutoencoder<Float>(configuration, seed: 3)
        let rng = Xoshiro256(seed: 4)
        let x = Tensor<Float>(shape: [9, 10], values: (0..<90).map { _ in Float(rng.next() % 2) })
        let pool = ModelWorkers(model: model, workers: 2, seed: 0)
        let merged = try pool.estimateLogLikelihood(x.matrix, samples: 50, seed: 5)
        let first = try model.estimateLogLikelihood(x.matrix.rows(0..<5), samples: 50, seed: 5, rowsPerPass: 4000)
        let second = try model.estimateLogLikelihood(x.matrix.rows(5..<9), samples: 50, seed: 6, rowsPerPass: 4000)
        XCTAssertEqual(merged.bounds, first.bounds + second.bounds)
        XCTAssertEqual(merged.examples, 9)
        // Active-unit moments merge: equal to the variance over all 9 examples.
        let all = try model.estimateLogLikelihood(x.matrix, samples: 1, seed: 1, rowsPerPass: 4000)
        assertClose(merged.latentActivity, all.latentActivity, rtol: 1e-9, atol: 1e-12)
    }

    func testAdamMatchesTheFormula() {
        var layout = ParameterLayout()
        _ = layout.register("p", shape: [3])
        let store = ParameterStore<Double>(layout: layout)
        for i in 0..<3 { store.values[i] = Double(i) }
        let adam = Adam<Double>(count: 3, learningRate: 0.1, beta1: 0.9, beta2: 0.999, epsilon: 1e-4)
        var m = [0.0, 0, 0], v = [0.0, 0, 0], theta = [0.0, 1, 2]
        for t in 1...3 {
            let g = [0.5, -1.0 * Double(t), 2.0]
            for i in 0..<3 { store.gradients[i] = g[i] }
            adam.update(store)
            for i in 0..<3 {
                m[i] = 0.9 * m[i] + 0.1 * g[i]
                v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i]
                let mHat = m[i] / (1 - Double.pow(0.9, Double(t))), vHat = v[i] / (1 - Double.pow(0.999, Double(t)))
                theta[i] -= 0.1 * mHat / (vHat.squareRoot() + 1e-4)
            }
            assertClose(store.values.array, theta, rtol: 1e-12, "step \(t)")
        }
    }

    func testPaperLearningRateSchedule() {
        let s = LearningRateSchedule.paper
        XCTAssertEqual(s.learningRate(epoch: 1, base: 1e-3), 1e-3)
        for epoch in 2...4 { assertClose(s.learningRate(epoch: epoch, base: 1e-3), 1e-3 * Double.pow(10, -1.0 / 7), rtol: 1e-12) }
        assertClose(s.learningRate(epoch: 5, base: 1e-3), 1e-3 * Double.pow(10, -2.0 / 7), rtol: 1e-12)
        assertClose(s.learningRate(epoch: 3280, base: 1e-3), 1e-4, rtol: 1e-12)
        // Stages end at epochs 1, 4, 13, 40, 121, 364, 1093, 3280.
        assertClose(s.learningRate(epoch: 1093, base: 1e-3), 1e-3 * Double.pow(10, -6.0 / 7), rtol: 1e-12)
        assertClose(s.learningRate(epoch: 1094, base: 1e-3), 1e-4, rtol: 1e-12)
        assertClose(s.learningRate(epoch: 364, base: 1e-3), 1e-3 * Double.pow(10, -5.0 / 7), rtol: 1e-12)
        XCTAssertEqual(s.totalEpochs, 3280)
        XCTAssertEqual(LearningRateSchedule.constant.learningRate(epoch: 77, base: 0.5), 0.5)
    }

    func testChartRendersSeries() throws {
        let chart = LineChart(title: "T", xLabel: "K", yLabel: "Y", logX: true,
                              series: [ChartSeries(name: "A", points: [(1, 2), (10, 3), (100, 1)], color: (255, 0, 0))])
        let image = chart.render(width: 200, height: 150)
        XCTAssertEqual(image.pixels.count, 200 * 150 * 3)
        // The series' color appears (its markers and line).
        let red = stride(from: 0, to: image.pixels.count, by: 3).filter { image.pixels[$0] == 255 && image.pixels[$0 + 1] == 0 }.count
        XCTAssertGreaterThan(red, 50)
        let png = try image.png()
        XCTAssertEqual(png[25], 2)   // color type RGB
    }
}
