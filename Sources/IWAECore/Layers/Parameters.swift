import RealModule
import IWAELinearAlgebra

/// Where one named parameter tensor lives inside the flat parameter buffer.
package struct ParameterSlot: Sendable, Equatable {
    package let name: String
    package let shape: [Int]
    package let offset: Int
    /// Its position in the layout's `slots`.
    package let index: Int
    package var count: Int { shape.reduce(1, *) }
}

/// The layout of every parameter of a model in one contiguous buffer, in
/// registration order. Gradients and optimizer moments use the same layout,
/// so the optimizer is one flat loop and a checkpoint is one write.
package struct ParameterLayout: Sendable, Equatable {
    package private(set) var slots: [ParameterSlot] = []
    package private(set) var count = 0

    package init() {}

    /// Reserves `shape` under `name` and returns its slot.
    package mutating func register(_ name: String, shape: [Int]) -> ParameterSlot {
        precondition(!slots.contains { $0.name == name }, "duplicate parameter \(name)")
        let slot = ParameterSlot(name: name, shape: shape, offset: count, index: slots.count)
        slots.append(slot)
        count += slot.count
        return slot
    }

    package func slot(named name: String) -> ParameterSlot? { slots.first { $0.name == name } }
}

extension Linear {
    /// The layer's weight and bias.
    package var slots: [ParameterSlot] { [weight, bias] }
}

extension Array where Element == ParameterSlot {
    /// The positions these slots cover in the flat buffer, from the first
    /// offset to the last end (components register their slots contiguously).
    package var span: Range<Int> {
        guard let lo = map(\.offset).min(), let hi = map({ $0.offset + $0.count }).max() else { return 0..<0 }
        return lo..<hi
    }
}

/// The parameter buffer and its gradient buffer (same layout).
///
/// Gradients accumulate (`+=`) during a backward pass, from zero: either
/// the whole buffer is zeroed (`zeroGradients()`), or a training step marks
/// it stale (`markGradientsStale()`): then the first product to write a
/// slot overwrites it (`gradientForWriting`, β = 0), any other writer's
/// access zeroes the slot first (`gradient`), and `settleGradients()` zeroes
/// what the step did not write, before the buffer is read whole. A step
/// then never clears the weights' gradients: the products that compute
/// them write over the last step's, one pass over memory fewer.
package final class ParameterStore<Scalar: BLASScalar> {
    package let layout: ParameterLayout
    package let values: Tensor<Scalar>
    package let gradients: Tensor<Scalar>
    /// The kernel of each affine layer's products and their precision
    /// (`Linear` reads it). Set it before computing, never while this
    /// store's worker computes.
    package var plan = ComputePlan() {
        didSet { bfloat16Copy.isCurrent = false }   // the forms it needs may differ
    }
    /// The values rounded to bfloat16 by Adam's last update (shared, like
    /// the values): a bf16 plan's products read their weights from it.
    package let bfloat16Copy: BFloat16Copy
    /// This store's worker's rounded operands, for bf16 products.
    package let productWorkspace = ProductWorkspace<Scalar>()
    /// Whether backward passes accumulate the parameters' gradients. False
    /// for a worker that needs only the gradients with respect to the
    /// layers' inputs (AIS's ∇_z log p(x, z)): the weight-gradient products,
    /// a third of a backward's work, are skipped.
    package var accumulatesParameterGradients = true
    /// Whether slot i's gradient memory holds an earlier step's values
    /// (`markGradientsStale`), and whether any does.
    private var stale: [Bool]
    private var anyStale = false

    package init(layout: ParameterLayout) {
        self.layout = layout
        values = Tensor(shape: [layout.count])
        gradients = Tensor(shape: [layout.count])
        bfloat16Copy = BFloat16Copy(count: layout.count)
        stale = [Bool](repeating: false, count: layout.slots.count)
    }

    /// A store that shares `other`'s parameter values (the same memory) and
    /// has gradients of its own: one per worker of a data-parallel step.
    package init(sharingValuesOf other: ParameterStore) {
        layout = other.layout
        values = other.values
        gradients = Tensor(shape: [layout.count])
        bfloat16Copy = other.bfloat16Copy
        plan = other.plan
        stale = [Bool](repeating: false, count: layout.slots.count)
    }

    package func zeroGradients() {
        gradients.zero()
        settleGradients()
    }

    /// Says that the gradient buffer holds an earlier step's values, which
    /// the next backward pass writes over (see the type's doc).
    package func markGradientsStale() {
        for i in stale.indices { stale[i] = true }
        anyStale = true
    }

    /// Zeroes the slots that are still stale: after a backward pass, before
    /// the buffer is read whole.
    package func settleGradients() {
        guard anyStale else { return }
        for slot in layout.slots where stale[slot.index] { gradient(slot).update(repeating: 0, count: slot.count) }
        for i in stale.indices { stale[i] = false }
        anyStale = false
    }

    /// Says that the values were written by something other than Adam's
    /// update (which keeps `bfloat16Copy` in step): the copy is no longer
    /// read. Every writer of the values after the model's first product calls it.
    package func valuesChanged() { bfloat16Copy.isCurrent = false }

    /// Rounds the values into `bfloat16Copy` for this store's plan, unless
    /// it is current (nothing in fp32): a forward-only estimate's start, on
    /// one thread, before its workers read the copy.
    package func roundValuesForProducts() {
        guard Scalar.self == Float.self else { return }
        UnsafeRawPointer(values.pointer).withMemoryRebound(to: Float.self, capacity: values.count) { bfloat16Copy.round($0, for: plan) }
    }

    /// The weight of `slot` rounded to bfloat16, when Adam's copy is current
    /// (Float stores only).
    package func roundedValue(_ slot: ParameterSlot) -> RoundedOperand? {
        Scalar.self == Float.self ? bfloat16Copy.operand(at: slot.offset) : nil
    }

    package func value(_ slot: ParameterSlot) -> UnsafeMutablePointer<Scalar> { values.pointer + slot.offset }
    /// The gradient of `slot`, to add to (zeroed first when it is stale).
    package func gradient(_ slot: ParameterSlot) -> UnsafeMutablePointer<Scalar> {
        let pointer = gradients.pointer + slot.offset
        if anyStale && stale[slot.index] {
            pointer.update(repeating: 0, count: slot.count)
            stale[slot.index] = false
        }
        return pointer
    }

    /// The gradient of `slot` as a matrix, for a product that adds to it,
    /// and the β that product takes: 0 when the slot is stale (the product
    /// writes over it, and the slot is current afterwards), else 1.
    package func gradientForWriting(_ slot: ParameterSlot) -> (MatrixView<Scalar>, beta: Scalar) {
        let stale = anyStale && self.stale[slot.index]
        if stale { self.stale[slot.index] = false }
        return (matrix(gradients.pointer + slot.offset, slot), stale ? 0 : 1)
    }

    /// The slot's values as an (out, in) matrix, or a 1×n row for vectors.
    package func valueMatrix(_ slot: ParameterSlot) -> MatrixView<Scalar> { matrix(value(slot), slot) }
    /// Its gradient, the same way (to add to, as `gradient`).
    package func gradientMatrix(_ slot: ParameterSlot) -> MatrixView<Scalar> { matrix(gradient(slot), slot) }

    private func matrix(_ pointer: UnsafeMutablePointer<Scalar>, _ slot: ParameterSlot) -> MatrixView<Scalar> {
        MatrixView(pointer, rows: slot.shape.count == 2 ? slot.shape[0] : 1, columns: slot.shape.last ?? 1)
    }
}
