import RealModule
import IWAELinearAlgebra

/// An affine layer `y = x Wᵀ + b`.
///
/// Shapes: x is (N, in), W is (out, in), b is (out), y is (N, out).
/// Initialization (Glorot & Bengio 2010, uniform): `W ~ U(−a, a)`,
/// `a = √(6 / (in + out))`, `b = 0`.
package struct Linear: Sendable {
    package let inputSize: Int
    package let outputSize: Int
    package let weight: ParameterSlot
    package let bias: ParameterSlot
    /// The layer's three products, whose kernels the store's `plan` gives.
    package var productSites: [ProductSite] { ProductSite.sites(inputs: inputSize, outputs: outputSize) }

    /// Registers `name.weight` (out, in) and `name.bias` (out) in `layout`.
    package init(_ inputSize: Int, _ outputSize: Int, name: String, layout: inout ParameterLayout) {
        self.inputSize = inputSize
        self.outputSize = outputSize
        weight = layout.register("\(name).weight", shape: [outputSize, inputSize])
        bias = layout.register("\(name).bias", shape: [outputSize])
    }

    /// Glorot-uniform weights, zero bias.
    package func initialize<Scalar: BLASScalar>(_ store: ParameterStore<Scalar>, using rng: Xoshiro256) {
        let a = (6.0 / Double(inputSize + outputSize)).squareRoot()
        let w = store.value(weight)
        for i in 0..<weight.count { w[i] = Scalar(a * (2 * rng.uniform(Double.self) - 1)) }
        store.value(bias).update(repeating: 0, count: bias.count)
    }

    /// `y ← x Wᵀ + b`: the bias is copied into every row of y, then one GEMM
    /// accumulates onto it. With `addBias: false`, `y ← x Wᵀ` and the caller
    /// adds the bias in its next pass (see `Activation.forward(_:bias:)`).
    /// `roundedX`: x already rounded to bfloat16 (`inputForms`), if it is.
    package func forward<Scalar: BLASScalar>(
        _ y: MatrixView<Scalar>, _ x: MatrixView<Scalar>, _ store: ParameterStore<Scalar>, addBias: Bool = true,
        roundedX: RoundedOperand? = nil
    ) {
        precondition(x.columns == inputSize && y.columns == outputSize && x.rows == y.rows)
        if addBias {
            let b = store.value(bias)
            for r in 0..<y.rows { (y.pointer + r * y.rowStride).update(from: b, count: outputSize) }
        }
        gemm(y, x, .none, store.valueMatrix(weight), .transposed, beta: addBias ? 1 : 0, kernel: kernel(.forward, store),
             workspace: store.productWorkspace, roundedA: roundedX, roundedB: store.roundedValue(weight))
    }

    /// Accumulates `dW += dyᵀ x` (or writes `dW ← dyᵀ x` over a stale
    /// gradient, `ParameterStore.gradientForWriting`), `db += Σ_rows dy`
    /// (unless the store says not to), and, when `dx` is given,
    /// `dx ← dy W` (or `dx += dy W` with `accumulateInput`).
    /// In bf16, dy is rounded once for both products (`roundedDy`, given by
    /// the pass that wrote dy, or rounded here); `roundedX` is x rounded
    /// already, if it is. `biasGradientAccumulated`: the pass that wrote dy
    /// added its column sums into db already (it then rounded dy in place).
    package func backward<Scalar: BLASScalar>(
        dx: MatrixView<Scalar>?, dy: MatrixView<Scalar>, x: MatrixView<Scalar>,
        _ store: ParameterStore<Scalar>, ones: UnsafePointer<Scalar>, accumulateInput: Bool = false,
        roundedX: RoundedOperand? = nil, roundedDy: RoundedOperand? = nil, biasGradientAccumulated: Bool = false
    ) {
        let weightKernel = kernel(.weightGradient, store), inputKernel = kernel(.inputGradient, store)
        var roundedDy = roundedDy
        if roundedDy == nil, store.accumulatesParameterGradients, dx != nil {
            roundedDy = store.productWorkspace.sharedOperand(dy, outputGradientForms(store))
        }
        if store.accumulatesParameterGradients {
            let (dW, beta) = store.gradientForWriting(weight)
            gemm(dW, dy, .transposed, x, .none, beta: beta, kernel: weightKernel,
                 workspace: store.productWorkspace, roundedA: roundedDy, roundedB: roundedX)
            if !biasGradientAccumulated { sumRows(dy, ones: ones, into: store.gradient(bias)) }
        }
        if let dx {
            gemm(dx, dy, .none, store.valueMatrix(weight), .none, beta: accumulateInput ? 1 : 0, kernel: inputKernel,
                 workspace: store.productWorkspace, roundedA: roundedDy, roundedB: store.roundedValue(weight))
        }
    }

    /// The bf16 forms in which this layer's products read its input x (the
    /// forward's A, the weight gradient's B): none in fp32.
    package func inputForms<Scalar>(_ store: ParameterStore<Scalar>) -> RoundedForms {
        Scalar.self == Float.self ? RoundedForms(reading: kernel(.forward, store), kernel(.weightGradient, store)) : []
    }

    /// The bf16 forms in which its products read dy (the weight and input
    /// gradients' A): none in fp32.
    package func outputGradientForms<Scalar>(_ store: ParameterStore<Scalar>) -> RoundedForms {
        Scalar.self == Float.self ? RoundedForms(reading: kernel(.weightGradient, store), kernel(.inputGradient, store)) : []
    }

    /// The kernel `store`'s plan computes `product` with.
    @inline(__always)
    func kernel<Scalar>(_ product: ProductSite.Product, _ store: ParameterStore<Scalar>) -> ProductKernel {
        store.plan.kernel(for: ProductSite(product, inputs: inputSize, outputs: outputSize))
    }
}
