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
    }

    /// Bytes held by the buffers.
    package var bufferBytes: Int {
        (outputs + gradients + [ones]).reduce(0) { $0 + $1.capacity * MemoryLayout<Scalar>.stride }
    }

    /// Runs the stack on `x` (N, in) and returns the output view (N, out),
    /// valid until the next forward. With `deferOutputBias` (last activation
    /// identity) the output lacks the last layer's bias, which the consumer
    /// folds into its own pass (`outputBias`).
    @discardableResult
    package func forward(_ x: MatrixView<Scalar>, _ store: ParameterStore<Scalar>, deferOutputBias: Bool = false) -> MatrixView<Scalar> {
        precondition(!deferOutputBias || activations.last == .identity)
        reserve(rows: x.rows)
        rows = x.rows
        input = x
        var current = x
        for (i, layer) in layers.enumerated() {
            let y = MatrixView(outputs[i].pointer, rows: rows, columns: layer.outputSize)
            var t = profiler.start()
            layer.forward(y, current, store, addBias: false)
            profiler.stop(gemmPhase, t)
            if !(deferOutputBias && i == layers.count - 1) {
                t = profiler.start()
                activations[i].forward(y, bias: store.value(layer.bias))
                profiler.stop(.elementwise, t)
            }
            current = y
        }
        return current
    }

    /// The last layer's bias (out), for consumers of a `deferOutputBias` forward.
    package func outputBias(_ store: ParameterStore<Scalar>) -> UnsafePointer<Scalar> {
        UnsafePointer(store.value(layers.last!.bias))
    }

    /// The output of the last forward (N, out).
    package var output: MatrixView<Scalar> { MatrixView(outputs.last!.pointer, rows: rows, columns: outputSize) }

    /// The upstream-gradient buffer for the output (N, out): write dL/dy here,
    /// then call `backward`.
    package var outputGradient: MatrixView<Scalar> { MatrixView(gradients.last!.pointer, rows: rows, columns: outputSize) }

    /// Backpropagates `outputGradient` (consumed in place) through the stack,
    /// accumulating parameter gradients; writes dL/dx into `dx` when given.
    package func backward(dx: MatrixView<Scalar>?, _ store: ParameterStore<Scalar>, accumulateInput: Bool = false) {
        guard let input else { preconditionFailure("backward before forward") }
        for i in stride(from: layers.count - 1, through: 0, by: -1) {
            let layer = layers[i]
            let dy = MatrixView(gradients[i].pointer, rows: rows, columns: layer.outputSize)
            var t = profiler.start()
            activations[i].backward(dy, output: MatrixView(outputs[i].pointer, rows: rows, columns: layer.outputSize))
            profiler.stop(.elementwise, t)
            t = profiler.start()
            defer { profiler.stop(gemmPhase, t) }
            let x = i == 0 ? input : MatrixView(outputs[i - 1].pointer, rows: rows, columns: layer.inputSize)
            let dxi = i == 0 ? dx : MatrixView(gradients[i - 1].pointer, rows: rows, columns: layer.inputSize)
            layer.backward(dx: dxi, dy: dy, x: x, store, ones: ones.pointer, accumulateInput: i == 0 && accumulateInput)
        }
    }

    /// The ones vector (≥ N entries) for bias gradients of heads attached to this stack.
    package var onesVector: UnsafePointer<Scalar> { UnsafePointer(ones.pointer) }
}
