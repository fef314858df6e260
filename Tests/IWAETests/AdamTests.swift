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
}
