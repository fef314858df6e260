import Foundation
import IWAE
import XCTest

/// bf16 products: the rounding, the product's error bound, a training
/// step's gradients against fp32, and bf16 training's reproducibility
/// (resume and ranks are in `ResumeTests` and `RankTests`).
final class BFloat16Tests: XCTestCase {
    /// The nearest bfloat16 of x computed in Double: the two bfloat16
    /// neighbours of x by their bit patterns, the nearer kept, a tie to the
    /// even pattern.
    func nearestBFloat16(_ x: Float) -> Float {
        if x.isNaN || x.isInfinite { return x }
        let bits = x.bitPattern
        let down = Float(bitPattern: bits & 0xFFFF_0000)
        let up = Float(bitPattern: (bits & 0xFFFF_0000) &+ 0x1_0000)   // away from zero (may be ±∞)
        let dDown = abs(Double(x) - Double(down))
        let dUp = up.isInfinite ? abs(Double(x) - Double(sign: x.sign, exponent: 128, significand: 1)) : abs(Double(x) - Double(up))
        if dDown < dUp { return down }
        if dUp < dDown { return up }
        return (bits >> 16) & 1 == 0 ? down : up
    }

    func testRoundingIsToNearestTiesToEven() {
        let rng = Xoshiro256(seed: 3)
        var cases: [Float] = [0, -0, 1, -1, .pi, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNormalMagnitude,
                              .leastNonzeroMagnitude, Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000),
                              Float(bitPattern: 0x3F80_8001), Float(bitPattern: 0x7F7F_8000), Float(bitPattern: 0x7F7F_7FFF),
                              .infinity, -.infinity]
        for _ in 0..<100_000 { cases.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))) }
        for x in cases {
            let rounded = roundedToBFloat16(x)
            if x.isNaN {
                XCTAssertTrue(rounded.isNaN, "NaN stays NaN")
                continue
            }
            XCTAssertEqual(rounded.bitPattern, nearestBFloat16(x).bitPattern, "bf16(\(x)) (bits \(String(x.bitPattern, radix: 16)))")
            XCTAssertEqual(rounded.bitPattern & 0xFFFF, 0)
        }
        // Ties: 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷ and goes to the even 1; 1 + 3·2⁻⁸ goes up to 1 + 2⁻⁶.
        XCTAssertEqual(roundedToBFloat16(1 + 0x1p-8), 1)
        XCTAssertEqual(roundedToBFloat16(1 + 3 * 0x1p-8), 1 + 0x1p-6)
        XCTAssertEqual(roundedToBFloat16(Float(bitPattern: 0x7F7F_8000)), .infinity, "past the largest bfloat16")
    }

    /// A naive Double product of the fp32 operands is the oracle:
    ///
    ///     |Ĉ − AB| ≤ ((1 + u)² − 1 + γ_n (1 + u)²) · |A||B|,   u = 2⁻⁸, γ_n = n·2⁻²⁴ / (1 − n·2⁻²⁴)
    ///
    /// (each operand rounded once to bfloat16, their products exact in fp32,
    /// n = kk terms summed in fp32), and the rounding must show: the error
    /// against the fp32 product is of bf16's size, not fp32's.
    func testProductAgainstNaiveDoubleWithinTheBFloat16Bound() {
        let rng = Xoshiro256(seed: 11)
        let u = Precision.bfloat16UnitRoundoff
        for kernel in ProductKernel.allCases where kernel.precision == .bf16 {
            for (m, n, kk, tA, tB) in [(37, 29, 53, .none, .none), (24, 200, 784, .none, .transposed), (50, 31, 7, .transposed, .none),
                                       (5, 9, 300, .transposed, .transposed)] as [(Int, Int, Int, Transpose, Transpose)] {
                let a = Tensor<Float>(shape: tA == .none ? [m, kk] : [kk, m], values: (0..<m * kk).map { _ in rng.uniform(Float.self) * 4 - 2 })
                let b = Tensor<Float>(shape: tB == .none ? [kk, n] : [n, kk], values: (0..<kk * n).map { _ in rng.uniform(Float.self) * 4 - 2 })
                let start = (0..<m * n).map { _ in rng.uniform(Float.self) - 0.5 }
                for beta: Float in [0, 1] {
                    let c = Tensor<Float>(shape: [m, n], values: start)
                    gemm(c.matrix, a.matrix, tA, b.matrix, tB, beta: beta, kernel: kernel, workspace: ProductWorkspace())
                    let gamma = Double(kk + 1) * 0x1p-24 / (1 - Double(kk + 1) * 0x1p-24)
                    let av = a.array.map(Double.init), bv = b.array.map(Double.init), cv = c.array
                    var largestRelative = 0.0
                    for i in 0..<m {
                        for j in 0..<n {
                            var exact = Double(beta) * Double(start[i * n + j]), magnitude = abs(exact)
                            for l in 0..<kk {
                                let x = tA == .none ? av[i * kk + l] : av[l * m + i], y = tB == .none ? bv[l * n + j] : bv[j * kk + l]
                                exact += x * y
                                magnitude += abs(x * y)
                            }
                            let error = abs(Double(cv[i * n + j]) - exact)
                            XCTAssertLessThanOrEqual(error, ((1 + u) * (1 + u) - 1 + gamma * (1 + u) * (1 + u)) * magnitude,
                                                     "\(kernel) \(m)×\(n)×\(kk) β=\(beta) at (\(i), \(j))")
                            largestRelative = max(largestRelative, error / magnitude)
                        }
                    }
                    // fp32 products of these sizes are good to about 1e-6 of |A||B|; bf16 inputs leave ~1e-3.
                    XCTAssertGreaterThan(largestRelative, 0x1p-12, "\(kernel) \(m)×\(n)×\(kk): the operands were rounded")
                }
            }
        }
    }

    /// One training step's gradient in bf16 against fp32, same seed and
    /// batch: ‖g_bf16 − g_fp32‖ / ‖g_fp32‖ < 2 %, per layer's weights and
    /// over all parameters. (Each product input moves by at most 2⁻⁸ ≈ 0.4 %
    /// relative; the forward pass carries it through four products and the
    /// backward through as many again, so a few times 0.4 % is expected.)
    func testTrainingStepGradientsAgreeWithFP32() throws {
        let configuration = ModelConfiguration(dataDimension: 60, latentDimension: 8, encoderHidden: [40, 40], decoderHidden: [40, 40])
        let rng = Xoshiro256(seed: 4)
        let x = Tensor<Float>(shape: [32, 60], values: (0..<32 * 60).map { _ in rng.uniform(Float.self) < 0.3 ? 1 : 0 })
        func gradient(_ precision: Precision, objective: Objective) throws -> [Float] {
            let model = VariationalAutoencoder<Float>(configuration, seed: 9)
            model.plan = ComputePlan(precision: precision)
            try model.trainingStepGradient(x.matrix, objective: objective, using: Xoshiro256(seed: 21))
            return model.store.gradients.array
        }
        for objective in [try Objective(.iwae, samplesPerExample: 5), try Objective(.elbo, samplesPerExample: 5)] {
            let reference = try gradient(.fp32, objective: objective), bf16 = try gradient(.bf16, objective: objective)
            func norm(_ v: [Float]) -> Double { v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }
            let model = VariationalAutoencoder<Float>(configuration, seed: 9)
            var worst = 0.0
            for slot in model.parameterSlots where slot.shape.count == 2 {
                let range = slot.offset..<(slot.offset + slot.count)
                let relative = norm(zip(bf16[range], reference[range]).map { $0 - $1 }) / norm(Array(reference[range]))
                XCTAssertLessThan(relative, 0.02, "\(objective) \(slot.name)")
                worst = max(worst, relative)
            }
            let overall = norm(zip(bf16, reference).map { $0 - $1 }) / norm(reference)
            XCTAssertLessThan(overall, 0.02, "\(objective)")
            XCTAssertGreaterThan(overall, 1e-4, "\(objective): bf16 changed the products")
            print("bf16 gradient, \(objective): relative difference \(overall) overall, \(worst) in the worst layer")
        }
    }

    /// Adam's pass rounds the new values into the store's bf16 copy, in the
    /// forms the plan's weight-reading products (forward, input gradient)
    /// read, and only those (a weight gradient reads activations), exactly
    /// as the products round them (oracle: `nearestBFloat16`, by the bit
    /// patterns), and the values themselves are those of an update that
    /// rounds nothing.
    func testAdamRoundsTheNewValuesAsTheProductsDo() {
        let configuration = ModelConfiguration(dataDimension: 30, latentDimension: 4, encoderHidden: [20], decoderHidden: [20])
        let sites = VariationalAutoencoder<Float>(configuration, seed: 1).productSites(examples: 4, drawsPerExample: 2).keys.sorted()
        let mixed = ComputePlan(precision: .bf16, Dictionary(uniqueKeysWithValues: sites.enumerated().map {
            ($1, $0 % 2 == 0 ? ProductKernel.onednnBF16 : .openblasEmulatingBF16)
        }))
        let rng = Xoshiro256(seed: 8)
        func plan(weightGradients: ProductKernel, others: ProductKernel) -> ComputePlan {
            ComputePlan(precision: .bf16, Dictionary(uniqueKeysWithValues: sites.map { ($0, $0.product == .weightGradient ? weightGradients : others) }))
        }
        // The B = 20 plans on Zen 5 emulate weight gradients only: bits, no floats.
        let emulatedWeightGradients = plan(weightGradients: .onednnEmulatingBF16, others: .onednnBF16)
        let nativeWeightGradients = plan(weightGradients: .onednnBF16, others: .openblasEmulatingBF16)
        for plan in [mixed, emulatedWeightGradients, nativeWeightGradients, ComputePlan(sites: sites, kernel: .onednnBF16),
                     ComputePlan(precision: .bf16), ComputePlan()] {
            let rounding = VariationalAutoencoder<Float>(configuration, seed: 1), plain = VariationalAutoencoder<Float>(configuration, seed: 1)
            rounding.plan = plan
            let n = rounding.parameterCount
            let adam = Adam<Float>(count: n, learningRate: 0.01), plainAdam = Adam<Float>(count: n, learningRate: 0.01)
            for _ in 0..<3 {
                let g = (0..<n).map { _ in rng.uniform(Float.self) * 2 - 1 }
                for (model, optimizer) in [(rounding, adam), (plain, plainAdam)] {
                    g.withUnsafeBufferPointer { model.store.gradients.pointer.update(from: $0.baseAddress!, count: n) }
                    optimizer.update(model.store, summing: [model.store.gradients.pointer][...])
                }
            }
            XCTAssertEqual(rounding.parameters.map(\.bitPattern), plain.parameters.map(\.bitPattern), "\(plan.grouped): the values")
            let copy = rounding.store.bfloat16Copy
            let readers = sites.filter { $0.product != .weightGradient }.map { plan.kernel(for: $0) }
            let native = readers.contains(.onednnBF16)
            let emulated = plan.precision == .bf16 && readers.contains { $0 != .onednnBF16 }
            XCTAssertEqual(copy.isCurrent, native || emulated, plan.grouped)
            XCTAssertEqual(copy.bits != nil, native, plan.grouped)
            XCTAssertEqual(copy.floats != nil, emulated, plan.grouped)
            for (i, value) in rounding.parameters.enumerated() {
                let expected = nearestBFloat16(value)
                if let bits = copy.bits { XCTAssertEqual(bits[i], UInt16(expected.bitPattern >> 16), "\(plan.grouped) bits \(i)") }
                if let floats = copy.floats { XCTAssertEqual(floats[i].bitPattern, expected.bitPattern, "\(plan.grouped) float \(i)") }
            }
        }
    }

    /// A product reads a rounded operand it is given instead of rounding B
    /// (the given values differ from B's rounding here, and the product
    /// shows them), and given B's own rounding (and A's, by
    /// `sharedOperand`) it computes the same bits as rounding them itself,
    /// in both forms.
    func testAProductReadsAGivenRoundedOperand() {
        let rng = Xoshiro256(seed: 12)
        let (m, n, kk) = (9, 13, 70)
        let a = Tensor<Float>(shape: [m, kk], values: (0..<m * kk).map { _ in rng.uniform(Float.self) * 2 - 1 })
        let b = Tensor<Float>(shape: [n, kk], values: (0..<n * kk).map { _ in rng.uniform(Float.self) * 2 - 1 })
        let rounded = b.array.map(roundedToBFloat16), other = b.array.map { roundedToBFloat16($0 * 2) }
        let kernels: [ProductKernel] = BFloat16Units.current.kernelPasses ? [.onednnBF16, .openblasEmulatingBF16] : [.openblasEmulatingBF16]
        for kernel in kernels {
            func product(_ given: [Float]?) -> [Float] {
                let c = Tensor<Float>(shape: [m, n])
                let bits = given?.map { UInt16($0.bitPattern >> 16) } ?? []
                bits.withUnsafeBufferPointer { bits in
                    (given ?? []).withUnsafeBufferPointer { floats in
                        let operand = given == nil ? nil : RoundedOperand(bits: bits.baseAddress, floats: floats.baseAddress)
                        let workspace = ProductWorkspace<Float>()
                        let roundedA = given == nil ? nil : workspace.sharedOperand(a.matrix, [.bits, .floats])
                        gemm(c.matrix, a.matrix, .none, b.matrix, .transposed, kernel: kernel, workspace: workspace,
                             roundedA: roundedA, roundedB: operand)
                    }
                }
                return c.array
            }
            let own = product(nil)
            XCTAssertEqual(product(rounded).map(\.bitPattern), own.map(\.bitPattern), "\(kernel)")
            let doubled = product(other)
            for (x, y) in zip(doubled, own) { XCTAssertEqual(x, 2 * y, accuracy: 1e-4 * (1 + abs(y)), "\(kernel): the given operand was read") }
        }
    }

    /// A layer's backward rounds dy once for its two products, and gives
    /// the bits of the two products computed apart, each rounding its own
    /// operands, for every pair of bf16 kernels of the two sites (the
    /// weight from Adam's copy or not).
    func testABackwardRoundsDyOnceWithTheSameBits() {
        var layout = ParameterLayout()
        let linear = Linear(70, 33, name: "l", layout: &layout)
        let rng = Xoshiro256(seed: 13)
        let x = Tensor<Float>(shape: [19, 70], values: (0..<19 * 70).map { _ in rng.uniform(Float.self) * 2 - 1 })
        let dy = Tensor<Float>(shape: [19, 33], values: (0..<19 * 33).map { _ in rng.uniform(Float.self) * 2 - 1 })
        let ones = [Float](repeating: 1, count: 19)
        var kernels: [ProductKernel] = [.openblasEmulatingBF16, .onednnEmulatingBF16]
        if BFloat16Units.current.kernelPasses { kernels.append(.onednnBF16) }
        for weightKernel in kernels {
            for inputKernel in kernels {
                for copy in [false, true] {
                    let store = ParameterStore<Float>(layout: layout)
                    linear.initialize(store, using: Xoshiro256(seed: 2))
                    store.plan = ComputePlan(precision: .bf16, [ProductSite(.weightGradient, inputs: 70, outputs: 33): weightKernel,
                                                                ProductSite(.inputGradient, inputs: 70, outputs: 33): inputKernel])
                    if copy {   // an Adam step of zero gradient leaves the values and makes the copy
                        Adam<Float>(count: layout.count, learningRate: 0).update(store, summing: [store.gradients.pointer][...])
                        XCTAssertTrue(store.bfloat16Copy.isCurrent)
                    }
                    let dx = Tensor<Float>(shape: [19, 70])
                    ones.withUnsafeBufferPointer { linear.backward(dx: dx.matrix, dy: dy.matrix, x: x.matrix, store, ones: $0.baseAddress!) }
                    let dw = Tensor<Float>(shape: [33, 70]), expectedDx = Tensor<Float>(shape: [19, 70])
                    gemm(dw.matrix, dy.matrix, .transposed, x.matrix, .none, beta: 1, kernel: weightKernel, workspace: ProductWorkspace())
                    gemm(expectedDx.matrix, dy.matrix, .none, store.valueMatrix(linear.weight), .none, kernel: inputKernel, workspace: ProductWorkspace())
                    let what = "weight gradient \(weightKernel), input gradient \(inputKernel), copy \(copy)"
                    XCTAssertEqual(store.gradientMatrix(linear.weight).array.map(\.bitPattern), dw.array.map(\.bitPattern), what)
                    XCTAssertEqual(dx.array.map(\.bitPattern), expectedDx.array.map(\.bitPattern), what)
                }
            }
        }
    }

    /// An MLP's bf16 forward and backward round each operand once, in the
    /// pass that makes it (the activations' sweeps, the caller's pass over
    /// the output gradient), and give the bits of its layers run apart with
    /// every product rounding its own operands: for each bf16 kernel, with
    /// tanh, relu and identity activations and the output rounded for a
    /// reader. Where the products read only rounded floats (the
    /// emulations), dy is rounded in place and its pass sums the bias
    /// gradient first: a naive row-by-row sum in Float gives its bits.
    func testAnMLPRoundsEachOperandOnceWithTheSameBits() {
        let sizes = [30, 40, 40, 25, 12], activations: [Activation] = [.tanh, .relu, .tanh, .identity]
        var layout = ParameterLayout()
        let mlp = MLP<Float>(sizes: sizes, activations: activations, name: "m", layout: &layout)
        let reader = Linear(12, 7, name: "reader", layout: &layout)
        let rng = Xoshiro256(seed: 21), rows = 17
        let x = Tensor<Float>(shape: [rows, 30], values: (0..<rows * 30).map { _ in rng.uniform(Float.self) * 2 - 1 })
        let top = (0..<rows * 12).map { _ in rng.uniform(Float.self) * 2 - 1 }
        let scale = (0..<rows).map { _ in rng.uniform(Float.self) + 0.5 }
        var kernels: [ProductKernel] = [.openblasEmulatingBF16, .onednnEmulatingBF16]
        if BFloat16Units.current.kernelPasses { kernels.append(.onednnBF16) }
        for kernel in kernels {
            let store = ParameterStore<Float>(layout: layout)
            mlp.initialize(store, using: Xoshiro256(seed: 4))
            reader.initialize(store, using: Xoshiro256(seed: 5))
            store.plan = ComputePlan(sites: (mlp.layers + [reader]).flatMap(\.productSites), kernel: kernel)
            // The MLP: its forward rounds the output for `reader`, the caller scales the output gradient and rounds it.
            mlp.forward(x.matrix, store, outputReaders: [reader])
            let out = Tensor<Float>(shape: [rows, 7])
            reader.forward(out.matrix, mlp.output, store, roundedX: mlp.roundedOutput)
            top.withUnsafeBufferPointer { mlp.outputGradient.pointer.update(from: $0.baseAddress!, count: top.count) }
            let pass = mlp.outputGradientPass(store)
            Float.scaleRows(mlp.outputGradient.pointer, by: scale, rows: rows, columns: 12, rounded: pass.rounded, columnSums: pass.biasGradient)
            let dx = Tensor<Float>(shape: [rows, 30])
            mlp.backward(dx: dx.matrix, store, outputGradientPassDone: true)
            let gradients = store.gradients.array, outputs = out.array
            // The layers apart, each product rounding its own operands.
            store.zeroGradients()
            var inputs = [x], current = x
            for (layer, activation) in zip(mlp.layers, activations) {
                let y = Tensor<Float>(shape: [rows, layer.outputSize])
                layer.forward(y.matrix, current.matrix, store, addBias: false)
                activation.forward(y.matrix, bias: store.value(layer.bias))
                inputs.append(y)
                current = y
            }
            let expectedOut = Tensor<Float>(shape: [rows, 7])
            reader.forward(expectedOut.matrix, current.matrix, store)
            var dy = Tensor<Float>(shape: [rows, 12], values: top)
            Float.scaleRows(dy.pointer, by: scale, rows: rows, columns: 12)
            let ones = [Float](repeating: 1, count: rows)
            for i in stride(from: mlp.layers.count - 1, through: 0, by: -1) {
                let layer = mlp.layers[i]
                if i < mlp.layers.count - 1 { activations[i].backward(dy.matrix, output: inputs[i + 1].matrix) }
                let dxi = Tensor<Float>(shape: [rows, layer.inputSize])
                let summed = kernel != .onednnBF16
                if summed {
                    let db = store.gradient(layer.bias)
                    for r in 0..<rows { for c in 0..<layer.outputSize { db[c] += dy[r * layer.outputSize + c] } }
                }
                ones.withUnsafeBufferPointer {
                    layer.backward(dx: dxi.matrix, dy: dy.matrix, x: inputs[i].matrix, store, ones: $0.baseAddress!,
                                   biasGradientAccumulated: summed)
                }
                dy = dxi
            }
            XCTAssertEqual(outputs.map(\.bitPattern), expectedOut.array.map(\.bitPattern), "\(kernel): forward")
            XCTAssertEqual(gradients.map(\.bitPattern), store.gradients.array.map(\.bitPattern), "\(kernel): parameter gradients")
            XCTAssertEqual(dx.array.map(\.bitPattern), dy.array.map(\.bitPattern), "\(kernel): input gradient")
            XCTAssertNotEqual(gradients, mlpGradientsInFP32(mlp, reader, layout, x, top, scale), "\(kernel): the operands were rounded")
            // A forward that no backward follows: what only the emulation reads is rounded in place, with the same result.
            mlp.forward(x.matrix, store, outputReaders: [reader], keepActivations: false)
            let again = Tensor<Float>(shape: [rows, 7])
            reader.forward(again.matrix, mlp.output, store, roundedX: mlp.roundedOutput)
            XCTAssertEqual(again.array.map(\.bitPattern), outputs.map(\.bitPattern), "\(kernel): a forward without its activations")
            let output = UnsafeBufferPointer(start: mlp.output.pointer, count: rows * 12)
            XCTAssertEqual(output.allSatisfy { roundedToBFloat16($0) == $0 }, kernel != .onednnBF16, "\(kernel): rounded in place")
        }
    }

    /// The parameter gradients of the same MLP step in fp32.
    private func mlpGradientsInFP32(_ mlp: MLP<Float>, _ reader: Linear, _ layout: ParameterLayout, _ x: Tensor<Float>,
                                    _ top: [Float], _ scale: [Float]) -> [Float] {
        let store = ParameterStore<Float>(layout: layout)
        mlp.initialize(store, using: Xoshiro256(seed: 4))
        reader.initialize(store, using: Xoshiro256(seed: 5))
        mlp.forward(x.matrix, store)
        top.withUnsafeBufferPointer { mlp.outputGradient.pointer.update(from: $0.baseAddress!, count: top.count) }
        Float.scaleRows(mlp.outputGradient.pointer, by: scale, rows: x.matrix.rows, columns: 12)
        mlp.backward(dx: nil, store)
        return store.gradients.array
    }

    /// A training loop that reads Adam's rounded copy gives the bits of one
    /// whose products round every weight themselves (the copy retired after
    /// each update), with the emulation and, where it passes, oneDNN's
    /// bf16 matmul; and every other writer of the values retires the copy.
    func testTrainingWithTheRoundedCopyGivesTheSameBits() throws {
        let configuration = ModelConfiguration(dataDimension: 60, latentDimension: 8, encoderHidden: [40, 40], decoderHidden: [40, 40])
        let rng = Xoshiro256(seed: 5)
        let x = Tensor<Float>(shape: [24, 60], values: (0..<24 * 60).map { _ in rng.uniform(Float.self) < 0.3 ? 1 : 0 })
        let objective = try Objective(.iwae, samplesPerExample: 3)
        var kernels: [ProductKernel] = [.openblasEmulatingBF16, .onednnEmulatingBF16]
        if BFloat16Units.current.kernelPasses { kernels.append(.onednnBF16) }
        for kernel in kernels {
            func train(retiringTheCopy: Bool) throws -> (VariationalAutoencoder<Float>, ModelWorkers<Float>, Adam<Float>) {
                let model = VariationalAutoencoder<Float>(configuration, seed: 3)
                let workers = ModelWorkers(model: model, workers: 2, seed: 7)
                workers.plan = ComputePlan(sites: Array(model.productSites(examples: 12, drawsPerExample: 3).keys), kernel: kernel)
                let adam = Adam<Float>(count: model.parameterCount, learningRate: 3e-3)
                for _ in 0..<4 {
                    try workers.boundsAndGradient(x.matrix, objective: objective)
                    workers.updateParameters(with: adam)
                    XCTAssertTrue(model.store.bfloat16Copy.isCurrent, "\(kernel)")
                    if retiringTheCopy { model.store.valuesChanged() }
                }
                return (model, workers, adam)
            }
            let (reading, workers, _) = try train(retiringTheCopy: false)
            let (rounding, _, _) = try train(retiringTheCopy: true)
            XCTAssertEqual(reading.parameters.map(\.bitPattern), rounding.parameters.map(\.bitPattern), "\(kernel)")
            reading.initializeOutputBias(dataMean: [Float](repeating: 0.3, count: 60))
            XCTAssertFalse(reading.store.bfloat16Copy.isCurrent, "\(kernel): a written bias retires the copy")
            workers.updateParameters(with: Adam<Float>(count: reading.parameterCount, learningRate: 1e-3))
            XCTAssertTrue(reading.store.bfloat16Copy.isCurrent)
            workers.plan = workers.plan
            XCTAssertFalse(reading.store.bfloat16Copy.isCurrent, "\(kernel): a new plan retires the copy")
        }
    }

    /// A forward-only estimate under a bf16 plan rounds the weights once,
    /// into the copy its products read (current afterwards, equal to the
    /// values rounded), and gives the bits of an estimate whose products
    /// round every weight themselves: L_k on 2 workers and on one model,
    /// and AIS.
    func testAnEstimateRoundsTheWeightsOnceWithTheSameBits() throws {
        let configuration = ModelConfiguration(dataDimension: 60, latentDimension: 8, encoderHidden: [40], decoderHidden: [40])
        let rng = Xoshiro256(seed: 6)
        let x = Tensor<Float>(shape: [9, 60], values: (0..<9 * 60).map { _ in rng.uniform(Float.self) < 0.3 ? 1 : 0 })
        var kernels: [ProductKernel] = [.openblasEmulatingBF16, .onednnEmulatingBF16]
        if BFloat16Units.current.kernelPasses { kernels.append(.onednnBF16) }
        let settings = try AISSettings(steps: 4, leapfrogSteps: 2, chains: 3)
        for kernel in kernels {
            let model = VariationalAutoencoder<Float>(configuration, seed: 3)
            let workers = ModelWorkers(model: model, workers: 2, seed: 7)
            workers.plan = ComputePlan(sites: Array(model.productSites(examples: 1, drawsPerExample: 500).keys), kernel: kernel)
            XCTAssertFalse(model.store.bfloat16Copy.isCurrent)
            // k = 500: a pass per example. The copy retired after every pass:
            // all passes but the first round their weights themselves.
            let selfRounded = try model.estimateLogLikelihood(x.matrix, samples: 500, seed: 1) { _ in model.store.valuesChanged() }
            model.store.valuesChanged()
            let once = try workers.estimateLogLikelihood(x.matrix, samples: 500, seed: 1)
            XCTAssertTrue(model.store.bfloat16Copy.isCurrent, "\(kernel)")
            let copy = model.store.bfloat16Copy
            for (i, value) in model.parameters.enumerated().prefix(500) {
                if let floats = copy.floats { XCTAssertEqual(floats[i].bitPattern, roundedToBFloat16(value).bitPattern) }
                if let bits = copy.bits { XCTAssertEqual(UInt32(bits[i]) << 16, roundedToBFloat16(value).bitPattern) }
            }
            XCTAssertEqual(once.logLikelihoods.map(\.bitPattern), selfRounded.logLikelihoods.map(\.bitPattern), "\(kernel)")
            model.store.valuesChanged()
            let aisSelfRounded = try model.annealedImportanceSampling(x.matrix, settings: settings, seed: 2) { _ in model.store.valuesChanged() }
            model.store.valuesChanged()
            let aisOnce = try workers.annealedImportanceSampling(x.matrix, settings: settings, seed: 2)
            XCTAssertEqual(aisOnce.logLikelihoods.map(\.bitPattern), aisSelfRounded.logLikelihoods.map(\.bitPattern), "\(kernel)")
        }
    }

    /// oneDNN's bf16 matmul is a candidate of the planner only on a CPU
    /// with bf16 units where it agrees with the emulation; elsewhere the
    /// units say why. Its path is run here on every CPU: on one without
    /// bf16 units it must report itself unavailable, not crash.
    func testBFloat16KernelIsACandidateOnlyWhereItPassesItsCheck() {
        let cpu = Processor.current, units = BFloat16Units.current
        let failure = BFloat16Units.oneDNNCheckFailure()
        if !(cpu.hasAVX512BF16 || cpu.hasAMXBF16) {
            XCTAssertFalse(units.kernelPasses)
            if !cpu.hasAVX512 { XCTAssertNotNil(failure, "oneDNN has no bf16 matmul on AVX2") }
        } else if ProcessInfo.processInfo.environment["IWAE_BF16"] != "emulate" {
            XCTAssertEqual(units.kernelPasses, failure == nil)
        }
        XCTAssertEqual(units.kernelPasses, units.whyUnavailable.isEmpty, units.whyUnavailable)
        var offered = false
        var known = [String: String]()
        _ = ComputePlanner.plan(sites: [ProductSite(.forward, inputs: 3, outputs: 2)], precision: .bf16,
                                bf16KernelPasses: units.kernelPasses, question: { "\($0)" }, known: &known) { _, kernels in
            offered = offered || kernels.contains(.onednnBF16)
            return [:]
        }
        XCTAssertEqual(offered, units.kernelPasses)
        print("bf16 units: \(units.name); oneDNN's bf16 matmul \(failure ?? "passes its check")")
    }

    /// The precision travels with the model: checkpoints record it, loading
    /// restores it, replicas copy it.
    func testPrecisionIsRecordedAndRestored() throws {
        let (data, root) = try smallTrainingFixture(self)
        let out = root + "/bf16"
        let train = try runIWAE(smallTrainArguments(data: data, out: out, validation: 20) + ["--precision", "bf16"])
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertTrue(train.stdout.contains("bf16 inputs"), train.stdout)
        XCTAssertTrue(train.stdout.contains("products: bf16: "), train.stdout)
        let checkpoint = try Checkpoint.load(from: out)
        XCTAssertEqual(checkpoint.training?.options.precision, .bf16)
        XCTAssertEqual(checkpoint.model.plan.precision, .bf16)
        XCTAssertEqual(ModelWorkers(model: checkpoint.model, workers: 2, seed: 1).plan, checkpoint.model.plan)
        for (flag, expected) in [([String](), "bf16"), (["--precision", "fp32"], "fp32")] {
            let evaluate = try runIWAE(["evaluate", out, "--k", "20", "--test-examples", "10", "--json"] + flag)
            XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
            let json = try JSONSerialization.jsonObject(with: Data(evaluate.stdout.utf8)) as! [String: Any]
            XCTAssertEqual(json["precision"] as? String, expected)
        }
        let bad = try runIWAE(["train", "--data", data, "--precision", "fp16", "--out", root + "/fp16"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertEqual(bad.stderr.split(separator: "\n").count, 1, bad.stderr)
    }
}
