import CIWAEKernels

/// The number format of the inputs of the layers' matrix products
/// (Mathematics §9).
///
/// Only the products' inputs change: with `.bf16` both operands of every
/// affine layer's product are rounded to bfloat16 and the product is
/// accumulated and returned in fp32. The parameters, Adam's moments, the
/// activations, log-sum-exp, log q, log r, the KL divergence, the Cholesky
/// factorizations and every reduction stay fp32.
public enum Precision: String, Codable, CaseIterable, Sendable {
    /// fp32 inputs (the default).
    case fp32
    /// bfloat16 inputs, fp32 accumulation and output.
    case bf16

    /// The largest relative error of one bfloat16 rounding (8 significand
    /// bits, to nearest): u = 2⁻⁸.
    public static let bfloat16UnitRoundoff = 0x1p-8

    /// How this process computes bf16 products; see `BFloat16Products`.
    public static var bf16Products: BFloat16Products { BFloat16Products.current }
}

/// How bf16 products run on this CPU.
public enum BFloat16Products: String, Sendable {
    /// Rounded operands, then the fp32 product of the backend the plan
    /// chose: the numbers of bf16 (each product of two bfloat16 values is
    /// exact in fp32, the sums are fp32) at fp32 speed. On CPUs without
    /// bf16 instructions.
    case emulated

    /// What this process does: always emulated in this version (the
    /// one-line notice says so).
    static let current: BFloat16Products = .emulated

    /// One line for the user when bf16 is asked for.
    public var notice: String {
        switch self {
        case .emulated:
            let cpu = Processor.current
            let units = cpu.hasAMXBF16 ? "AMX-BF16" : cpu.hasAVX512BF16 ? "AVX512-BF16" : "no bf16 instructions"
            return "bf16 products are emulated (operands rounded to bfloat16, products in fp32) on this CPU (\(units)): bf16's numbers at fp32's speed"
        }
    }
}

/// The rounded operands of bf16 products: one per worker (each
/// `ParameterStore` owns one), grown to the largest product and reused.
public final class ProductWorkspace<Scalar: BLASScalar> {
    private var storage: UnsafeMutablePointer<Scalar>
    private var capacity: Int

    public init() {
        capacity = 0
        storage = .allocate(capacity: 1)
    }

    deinit { storage.deallocate() }

    /// Two buffers of `first` and `second` elements, valid until the next call.
    package func buffers(_ first: Int, _ second: Int) -> (UnsafeMutablePointer<Scalar>, UnsafeMutablePointer<Scalar>) {
        if first + second > capacity {
            storage.deallocate()
            capacity = Swift.max(first + second, 2 * capacity)
            storage = .allocate(capacity: capacity)
        }
        return (storage, storage + first)
    }
}

/// `view` rounded to bfloat16 (to nearest, ties to even) into `out`,
/// contiguous (rows × columns).
package func roundToBFloat16<Scalar: BLASScalar>(_ view: MatrixView<Scalar>, into out: UnsafeMutablePointer<Scalar>) -> MatrixView<Scalar> {
    Scalar.roundToBFloat16(view.pointer, rowStride: view.rowStride, into: out, rows: view.rows, columns: view.columns)
    return MatrixView(out, rows: view.rows, columns: view.columns)
}

/// Rounds `value` to the nearest bfloat16 (ties to even), as the products do.
public func roundedToBFloat16(_ value: Float) -> Float {
    var x = value, y: Float = 0
    iwae_round_bf16_f32(&x, 1, &y, 1, 1)
    return y
}
