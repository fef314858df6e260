import RealModule
import IWAELinearAlgebra

/// A stack of `Linear` layers, each followed by its `Activation`.
///
/// Shapes: input (N, sizes[0]), layer i maps (N, sizes[i]) → (N, sizes[i+1]),
/// output (N, sizes.last). The forward keeps every layer's output (what the
/// backward needs); buffers are sized for `capacity` rows and reused.
package final class MLP<Scalar: BLASScalar> {
    package let layers: [Linear]
    package let activations: [Activation]
    package private(set) var capacity = 0
    private var outputs: [Tensor<Scalar>] = []
    private var gradients: [Tensor<Scalar>] = []
    private var ones = Tensor<Scalar>(shape: [0])
    private var rows = 0
    private var input: MatrixView<Scalar>?
    /// In a bf16 plan, the operands that each forward rounds once for the
    /// products of both passes: index i is layer i's input (the first by a
    /// pass of its own, the others by the activation that makes them), the
    /// last the stack's output when a forward is asked to round it.
    private var roundedInputBuffers: [RoundedBuffer] = []
    private var roundedInputs: [RoundedOperand?] = []
    /// The gradient dy of the layer the backward is at, rounded by the pass
    /// that makes it (`gradientPass`), unless rounded in place.
    private var roundedGradientBuffer = RoundedBuffer()
    /// Optional timing of GEMM and elementwise phases.
    package var profiler: PhaseProfiler?
    /// The phase this stack's GEMMs are counted under.
    package var gemmPhase = PhaseProfiler.Phase.gemm

    /// Registers layers `name.0`, `name.1`, … of `sizes` in `layout`.
    package init(sizes: [Int], activations: [Activation], name: String, layout: inout ParameterLayout) {
        precondition(sizes.count >= 2 && activations.count == sizes.count - 1)
        layers = (0..<sizes.count - 1).map { Linear(sizes[$0], sizes[$0 + 1], name: "\(name).\($0)", layout: &layout) }
        self.activations = activations
    }

    package var inputSize: Int { layers.first!.inputSize }
    package var outputSize: Int { layers.last!.outputSize }

    package func initialize(_ store: ParameterStore<Scalar>, using rng: Xoshiro256) {
        for layer in layers { layer.initialize(store, using: rng) }
    }

    /// Makes room for `rows` rows (allocates only when growing).
    package func reserve(rows: Int) {
        guard rows > capacity else { return }
        capacity = rows
        outputs = layers.map { Tensor(shape: [rows, $0.outputSize]) }
        gradients = layers.map { Tensor(shape: [rows, $0.outputSize]) }
        ones = Tensor(shape: [rows])
        ones.fill(1)
    }

    /// Frees the buffers (they grow again on the next forward).
    package func releaseBuffers() {
        capacity = 0
        outputs = []
        gradients = []
        ones = Tensor(shape: [0])
        rows = 0
        input = nil
        roundedInputBuffers = []
        roundedInputs = []
        roundedGradientBuffer = RoundedBuffer()
    }

    /// Bytes held by the buffers.
    package var bufferBytes: Int {
        (outputs + gradients + [ones]).reduce(0) { $0 + $1.capacity * MemoryLayout<Scalar>.stride }
            + (roundedInputBuffers + [roundedGradientBuffer]).reduce(0) { $0 + $1.bytes }
    }

    /// Runs the stack on `x` (N, in) and returns the output view (N, out),
    /// valid until the next forward. With `deferOutputBias` (last activation
    /// identity) the output lacks the last layer's bias, which the consumer
    /// folds into its own pass (`outputBias`). In a bf16 plan the output is
    /// also rounded for `outputReaders`, the layers that read it
    /// (`roundedOutput`). Without `keepActivations` (a forward that no
    /// backward follows, such as an evaluation's) an activation that only
    /// emulated bf16 products read next is rounded in place, not beside
    /// itself: no backward needs it in fp32.
    @discardableResult
    package func forward(_ x: MatrixView<Scalar>, _ store: ParameterStore<Scalar>, deferOutputBias: Bool = false,
                         outputReaders: [Linear] = [], keepActivations: Bool = true) -> MatrixView<Scalar> {
        precondition(!deferOutputBias || activations.last == .identity)
        reserve(rows: x.rows)
        rows = x.rows
        input = x
        if roundedInputBuffers.isEmpty {
            roundedInputBuffers = (0...layers.count).map { _ in RoundedBuffer() }
            roundedInputs = Array(repeating: nil, count: layers.count + 1)
        }
        for i in roundedInputs.indices { roundedInputs[i] = nil }
        if let destination = roundedInputBuffers[0].reserve(x.count, layers[0].inputForms(store)) {
            roundToBFloat16(x, into: destination)
            roundedInputs[0] = destination.operand
        }
        var current = x
        for (i, layer) in layers.enumerated() {
            let y = MatrixView(outputs[i].pointer, rows: rows, columns: layer.outputSize)
            var t = profiler.start()
            layer.forward(y, current, store, addBias: false, roundedX: roundedInputs[i])
            profiler.stop(gemmPhase, t)
            if !(deferOutputBias && i == layers.count - 1) {
                t = profiler.start()
                let forms = i + 1 < layers.count ? layers[i + 1].inputForms(store)
                    : outputReaders.reduce(into: RoundedForms()) { $0.formUnion($1.inputForms(store)) }
                let destination = !keepActivations && forms == .floats
                    ? RoundedDestination(bits: nil, floats: UnsafeMutableRawPointer(y.pointer).assumingMemoryBound(to: Float.self))
                    : roundedInputBuffers[i + 1].reserve(y.count, forms)
                activations[i].forward(y, bias: store.value(layer.bias), rounded: destination)
                roundedInputs[i + 1] = destination?.operand
                profiler.stop(.elementwise, t)
            }
            current = y
        }
        return current
    }

    /// The output of the last forward rounded to bfloat16 for the
    /// `outputReaders` it was given (nil in fp32 or without readers).
    package var roundedOutput: RoundedOperand? { roundedInputs.last ?? nil }

    /// The last layer's bias (out), for consumers of a `deferOutputBias` forward.
    package func outputBias(_ store: ParameterStore<Scalar>) -> UnsafePointer<Scalar> {
        UnsafePointer(store.value(layers.last!.bias))
    }

    /// The output of the last forward (N, out).
    package var output: MatrixView<Scalar> { MatrixView(outputs.last!.pointer, rows: rows, columns: outputSize) }

    /// The upstream-gradient buffer for the output (N, out): write dL/dy here,
    /// then call `backward`.
    package var outputGradient: MatrixView<Scalar> { MatrixView(gradients.last!.pointer, rows: rows, columns: outputSize) }

    /// What the pass that writes layer `i`'s dy also does in a bf16 plan
    /// (nothing in fp32): rounds it for the products that read it, into
    /// `roundedGradientBuffer`, or in place when they read only rounded
    /// floats (the emulations), having first added its column sums into the
    /// bias gradient, which the rounded values could no longer give.
    private func gradientPass(_ i: Int, _ store: ParameterStore<Scalar>, readsDy: Bool) -> GradientPass<Scalar> {
        let layer = layers[i], count = rows * layer.outputSize
        let forms = readsDy ? layer.outputGradientForms(store) : []
        guard forms == .floats else { return GradientPass(rounded: roundedGradientBuffer.reserve(count, forms), biasGradient: nil) }
        let dy = UnsafeMutableRawPointer(gradients[i].pointer).assumingMemoryBound(to: Float.self)
        return GradientPass(rounded: RoundedDestination(bits: nil, floats: dy),
                            biasGradient: store.accumulatesParameterGradients ? store.gradient(layer.bias) : nil)
    }

    /// What the writer of `outputGradient` does in the same pass in a bf16
    /// plan (`GradientPass`); it then calls `backward(…, outputGradientPassDone: true)`.
    package func outputGradientPass(_ store: ParameterStore<Scalar>) -> GradientPass<Scalar> {
        gradientPass(layers.count - 1, store, readsDy: true)
    }

    /// Backpropagates `outputGradient` (consumed in place) through the stack,
    /// accumulating parameter gradients; writes dL/dx into `dx` when given.
    /// `outputGradientPassDone`: its writer did `outputGradientPass`.
    package func backward(dx: MatrixView<Scalar>?, _ store: ParameterStore<Scalar>, accumulateInput: Bool = false,
                          outputGradientPassDone: Bool = false) {
        guard let input else { preconditionFailure("backward before forward") }
        precondition(!outputGradientPassDone || activations.last == .identity, "a writer's pass stands for the identity's backward only")
        for i in stride(from: layers.count - 1, through: 0, by: -1) {
            let layer = layers[i]
            let dy = MatrixView(gradients[i].pointer, rows: rows, columns: layer.outputSize)
            let x = i == 0 ? input : MatrixView(outputs[i - 1].pointer, rows: rows, columns: layer.inputSize)
            let dxi = i == 0 ? dx : MatrixView(gradients[i - 1].pointer, rows: rows, columns: layer.inputSize)
            var t = profiler.start()
            let done = outputGradientPassDone && i == layers.count - 1
            let pass = gradientPass(i, store, readsDy: done || store.accumulatesParameterGradients || dxi != nil)
            if !done {
                activations[i].backward(dy, output: MatrixView(outputs[i].pointer, rows: rows, columns: layer.outputSize),
                                        rounded: pass.rounded, columnSums: pass.biasGradient)
            }
            profiler.stop(.elementwise, t)
            t = profiler.start()
            defer { profiler.stop(gemmPhase, t) }
            layer.backward(dx: dxi, dy: dy, x: x, store, ones: ones.pointer, accumulateInput: i == 0 && accumulateInput,
                           roundedX: roundedInputs[i], roundedDy: pass.rounded?.operand, biasGradientAccumulated: pass.biasGradient != nil)
        }
    }

    /// The ones vector (≥ N entries) for bias gradients of heads attached to this stack.
    package var onesVector: UnsafePointer<Scalar> { UnsafePointer(ones.pointer) }
}

/// What a pass that writes a layer's gradient dy also does in a bf16 plan:
/// writes dy rounded to bfloat16 into `rounded` (its floats may be dy's
/// own: rounded in place), and, when `biasGradient` is given, adds dy's
/// column sums into it first.
package struct GradientPass<Scalar: BLASScalar> {
    package let rounded: RoundedDestination?
    package let biasGradient: UnsafeMutablePointer<Scalar>?
}
