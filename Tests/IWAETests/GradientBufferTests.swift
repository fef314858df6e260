import IWAE
import XCTest

/// A training step writes its gradients over the last step's instead of
/// clearing the buffer first (`ParameterStore.markGradientsStale`).
final class GradientBufferTests: XCTestCase {
    /// The first product of a step on a stale slot writes over it (β = 0),
    /// later ones add (β = 1); an adding writer's first access zeroes the
    /// slot; settling zeroes what the step did not write and nothing else.
    func testStaleSlotsAreWrittenOverOrZeroedOnce() {
        var layout = ParameterLayout()
        let w = layout.register("w", shape: [2, 3]), b = layout.register("b", shape: [3]), c = layout.register("c", shape: [2])
        let store = ParameterStore<Float>(layout: layout)
        for i in 0..<layout.count { store.gradients[i] = 7 }
        store.markGradientsStale()

        XCTAssertEqual(store.gradientForWriting(w).beta, 0, "the step's first product writes over the stale slot")
        XCTAssertEqual(store.gradientForWriting(w).beta, 1, "the next one adds to it")
        let db = store.gradient(b)
        XCTAssertEqual((0..<3).map { db[$0] }, [0, 0, 0], "an adding writer finds the stale slot zeroed")
        db[0] = 5
        XCTAssertEqual(store.gradient(b)[0], 5, "and zeroed once only")
        store.settleGradients()
        XCTAssertEqual(store.gradients.array, [7, 7, 7, 7, 7, 7, 5, 0, 0, 0, 0],
                       "w (written by its product, here not at all) kept, b kept, c (not written) zeroed")
        XCTAssertEqual(store.gradientForWriting(c).beta, 1, "settled: products add again")
    }

    /// A layer's weight gradient on a stale buffer, over two backward
    /// passes, is the sum of the two passes' dyᵀx (a naive loop in Double),
    /// whatever the buffer held: the first pass wrote over it, the second
    /// added, and the bias gradient was zeroed before its first sum.
    func testTwoBackwardPassesOverAStaleBufferSumFromZero() {
        var layout = ParameterLayout()
        let linear = Linear(5, 4, name: "l", layout: &layout)
        let store = ParameterStore<Float>(layout: layout)
        linear.initialize(store, using: Xoshiro256(seed: 1))
        let rng = Xoshiro256(seed: 2)
        let xs = (0..<2).map { _ in Tensor<Float>(shape: [6, 5], values: (0..<30).map { _ in rng.uniform(Float.self) - 0.5 }) }
        let dys = (0..<2).map { _ in Tensor<Float>(shape: [6, 4], values: (0..<24).map { _ in rng.uniform(Float.self) - 0.5 }) }
        for i in 0..<layout.count { store.gradients[i] = 1e6 }
        store.markGradientsStale()
        let ones = [Float](repeating: 1, count: 6)
        for pass in 0..<2 {
            ones.withUnsafeBufferPointer { linear.backward(dx: nil, dy: dys[pass].matrix, x: xs[pass].matrix, store, ones: $0.baseAddress!) }
        }
        store.settleGradients()
        var expectedW = [Double](repeating: 0, count: 20), expectedB = [Double](repeating: 0, count: 4)
        for pass in 0..<2 {
            for r in 0..<6 {
                for o in 0..<4 {
                    expectedB[o] += Double(dys[pass][r * 4 + o])
                    for i in 0..<5 { expectedW[o * 5 + i] += Double(dys[pass][r * 4 + o]) * Double(xs[pass][r * 5 + i]) }
                }
            }
        }
        assertClose(store.gradientMatrix(linear.weight).array.map(Double.init), expectedW, rtol: 1e-5, atol: 1e-6)
        assertClose((0..<4).map { Double(store.gradient(linear.bias)[$0]) }, expectedB, rtol: 1e-5, atol: 1e-6)
    }
}
