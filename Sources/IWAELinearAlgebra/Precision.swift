import CDNNL
import CIWAEKernels
import Foundation

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
    package static let bfloat16UnitRoundoff = 0x1p-8
}

/// The CPU's bfloat16 units and whether oneDNN's bf16 matmul may use them:
/// a candidate of the planner (`ComputePlanner`) only where this says so.
package struct BFloat16Units: Sendable {
    /// "AMX-BF16", "AVX512-BF16" or "no bf16 units".
    package let name: String
    /// oneDNN's bf16 matmul runs here and agrees with the emulation on a
    /// test product, to fp32's rounding of the sums.
    package let kernelPasses: Bool
    /// Why it may not be used, when it may not.
    package let whyUnavailable: String

    package init(name: String, kernelPasses: Bool, whyUnavailable: String) {
        self.name = name
        self.kernelPasses = kernelPasses
        self.whyUnavailable = whyUnavailable
    }

    /// This machine's, checked once at the first bf16 plan. On a CPU without
    /// bf16 units, or with `IWAE_BF16=emulate`, the kernel is not tried.
    package static let current: BFloat16Units = {
        let cpu = Processor.current
        let name = cpu.hasAMXBF16 ? "AMX-BF16" : cpu.hasAVX512BF16 ? "AVX512-BF16" : "no bf16 units"
        guard cpu.hasAVX512BF16 || cpu.hasAMXBF16 else {
            return BFloat16Units(name: name, kernelPasses: false, whyUnavailable: "no bf16 units on this CPU")
        }
        if ProcessInfo.processInfo.environment["IWAE_BF16"] == "emulate" {
            return BFloat16Units(name: name, kernelPasses: false, whyUnavailable: "IWAE_BF16=emulate")
        }
        let failure = oneDNNCheckFailure()
        return BFloat16Units(name: name, kernelPasses: failure == nil, whyUnavailable: failure.map { "oneDNN's bf16 matmul \($0)" } ?? "")
    }()

    /// oneDNN's bf16 product of a 67×131 by a 131×45 matrix (both transposes
    /// of A, accumulating onto C) against the emulated product: equal to
    /// fp32's rounding of the sums, 2·γ₁₃₂·(|C| + |Ã||B̃|). Nil when it
    /// passes, else what went wrong.
    package static func oneDNNCheckFailure() -> String? {
        let m = 67, n = 45, k = 131
        let rng = Xoshiro256(seed: 0xBF16)
        let a = (0..<m * k).map { _ in rng.uniform(Float.self) * 2 - 1 }, b = (0..<k * n).map { _ in rng.uniform(Float.self) * 2 - 1 }
        let c0 = (0..<m * n).map { _ in rng.uniform(Float.self) - 0.5 }
        let ra = a.map(roundedToBFloat16), rb = b.map(roundedToBFloat16)
        var expected = c0
        gemmFloat(ra, rb, into: &expected, m: m, n: n, k: k)
        for transposeA in [false, true] {
            // A stored as given (m × k) or as its transpose (k × m).
            let stored = transposeA ? (0..<k * m).map { i in a[(i % m) * k + i / m] } : a
            var bitsA = [UInt16](repeating: 0, count: m * k), bitsB = [UInt16](repeating: 0, count: k * n)
            stored.withUnsafeBufferPointer { iwae_to_bf16($0.baseAddress!, transposeA ? m : k, &bitsA, transposeA ? k : m, transposeA ? m : k) }
            b.withUnsafeBufferPointer { iwae_to_bf16($0.baseAddress!, n, &bitsB, k, n) }
            var c = c0
            let status = iwae_dnnl_bf16_gemm(1, CChar(UInt8(ascii: transposeA ? "T" : "N")), CChar(UInt8(ascii: "N")), m, n, k,
                                             bitsA, transposeA ? m : k, bitsB, n, 1, &c, n)
            guard status == dnnl_success else {
                return "is not available (oneDNN status \(status.rawValue))"
            }
            let gamma = Double(k + 1) * 0x1p-24 / (1 - Double(k + 1) * 0x1p-24)
            for i in 0..<m {
                for j in 0..<n {
                    var magnitude = Double(abs(c0[i * n + j]))
                    for l in 0..<k { magnitude += abs(Double(ra[i * k + l]) * Double(rb[l * n + j])) }
                    if abs(Double(c[i * n + j]) - Double(expected[i * n + j])) > 2 * gamma * magnitude + 1e-30 {
                        return "disagreed with the emulation at (\(i), \(j)): \(c[i * n + j]) against \(expected[i * n + j])"
                    }
                }
            }
        }
        return nil
    }

    /// C += A B in fp32 by OpenBLAS (row-major, no transposes).
    private static func gemmFloat(_ a: [Float], _ b: [Float], into c: inout [Float], m: Int, n: Int, k: Int) {
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    Float.gemm(transposeA: .none, transposeB: .none, m: m, n: n, kk: k, alpha: 1, a: a.baseAddress!, lda: k,
                               b: b.baseAddress!, ldb: n, beta: 1, c: c.baseAddress!, ldc: n)
                }
            }
        }
    }
}

/// The rounded operands of bf16 products: one per worker (each
/// `ParameterStore` owns one), grown to the largest product and reused.
@usableFromInline package final class ProductWorkspace<Scalar: BLASScalar> {
    /// The products' own operands (`buffers`).
    private var storage = GrowingBuffer<Scalar>()
    /// The storage of `sharedOperand`.
    private let shared = RoundedBuffer()

    @usableFromInline package init() {}

    deinit {
        storage.deallocate()
    }

    /// `view` (Float) rounded to bfloat16 once for several products, in
    /// `forms` (nil when none), contiguous, valid until the next call (the
    /// products' own buffers, `buffers`, are apart).
    package func sharedOperand(_ view: MatrixView<Scalar>, _ forms: RoundedForms) -> RoundedOperand? {
        guard let destination = shared.reserve(view.count, forms) else { return nil }
        roundToBFloat16(view, into: destination)
        return destination.operand
    }

    /// Two buffers of `first` and `second` elements, valid until the next call.
    package func buffers(_ first: Int, _ second: Int) -> (UnsafeMutablePointer<Scalar>, UnsafeMutablePointer<Scalar>) {
        let start = storage.reserve(first + second)
        return (start, start + first)
    }
}

/// A buffer grown (doubling, never shrunk) to the largest count asked for;
/// its contents are not kept when it grows.
struct GrowingBuffer<Element> {
    private var pointer = UnsafeMutablePointer<Element>.allocate(capacity: 1)
    private(set) var capacity = 0

    /// Room for `count` elements.
    mutating func reserve(_ count: Int) -> UnsafeMutablePointer<Element> {
        if count > capacity {
            pointer.deallocate()
            capacity = Swift.max(count, 2 * capacity)
            pointer = .allocate(capacity: capacity)
        }
        return pointer
    }

    func deallocate() { pointer.deallocate() }
}

/// `view` rounded to bfloat16 (to nearest, ties to even) into `out`,
/// contiguous (rows × columns).
package func roundToBFloat16<Scalar: BLASScalar>(_ view: MatrixView<Scalar>, into out: UnsafeMutablePointer<Scalar>) -> MatrixView<Scalar> {
    Scalar.roundToBFloat16(view.pointer, rowStride: view.rowStride, into: out, rows: view.rows, columns: view.columns)
    return MatrixView(out, rows: view.rows, columns: view.columns)
}

/// Rounds `value` to the nearest bfloat16 (ties to even), as the products do.
package func roundedToBFloat16(_ value: Float) -> Float {
    var x = value, y: Float = 0
    iwae_round_bf16_f32(&x, 1, &y, 1, 1)
    return y
}
