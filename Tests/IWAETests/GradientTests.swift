import IWAE
import XCTest

/// Every backward against central finite differences in Double.
final class GradientTests: XCTestCase {
    func finiteDifferences(_ values: UnsafeMutablePointer<Double>, count: Int, _ f: () -> Double) -> [Double] {
        centralDifferences(values, 0..<count, f)
    }

    func testLayerBackwardForEveryActivation() {
        for activation in Activation.allCases {
            var layout = ParameterLayout()
            let mlp = MLP<Double>(sizes: [4, 5, 3], activations: [activation, activation], name: "mlp", layout: &layout)
            let store = ParameterStore<Double>(layout: layout)
            let rng = Xoshiro256(seed: 11)
            for i in 0..<store.values.count { store.values[i] = rng.uniform(Double.self) - 0.5 }
            let n = 6
            let x = Tensor<Double>(shape: [n, 4], values: (0..<n * 4).map { _ in rng.uniform(Double.self) * 2 - 1 })
            let c = (0..<n * 3).map { _ in rng.uniform(Double.self) - 0.5 }
            // loss = Σ c ⊙ y
            func loss() -> Double {
                let y = mlp.forward(x.matrix, store)
                return (0..<n * 3).reduce(0) { $0 + c[$1] * y.pointer[$1] }
            }
            _ = loss()
            store.zeroGradients()
            for i in 0..<n * 3 { mlp.outputGradient.pointer[i] = c[i] }
            let dx = Tensor<Double>(shape: [n, 4])
            mlp.backward(dx: dx.matrix, store)
            let expectedParameters = finiteDifferences(store.values.pointer, count: store.values.count, loss)
            let expectedInput = finiteDifferences(x.pointer, count: x.count, loss)
            // ReLU's kink: the random points are away from zero with probability 1.
            assertClose(store.gradients.array, expectedParameters, rtol: 1e-6, atol: 1e-8, "parameters, \(activation)")
            assertClose(dx.array, expectedInput, rtol: 1e-6, atol: 1e-8, "input, \(activation)")
        }
    }

    func testGradientsAccumulate() {
        var layout = ParameterLayout()
        let linear = Linear(3, 2, name: "l", layout: &layout)
        let store = ParameterStore<Double>(layout: layout)
        let rng = Xoshiro256(seed: 1)
        linear.initialize(store, using: rng)
        let x = Tensor<Double>(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        let dy = Tensor<Double>(shape: [2, 2], values: [1, 0, 0, 1])
        let ones = Tensor<Double>(shape: [2]); ones.fill(1)
        linear.backward(dx: nil, dy: dy.matrix, x: x.matrix, store, ones: ones.pointer)
        let once = store.gradients.array
        linear.backward(dx: nil, dy: dy.matrix, x: x.matrix, store, ones: ones.pointer)
        assertClose(store.gradients.array, once.map { 2 * $0 }, rtol: 1e-15)
        XCTAssertEqual(Array(once[0..<6]), [1, 2, 3, 4, 5, 6])   // dW = dyᵀ x
        XCTAssertEqual(Array(once[6..<8]), [1, 1])               // db = Σ rows of dy
    }

    func smallModel(activation: Activation = .tanh, encoder: CovarianceKind = .diagonal, prior: PriorKind = .standard,
                    likelihood: LikelihoodKind = .bernoulli, decoderHidden: [Int] = [4, 5],
                    sigmaPerFeature: Bool = false) -> VariationalAutoencoder<Double> {
        var configuration = ModelConfiguration(dataDimension: 6, latentDimension: 3, encoderHidden: [5, 4],
                                               decoderHidden: decoderHidden, activation: activation, encoder: encoder,
                                               prior: prior, likelihood: likelihood, sigma: 0.7, learnSigma: likelihood == .gaussian)
        configuration.sigmaPerFeature = sigmaPerFeature
        let model = VariationalAutoencoder<Double>(configuration, seed: 3)
        let rng = Xoshiro256(seed: 4)
        for i in 0..<model.store.values.count { model.store.values[i] = rng.uniform(Double.self) - 0.5 }
        return model
    }

    /// Every encoder × prior × likelihood, every objective: the gradient of
    /// every parameter against central differences.
    func testEveryModelCombinationAgainstFiniteDifferences() throws {
        for encoder in CovarianceKind.allCases {
            for prior in PriorKind.allCases {
                for likelihood in LikelihoodKind.allCases {
                    for bound in [BoundKind.elbo, .iwae, .elboAnalytic] {
                        let objective = try Objective(bound, samplesPerExample: 3)
                        let model = smallModel(encoder: encoder, prior: prior, likelihood: likelihood,
                                               decoderHidden: likelihood == .gaussian ? [] : [4, 5])
                        let rng = Xoshiro256(seed: 8)
                        let x = Tensor<Double>(shape: [3, 6], values: (0..<18).map { _ in
                            likelihood == .bernoulli ? Double(rng.next() % 2) : rng.uniform(Double.self) })
                        model.store.zeroGradients()
                        try model.accumulateGradient(x.matrix, objective: objective, using: Xoshiro256(seed: 7))
                        let analytic = model.store.gradients.array
                        let numeric = finiteDifferences(model.store.values.pointer, count: model.store.values.count) {
                            loss(model, x, objective, seed: 7)
                        }
                        let label = "\(encoder) \(prior) \(likelihood) \(bound)"
                        assertClose(analytic, numeric, rtol: 1e-5, atol: 1e-7, label)
                        // The learned parts really are trained (nonzero gradients).
                        for name in ["prior.mean", "prior.log_variance", "decoder.log_variance", "encoder.cov_factor.weight"] {
                            guard let slot = model.store.layout.slot(named: name) else { continue }
                            XCTAssertTrue(model.store.gradient(slot).withMemoryRebound(to: Double.self, capacity: slot.count) {
                                UnsafeBufferPointer(start: $0, count: slot.count).contains { $0 != 0 } }, "\(label) \(name)")
                        }
                    }
                }
            }
        }
    }

    /// A variance per feature (D learned log σ_d²): every gradient against
    /// central differences, each σ_d² trained, and the log-likelihood against
    /// the formula written out per feature.
    func testPerFeatureVarianceAgainstFiniteDifferences() throws {
        for encoder in CovarianceKind.allCases {
            for bound in [BoundKind.elbo, .iwae] {
                let objective = try Objective(bound, samplesPerExample: 3)
                let model = smallModel(encoder: encoder, prior: .learned, likelihood: .gaussian, decoderHidden: [4], sigmaPerFeature: true)
                let slot = model.store.layout.slot(named: "decoder.log_variance")!
                XCTAssertEqual(slot.shape, [6])
                let rng = Xoshiro256(seed: 8)
                let x = Tensor<Double>(shape: [3, 6], values: (0..<18).map { _ in rng.uniform(Double.self) * 4 - 2 })
                model.store.zeroGradients()
                try model.accumulateGradient(x.matrix, objective: objective, using: Xoshiro256(seed: 7))
                let analytic = model.store.gradients.array
                let numeric = finiteDifferences(model.store.values.pointer, count: model.store.values.count) {
                    loss(model, x, objective, seed: 7)
                }
                assertClose(analytic, numeric, rtol: 1e-5, atol: 1e-7, "\(encoder) \(bound)")
                XCTAssertTrue((0..<6).allSatisfy { model.store.gradient(slot)[$0] != 0 }, "every σ_d² is trained")
            }
        }
        // log p(x|z) = Σ_d log N(x_d; f_d, σ_d²), naively, for a linear decoder at z = 0.
        let model = smallModel(likelihood: .gaussian, decoderHidden: [], sigmaPerFeature: true)
        let slot = model.store.layout.slot(named: "decoder.log_variance")!
        for i in 0..<6 { model.store.value(slot)[i] = Double(i) * 0.3 - 0.7 }
        let bias = model.store.layout.slot(named: "decoder.0.bias")!
        let x = [0.5, -1, 2, 0, 1.5, -0.25]
        let z = Tensor<Double>(shape: [1, 3])
        let f = Tensor<Double>(shape: [1, 6])
        model.decodeMeans(z.matrix, into: f.pointer)
        var expected = 0.0
        for i in 0..<6 {
            let v = Double.exp(Double(i) * 0.3 - 0.7), m = model.store.value(bias)[i]
            XCTAssertEqual(f[i], m, accuracy: 1e-15)
            expected += -(x[i] - m) * (x[i] - m) / (2 * v) - 0.5 * Double.log(2 * Double.pi * v)
        }
        let variances = (0..<6).map { Double.exp(model.store.value(slot)[$0]) }
        XCTAssertEqual(gaussianLogLikelihood(x, mean: f.array, variances: variances), expected, accuracy: 1e-12)
        // The model's own pass: ELBO with K = 1 at a decoder whose weights are 0, so f = bias whatever z.
        let weight = model.store.layout.slot(named: "decoder.0.weight")!
        model.store.value(weight).update(repeating: 0, count: weight.count)
        let xt = Tensor<Double>(shape: [1, 6], values: x)
        let encoded = try model.encode(xt.matrix)
        let lw = try model.logWeights(encoded, drawsPerExample: 1, using: Xoshiro256(seed: 1), keepForBackward: false)
        XCTAssertEqual(lw.logLikelihood[0], expected, accuracy: 1e-12)
    }

    func binaryBatch(_ b: Int, _ d: Int, seed: UInt64) -> Tensor<Double> {
        let rng = Xoshiro256(seed: seed)
        return Tensor(shape: [b, d], values: (0..<b * d).map { _ in Double(rng.next() % 2) })
    }


    /// The whole ELBO and IWAE gradient (θ and pathwise φ) for every parameter.
    func testWholeModelGradientAgainstFiniteDifferences() throws {
        for bound in [BoundKind.elbo, .iwae, .elboAnalytic] {
            for activation in [Activation.tanh, .softplus] {
                for K in [1, 4] {
                    let model = smallModel(activation: activation)
                    let x = binaryBatch(3, 6, seed: 8)
                    model.store.zeroGradients()
                    let objective = try Objective(bound, samplesPerExample: K)
                    let bounds = try model.accumulateGradient(x.matrix, objective: objective, using: Xoshiro256(seed: 99))
                    assertClose(-bounds.reduce(0, +) / 3, loss(model, x, objective, seed: 99), rtol: 1e-12, "loss")
                    let analytic = model.store.gradients.array
                    let numeric = finiteDifferences(model.store.values.pointer, count: model.store.values.count) {
                        loss(model, x, objective, seed: 99)
                    }
                    assertClose(analytic, numeric, rtol: 1e-5, atol: 1e-7, "\(bound) \(activation) K=\(K)")
                }
            }
        }
    }

    func testIWAEWithOneSampleEqualsELBO() throws {
        let model = smallModel()
        let x = binaryBatch(5, 6, seed: 2)
        model.store.zeroGradients()
        let iwae = Array(try model.accumulateGradient(x.matrix, objective: Objective(.iwae, samplesPerExample: 1), using: Xoshiro256(seed: 5)))
        let iwaeGradient = model.store.gradients.array
        model.store.zeroGradients()
        let elbo = Array(try model.accumulateGradient(x.matrix, objective: Objective(.elbo, samplesPerExample: 1), using: Xoshiro256(seed: 5)))
        assertClose(iwae, elbo, rtol: 1e-14)
        assertClose(iwaeGradient, model.store.gradients.array, rtol: 1e-12, atol: 1e-15)
    }

    /// With K samples the IWAE gradient weights each sample by w̃_k; with
    /// equal log weights it reduces to the ELBO's 1/K (MATH.md §3).
    func testBoundWeights() {
        let lw = Tensor<Double>(shape: [2, 3], values: [0, 0, 0, 0, Double.log(2), -.infinity])
        let w = Tensor<Double>(shape: [2, 3])
        boundWeights(try! Objective(.iwae, samplesPerExample: 3), logWeights: lw.matrix, into: w.matrix)
        assertClose(w.array, [1.0 / 3, 1.0 / 3, 1.0 / 3, 1.0 / 3, 2.0 / 3, 0], rtol: 1e-15)
        boundWeights(try! Objective(.elbo, samplesPerExample: 3), logWeights: lw.matrix, into: w.matrix)
        assertClose(w.array, [Double](repeating: 1.0 / 3, count: 6), rtol: 1e-15)
        // Bounds against their definitions, by a naive loop in Double, on rows
        // whose values all differ (a bound stuck at 0 or at the maximum fails).
        let rows: [[Double]] = [[1, 2, 3], [Double.log(2), Double.log(4), -.infinity], [-700, -701, -699.5]]
        let logWeights = Tensor<Double>(shape: [3, 3], values: rows.flatMap { $0 })
        var b = [Double](repeating: 0, count: 3), e = [Double](repeating: 0, count: 3)
        iwaeBound(logWeights: logWeights.matrix, into: &b)
        elboEstimate(logWeights: logWeights.matrix, into: &e)
        // Shifted by a round constant per row (not the row's maximum, as the engine does).
        let shifts = [0.0, 0, -700]
        let naiveIWAE = zip(rows, shifts).map { row, c in Double.log(row.map { Double.exp($0 - c) }.reduce(0, +) / 3) + c }
        assertClose(b, naiveIWAE, rtol: 1e-14)
        XCTAssertEqual(b[1], Double.log(2), accuracy: 1e-15)
        assertClose([e[0], e[2]], [2, -700.1666666666667], rtol: 1e-14)
        XCTAssertEqual(e[1], -.infinity)
        // The array API gives the same numbers.
        assertClose(rows.map { iwaeBound(logWeights: $0) }, naiveIWAE, rtol: 1e-14)
    }
}
