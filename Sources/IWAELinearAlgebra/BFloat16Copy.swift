import CIWAEKernels

/// A parameter buffer's values rounded to bfloat16 (to nearest, ties to
/// even), in the forms a bf16 plan's products read them: bit patterns for
/// oneDNN's bf16 matmul, rounded floats for the emulation. Adam writes it in
/// its own pass over the values (`adamStepSummingAndRounding`), so
/// that a training step reads each weight rounded once by the update that
/// made it, instead of rounding it again at each of its products in every
/// worker. The products would round the same values to the same bits.
///
/// A forward-only estimate, with no update to make it, rounds the values
/// into it once at its start (`round(_:for:)`). It is current (`isCurrent`)
/// from then until anything else writes the values: such a writer calls
/// `ParameterStore.valuesChanged()`, and a product whose operand is not
/// current rounds it itself.
package final class BFloat16Copy: @unchecked Sendable {
    /// The number of values.
    package let count: Int
    /// The bit patterns, when a plan's products read them (else nil).
    package private(set) var bits: UnsafeMutablePointer<UInt16>?
    /// The rounded floats, when a plan's products read them (else nil).
    package private(set) var floats: UnsafeMutablePointer<Float>?
    /// Whether the forms held are the values' rounding now.
    package var isCurrent = false

    package init(count: Int) { self.count = count }

    deinit {
        bits?.deallocate()
        floats?.deallocate()
    }

    /// Allocates the forms in which `plan`'s products read the values (none
    /// in fp32) and returns them: bits where a product that reads the
    /// weights (the forward or the input gradient; a weight gradient reads
    /// only activations) runs oneDNN's bf16 matmul, floats where one runs
    /// the emulation.
    package func prepare(for plan: ComputePlan) -> (bits: UnsafeMutablePointer<UInt16>?, floats: UnsafeMutablePointer<Float>?) {
        guard plan.precision == .bf16 else { return (nil, nil) }
        var forms = RoundedForms()
        for (site, kernel) in plan.kernels where site.product != .weightGradient { forms.formUnion(RoundedForms(reading: kernel)) }
        if forms.isEmpty { forms = .floats }   // the sites a plan does not name run the emulation
        if forms.contains(.bits) && bits == nil { bits = .allocate(capacity: Swift.max(count, 1)) }
        if forms.contains(.floats) && floats == nil { floats = .allocate(capacity: Swift.max(count, 1)) }
        return (forms.contains(.bits) ? bits : nil, forms.contains(.floats) ? floats : nil)
    }

    /// Rounds `values` (`count` of them) into the forms `plan`'s products
    /// read and marks them current, unless they are already: a forward-only
    /// estimate, which no update keeps in step, calls it once at its start,
    /// so its products read each weight rounded once instead of rounding it
    /// at every pass. Nothing in fp32.
    package func round(_ values: UnsafePointer<Float>, for plan: ComputePlan) {
        guard !isCurrent else { return }
        let (bits, floats) = prepare(for: plan)
        guard bits != nil || floats != nil else { return }
        roundToBFloat16(MatrixView(UnsafeMutablePointer(mutating: values), rows: 1, columns: count),
                        into: RoundedDestination(bits: bits, floats: floats))
        isCurrent = true
    }

    /// The rounded forms of the values from `offset` on, when current.
    package func operand(at offset: Int) -> RoundedOperand? {
        guard isCurrent, bits != nil || floats != nil else { return nil }
        return RoundedOperand(bits: bits.map { UnsafePointer($0 + offset) }, floats: floats.map { UnsafePointer($0 + offset) })
    }
}

/// A product operand already rounded to bfloat16: its bit patterns and/or
/// its rounded floats, contiguous (row stride = columns), either nil when
/// not kept.
@usableFromInline package struct RoundedOperand {
    @usableFromInline package let bits: UnsafePointer<UInt16>?
    @usableFromInline package let floats: UnsafePointer<Float>?

    package init(bits: UnsafePointer<UInt16>?, floats: UnsafePointer<Float>?) {
        self.bits = bits
        self.floats = floats
    }
}

/// The forms of a bf16 operand that products read: bit patterns (oneDNN's
/// bf16 matmul) and rounded floats (the emulations).
package struct RoundedForms: OptionSet, Sendable {
    package let rawValue: Int
    package init(rawValue: Int) { self.rawValue = rawValue }
    package static let bits = RoundedForms(rawValue: 1), floats = RoundedForms(rawValue: 2)

    /// The forms that `kernels` read (none for fp32 kernels).
    package init(reading kernels: ProductKernel...) {
        self = []
        for kernel in kernels where kernel.precision == .bf16 { formUnion(kernel == .onednnBF16 ? .bits : .floats) }
    }
}

/// Where a pass that makes a bf16 product's operand also writes it rounded
/// to bfloat16: bit patterns and/or rounded floats, contiguous, nil when
/// not wanted (`BLASScalar.biasTanh(…, rounded:)` and the like).
@usableFromInline package struct RoundedDestination {
    @usableFromInline package let bits: UnsafeMutablePointer<UInt16>?
    @usableFromInline package let floats: UnsafeMutablePointer<Float>?

    package init(bits: UnsafeMutablePointer<UInt16>?, floats: UnsafeMutablePointer<Float>?) {
        self.bits = bits
        self.floats = floats
    }

    /// What the products read.
    package var operand: RoundedOperand {
        RoundedOperand(bits: bits.map { UnsafePointer($0) }, floats: floats.map { UnsafePointer($0) })
    }
}

/// One operand's rounded forms, grown to the largest asked for and reused.
package final class RoundedBuffer {
    private var bits = GrowingBuffer<UInt16>(), floats = GrowingBuffer<Float>()

    package init() {}

    deinit {
        bits.deallocate()
        floats.deallocate()
    }

    /// Bytes held.
    package var bytes: Int { bits.capacity * 2 + floats.capacity * 4 }

    /// Room for `count` values in `forms`, valid until the next call; nil
    /// when `forms` is empty.
    package func reserve(_ count: Int, _ forms: RoundedForms) -> RoundedDestination? {
        if forms.isEmpty { return nil }
        return RoundedDestination(bits: forms.contains(.bits) ? bits.reserve(count) : nil,
                                  floats: forms.contains(.floats) ? floats.reserve(count) : nil)
    }
}

/// The floats among every `stride`-th bit pattern of [−1, 1] (its normal
/// floats and ±0) that the bias-and-tanh pass rounds to bfloat16 otherwise
/// than `roundToBFloat16` does: it rounds tanh's outputs by Veltkamp's
/// split (three float operations), valid on that range only.
package func tanhOutputRoundingMismatches(stride: Int) -> Int {
    var mismatches = 0
    iwae_bf16_unit_mismatches(stride, &mismatches)
    return mismatches
}

/// `x` (Float) rounded to bfloat16 into each form of `destination`: a pass
/// of its own, for an operand no other pass writes.
package func roundToBFloat16<Scalar: BLASScalar>(_ x: MatrixView<Scalar>, into destination: RoundedDestination) {
    precondition(Scalar.self == Float.self, "bf16 operands are Float")
    let p = UnsafeRawPointer(x.pointer).assumingMemoryBound(to: Float.self)
    if let bits = destination.bits { iwae_to_bf16(p, x.rowStride, bits, x.rows, x.columns) }
    if let floats = destination.floats { iwae_round_bf16_f32(p, x.rowStride, floats, x.rows, x.columns) }
}

/// A gradient dy (Float, contiguous) already computed, ended in one sweep
/// as the gradient passes end theirs (`BLASScalar.tanhBackward(…)`): its
/// column sums added into `columnSums` when given, then rounded into
/// `destination` (in place when its floats are dy's).
package func sumColumnsAndRound<Scalar: BLASScalar>(_ dy: MatrixView<Scalar>, into columnSums: UnsafeMutablePointer<Scalar>?,
                                                    rounding destination: RoundedDestination?) {
    precondition(Scalar.self == Float.self && dy.isContiguous, "bf16 operands are contiguous Float")
    iwae_finish_rows_f32(UnsafeMutableRawPointer(dy.pointer).assumingMemoryBound(to: Float.self), dy.rows, dy.columns,
                         destination?.bits, destination?.floats,
                         columnSums.map { UnsafeMutableRawPointer($0).assumingMemoryBound(to: Float.self) })
}

/// Adam's update of `count` values on the sum of `sources` gradient
/// buffers (`BLASScalar.adamStepSumming`, the same bits), also writing the
/// new values rounded to bfloat16 into `bits` and `floats` where given.
package func adamStepSummingAndRounding(
    parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<UnsafeMutablePointer<Float>?>, sources: Int,
    firstMoment: UnsafeMutablePointer<Float>, secondMoment: UnsafeMutablePointer<Float>, count: Int,
    beta1: Float, beta2: Float, stepSize: Float, epsilon: Float,
    bits: UnsafeMutablePointer<UInt16>?, floats: UnsafeMutablePointer<Float>?
) {
    iwae_adam_sum_f32(parameters, gradients, sources, firstMoment, secondMoment, count, beta1, beta2, stepSize, epsilon,
                      bits, floats)
}
