import RealModule
import IWAELinearAlgebra

/// Where one named parameter tensor lives inside the flat parameter buffer.
package struct ParameterSlot: Sendable, Equatable {
    package let name: String
    package let shape: [Int]
    package let offset: Int
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
        let slot = ParameterSlot(name: name, shape: shape, offset: count)
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
/// Gradients accumulate (`+=`) during a backward pass and are zeroed once per
/// step by `zeroGradients()`.
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

    package init(layout: ParameterLayout) {
        self.layout = layout
        values = Tensor(shape: [layout.count])
        gradients = Tensor(shape: [layout.count])
        bfloat16Copy = BFloat16Copy(count: layout.count)
    }

    /// A store that shares `other`'s parameter values (the same memory) and
    /// has gradients of its own: one per worker of a data-parallel step.
    package init(sharingValuesOf other: ParameterStore) {
        layout = other.layout
        values = other.values
        gradients = Tensor(shape: [layout.count])
        bfloat16Copy = other.bfloat16Copy
        plan = other.plan
    }

    package func zeroGradients() { gradients.zero() }

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
    package func gradient(_ slot: ParameterSlot) -> UnsafeMutablePointer<Scalar> { gradients.pointer + slot.offset }

    /// The slot as an (out, in) matrix, or a 1×n row for vectors.
    package func valueMatrix(_ slot: ParameterSlot) -> MatrixView<Scalar> {
        MatrixView(value(slot), rows: slot.shape.count == 2 ? slot.shape[0] : 1, columns: slot.shape.last ?? 1)
    }
    package func gradientMatrix(_ slot: ParameterSlot) -> MatrixView<Scalar> {
        MatrixView(gradient(slot), rows: slot.shape.count == 2 ? slot.shape[0] : 1, columns: slot.shape.last ?? 1)
    }
}
