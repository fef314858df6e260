import IWAE
import RealModule
import XCTest

/// Adam against its formula (Kingma & Ba 2015), step by step in Double.
final class AdamTests: XCTestCase {
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

    /// The fused step (the replicas' gradients added left to right and
    /// applied) gives the bits of an explicit sum followed by `update`, over
    /// more values than one block of the kernel and more than one core's
    /// chunk, and leaves every source as it was: for one, two and three
    /// sources (the kernel copies one, adds the first two in one loop, and
    /// the rest one by one).
    func testFusedSumAndUpdateEqualsSumThenUpdate() {
        let n = 140_001
        var layout = ParameterLayout()
        _ = layout.register("p", shape: [n])
        for count in 1...3 {
            let fused = ParameterStore<Float>(layout: layout), plain = ParameterStore<Float>(layout: layout)
            let rng = Xoshiro256(seed: 4)
            for i in 0..<n { fused.values[i] = rng.uniform(Float.self) - 0.5; plain.values[i] = fused.values[i] }
            let fusedAdam = Adam<Float>(count: n, learningRate: 1e-2), plainAdam = Adam<Float>(count: n, learningRate: 1e-2)
            let replicas = (0..<count).map { _ in Tensor<Float>(shape: [n]) }
            for step in 1...3 {
                for r in replicas { for i in 0..<n { r[i] = (rng.uniform(Float.self) - 0.5) * Float(step) } }
                for i in 0..<n { plain.gradients[i] = replicas.dropFirst().reduce(replicas[0][i]) { $0 + $1[i] } }
                plainAdam.update(plain)
                let sources = replicas.map(\.array)
                fusedAdam.update(fused, summing: replicas.map(\.pointer)[...])
                XCTAssertEqual(fused.values.array, plain.values.array, "\(count) sources, step \(step)")
                XCTAssertEqual(fusedAdam.secondMoment.array, plainAdam.secondMoment.array, "\(count) sources, step \(step)")
                XCTAssertEqual(replicas.map(\.array), sources, "\(count) sources, step \(step): the sources are read, not written")
            }
        }
    }
}
