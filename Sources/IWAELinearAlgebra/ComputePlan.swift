import CDNNL
import Foundation

/// A library that computes the engine's Float matrix products.
public enum GEMMBackend: String, Codable, CaseIterable, Sendable {
    /// OpenBLAS's sgemm (its kernels are what `BLASLibrary.kernels` reports).
    case openblas
    /// oneDNN's matmul primitive, which picks its kernels from the CPU's
    /// feature flags (not its `dnnl_sgemm`, which a handled signal can
    /// make corrupt the heap: the CDNNL shim says how that was found).
    case onednn

    /// "oneDNN 2.6.3" and the like.
    package static var oneDNNVersion: String {
        guard let v = dnnl_version()?.pointee else { return "oneDNN" }
        return "oneDNN \(v.major).\(v.minor).\(v.patch)"
    }
}

/// How one matrix product is computed: the number format of its inputs and
/// the code that multiplies. The five kernels give two kinds of numbers:
///
///     fp32   C ← α·op(A)·op(B) + β·C                      openblas, onednn
///     bf16   C ← α·op(bf16(A))·op(bf16(B)) + β·C          the other three
///
/// Every bf16 kernel rounds both operands to bfloat16 and sums in fp32, so
/// the three agree to fp32's rounding of the sums (each product of two
/// bfloat16 values is exact in fp32). The emulations round into fp32
/// buffers and call the fp32 library; `onednnBF16` hands bfloat16 bit
/// patterns to oneDNN's bf16 matmul (AMX-BF16 tiles or AVX512-BF16 dot
/// products), which is faster only where those units are (`ComputePlanner`
/// times it).
public enum ProductKernel: String, Codable, CaseIterable, Sendable {
    /// fp32 inputs, OpenBLAS's sgemm.
    case openblas
    /// fp32 inputs, oneDNN's matmul.
    case onednn
    /// bf16 inputs emulated: operands rounded to bfloat16, then OpenBLAS's sgemm.
    case openblasEmulatingBF16 = "openblas-bf16-emulated"
    /// bf16 inputs emulated: operands rounded to bfloat16, then oneDNN's fp32 matmul.
    case onednnEmulatingBF16 = "onednn-bf16-emulated"
    /// bf16 inputs on the CPU's bfloat16 units: oneDNN's bf16 matmul.
    case onednnBF16 = "onednn-bf16"

    /// The inputs' number format.
    public var precision: Precision {
        switch self {
        case .openblas, .onednn: .fp32
        case .openblasEmulatingBF16, .onednnEmulatingBF16, .onednnBF16: .bf16
        }
    }

    /// The library that multiplies.
    public var library: GEMMBackend {
        switch self {
        case .openblas, .openblasEmulatingBF16: .openblas
        case .onednn, .onednnEmulatingBF16, .onednnBF16: .onednn
        }
    }

    /// The kernel of `library` for `precision` (the emulation for bf16).
    package init(_ library: GEMMBackend, _ precision: Precision) {
        switch (library, precision) {
        case (.openblas, .fp32): self = .openblas
        case (.onednn, .fp32): self = .onednn
        case (.openblas, .bf16): self = .openblasEmulatingBF16
        case (.onednn, .bf16): self = .onednnEmulatingBF16
        }
    }
}

/// One of the three products of an affine layer y = x Wᵀ + b with W of
/// shape (outputs, inputs), over however many rows a pass has:
///
///     forward          y  ← x Wᵀ      (rows, outputs) = (rows, inputs)·(inputs, outputs)
///     weightGradient   dW += dyᵀ x    (outputs, inputs) = (outputs, rows)·(rows, inputs)
///     inputGradient    dx ← dy W      (rows, inputs) = (rows, outputs)·(outputs, inputs)
///
/// The row count is left out on purpose: a plan made for a training step's
/// rows serves the epoch's last, shorter batch and the evaluation passes,
/// so that which kernel computes a product never depends on how many rows
/// it gets.
public struct ProductSite: Hashable, Comparable, Sendable, CustomStringConvertible {
    public enum Product: String, CaseIterable, Sendable { case forward, weightGradient = "weight-gradient", inputGradient = "input-gradient" }

    public var product: Product
    public var inputs: Int
    public var outputs: Int

    public init(_ product: Product, inputs: Int, outputs: Int) {
        self.product = product
        self.inputs = inputs
        self.outputs = outputs
    }

    /// "forward 784→200": the key of a plan's JSON.
    public var description: String { "\(product.rawValue) \(inputs)→\(outputs)" }

    package init?(_ description: String) {
        let parts = description.split(separator: " ")
        guard parts.count == 2, let product = Product(rawValue: String(parts[0])) else { return nil }
        let sizes = parts[1].split(separator: "→")
        guard sizes.count == 2, let i = Int(sizes[0]), let o = Int(sizes[1]), i >= 1, o >= 1 else { return nil }
        self.init(product, inputs: i, outputs: o)
    }

    public static func < (a: ProductSite, b: ProductSite) -> Bool { a.description < b.description }

    /// The three sites of a layer with `inputs` → `outputs`.
    package static func sites(inputs: Int, outputs: Int) -> [ProductSite] {
        Product.allCases.map { ProductSite($0, inputs: inputs, outputs: outputs) }
    }
}

/// How a model computes: the precision of its products' inputs and the
/// kernel of each product site, one value made once (`ComputePlanner`),
/// carried by the model into every step (`VariationalAutoencoder.plan`),
/// recorded in its checkpoints and given back to it by a resumed run, so
/// that a run never changes kernel in its middle. A site the plan does not
/// name is computed by OpenBLAS (emulating bf16 in a bf16 plan).
public struct ComputePlan: Codable, Equatable, Sendable {
    /// The inputs' number format of every product.
    public let precision: Precision
    /// The kernel of each named site; each is of `precision`.
    public private(set) var kernels: [ProductSite: ProductKernel]

    /// A plan of `precision` with these kernels, which must all be of it.
    package init(precision: Precision = .fp32, _ kernels: [ProductSite: ProductKernel] = [:]) {
        precondition(kernels.values.allSatisfy { $0.precision == precision }, "a \(precision) plan holds only \(precision) kernels")
        self.precision = precision
        self.kernels = kernels
    }

    /// Every site computed by `kernel`.
    package init(sites: [ProductSite], kernel: ProductKernel) {
        self.init(precision: kernel.precision, Dictionary(sites.map { ($0, kernel) }, uniquingKeysWith: { a, _ in a }))
    }

    public func kernel(for site: ProductSite) -> ProductKernel {
        kernels[site] ?? ProductKernel(.openblas, precision)
    }

    /// The same sites and libraries with bf16 inputs, emulated (oneDNN's
    /// fp32 matmul becomes its emulation, never its bf16 kernel). What a
    /// checkpoint written before bf16 kernels were planned per site meant.
    package func emulatingBFloat16() -> ComputePlan {
        ComputePlan(precision: .bf16, kernels.mapValues { ProductKernel($0.library, .bf16) })
    }

    /// "forward 784→200: onednn, …", sorted.
    public var summary: String {
        kernels.keys.sorted().map { "\($0): \(kernels[$0]!.rawValue)" }.joined(separator: ", ")
    }

    /// How many sites each kernel computes.
    package var counts: [ProductKernel: Int] { Dictionary(grouping: kernels.values, by: { $0 }).mapValues(\.count) }

    /// The one line that says what was chosen: "oneDNN at 12 of 15 sites
    /// (OpenBLAS: …)" in fp32; in bf16, how many sites run on the bf16
    /// units, and why none do when none do.
    public var grouped: String { line(units: .current) }

    /// `grouped`, with `units` as this CPU's.
    package func line(units: BFloat16Units) -> String {
        let sorted = kernels.keys.sorted()
        func named(_ sites: [ProductSite]) -> String { sites.map(\.description).joined(separator: ", ") }
        if precision == .fp32 {
            let onednn = sorted.filter { kernels[$0] == .onednn }, openblas = sorted.filter { kernels[$0] == .openblas }
            let (few, name) = onednn.count <= openblas.count ? (onednn, "oneDNN") : (openblas, "OpenBLAS")
            return "oneDNN at \(onednn.count) of \(kernels.count) sites" + (few.isEmpty ? "" : " (\(name): \(named(few)))")
        }
        let native = sorted.filter { kernels[$0] == .onednnBF16 }, emulated = sorted.filter { kernels[$0] != .onednnBF16 }
        if native.isEmpty {
            let why = units.kernelPasses ? "bf16 units slower than fp32 here" : units.whyUnavailable
            return "bf16: \(why): emulated at fp32 speed at \(kernels.count) of \(kernels.count) sites"
        }
        return "bf16: oneDNN on \(units.name) at \(native.count) of \(kernels.count) sites"
            + (emulated.isEmpty ? "" : " (emulated, faster here: \(named(emulated)))")
    }

    // JSON: {"forward 784→200": "onednn", …}, a plain object any language
    // reads; the precision is that of the kernels (an empty plan is fp32's).
    public init(from decoder: Decoder) throws {
        let raw = try decoder.singleValueContainer().decode([String: ProductKernel].self)
        var kernels = [ProductSite: ProductKernel]()
        for (key, value) in raw {
            guard let site = ProductSite(key) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "'\(key)' is not a product site such as 'forward 784→200'"))
            }
            kernels[site] = value
        }
        let precisions = Set(kernels.values.map(\.precision))
        guard precisions.count <= 1 else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "the plan mixes fp32 and bf16 kernels"))
        }
        self.init(precision: precisions.first ?? .fp32, kernels)
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(Dictionary(uniqueKeysWithValues: kernels.map { ($0.key.description, $0.value) }))
    }
}
