import CDNNL
import Foundation

/// A library that computes the engine's Float matrix products.
public enum GEMMBackend: String, Codable, CaseIterable, Sendable {
    /// OpenBLAS's sgemm (its kernels are what `BLASLibrary.kernels` reports).
    case openblas
    /// oneDNN's sgemm, which picks its kernels from the CPU's feature flags.
    case onednn

    /// "oneDNN 2.6.3" and the like.
    public static var oneDNNVersion: String {
        guard let v = dnnl_version()?.pointee else { return "oneDNN" }
        return "oneDNN \(v.major).\(v.minor).\(v.patch)"
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
/// so that which library computes a product never depends on how many rows
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

    public init?(_ description: String) {
        let parts = description.split(separator: " ")
        guard parts.count == 2, let product = Product(rawValue: String(parts[0])) else { return nil }
        let sizes = parts[1].split(separator: "→")
        guard sizes.count == 2, let i = Int(sizes[0]), let o = Int(sizes[1]), i >= 1, o >= 1 else { return nil }
        self.init(product, inputs: i, outputs: o)
    }

    public static func < (a: ProductSite, b: ProductSite) -> Bool { a.description < b.description }

    /// The three sites of a layer with `inputs` → `outputs`.
    public static func sites(inputs: Int, outputs: Int) -> [ProductSite] {
        Product.allCases.map { ProductSite($0, inputs: inputs, outputs: outputs) }
    }
}

/// Which backend computes each product site: a training run's plan, made
/// once (`GEMMPlanner`), recorded in its checkpoints and given back to the
/// model by a resumed run, so that a run never changes backend in its
/// middle. A model holds its plan (`VariationalAutoencoder.gemmPlan`); a site
/// the plan does not name is computed by OpenBLAS.
public struct GEMMPlan: Codable, Equatable, Sendable {
    public var backends: [ProductSite: GEMMBackend]

    public init(_ backends: [ProductSite: GEMMBackend] = [:]) { self.backends = backends }

    /// Every site computed by `backend`.
    public init(sites: [ProductSite], backend: GEMMBackend) {
        backends = Dictionary(sites.map { ($0, backend) }, uniquingKeysWith: { a, _ in a })
    }

    public func backend(for site: ProductSite) -> GEMMBackend { backends[site] ?? .openblas }

    /// "forward 784→200: onednn, …", sorted.
    public var summary: String {
        backends.keys.sorted().map { "\($0): \(backends[$0]!.rawValue)" }.joined(separator: ", ")
    }

    /// "oneDNN at 12 of 15 (OpenBLAS: weight-gradient 200→784, …)": the
    /// smaller group named.
    public var grouped: String {
        let onednn = backends.keys.filter { backends[$0] == .onednn }.sorted()
        let openblas = backends.keys.filter { backends[$0] == .openblas }.sorted()
        let (few, name) = onednn.count <= openblas.count ? (onednn, "oneDNN") : (openblas, "OpenBLAS")
        return "oneDNN at \(onednn.count) of \(backends.count) sites"
            + (few.isEmpty ? "" : " (\(name): " + few.map(\.description).joined(separator: ", ") + ")")
    }

    /// How many sites each backend computes.
    public var counts: [GEMMBackend: Int] { Dictionary(grouping: backends.values, by: { $0 }).mapValues(\.count) }

    // JSON: {"forward 784→200": "onednn", …}, a plain object any language reads.
    public init(from decoder: Decoder) throws {
        let raw = try decoder.singleValueContainer().decode([String: GEMMBackend].self)
        var backends = [ProductSite: GEMMBackend]()
        for (key, value) in raw {
            guard let site = ProductSite(key) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "'\(key)' is not a product site such as 'forward 784→200'"))
            }
            backends[site] = value
        }
        self.backends = backends
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(Dictionary(uniqueKeysWithValues: backends.map { ($0.key.description, $0.value) }))
    }
}

/// Times OpenBLAS and oneDNN on a model's product sites, at the rows and
/// threads of its training step, and keeps the faster for each.
///
/// A choice once made on a machine is kept in a small cache file and reused
/// by every later run that asks the same question (same CPU, kernels,
/// libraries, rows and threads), so that the same command gives the same
/// bits run after run; only a site seen for the first time is timed (about
/// a millisecond each). `IWAE_GEMM_PLAN_CACHE` names the file (default
/// `$XDG_CACHE_HOME/iwae/gemm-plans.json`, else `~/.cache/iwae/…`); an
/// unreadable or unwritable file is ignored and the sites are timed.
public enum GEMMPlanner {
    /// The plan for `sites` at `rows` rows per product and `threads` threads per product.
    public static func plan(sites: [ProductSite], rows: Int, threads: Int) -> GEMMPlan {
        let context = "\(Processor.current.summary) | OpenBLAS \(BLASLibrary.coreName) | \(GEMMBackend.oneDNNVersion) | rows \(rows) | threads \(threads)"
        var cache = PlanCache.read()
        var plan = GEMMPlan()
        var timed = false
        for site in Set(sites).sorted() {
            let key = "\(context) | \(site)"
            if let known = cache[key].flatMap(GEMMBackend.init(rawValue:)) { plan.backends[site] = known; continue }
            let backend = fastest(site, rows: max(1, rows), threads: max(1, threads))
            plan.backends[site] = backend
            cache[key] = backend.rawValue
            timed = true
        }
        if timed { PlanCache.write(cache) }
        return plan
    }

    /// The backend that computes `site` faster: each timed alternately,
    /// best of several calls, with subnormals flushed as the workers run.
    /// OpenBLAS keeps the site unless oneDNN is faster by 3 %.
    static func fastest(_ site: ProductSite, rows: Int, threads: Int) -> GEMMBackend {
        withSubnormalsFlushed {
            let saved = BLASLibrary.threads
            BLASLibrary.threads = threads
            defer { BLASLibrary.threads = saved }
            let (i, o) = (site.inputs, site.outputs)
            let x = Tensor<Float>(shape: [rows, i]), w = Tensor<Float>(shape: [o, i]), y = Tensor<Float>(shape: [rows, o])
            let rng = Xoshiro256(seed: 7)
            rng.fillUniform(x.pointer, count: x.count)
            rng.fillUniform(w.pointer, count: w.count)
            rng.fillUniform(y.pointer, count: y.count)
            func run(_ backend: GEMMBackend) {
                switch site.product {
                case .forward: gemm(y.matrix, x.matrix, .none, w.matrix, .transposed, backend: backend)
                case .weightGradient: gemm(w.matrix, y.matrix, .transposed, x.matrix, .none, beta: 1, backend: backend)
                case .inputGradient: gemm(x.matrix, y.matrix, .none, w.matrix, .none, backend: backend)
                }
            }
            // Enough calls for about a millisecond per measurement.
            let calls = max(1, min(50, Int(1e6 / Double(2 * rows * i * o))))
            var best: [GEMMBackend: UInt64] = [.openblas: .max, .onednn: .max]
            for backend in GEMMBackend.allCases { run(backend) }   // warm-up
            for _ in 0..<5 {
                for backend in GEMMBackend.allCases {
                    let start = DispatchTime.now().uptimeNanoseconds
                    for _ in 0..<calls { run(backend) }
                    best[backend] = min(best[backend]!, DispatchTime.now().uptimeNanoseconds - start)
                }
            }
            return Double(best[.onednn]!) < 0.97 * Double(best[.openblas]!) ? .onednn : .openblas
        }
    }
}

/// The planner's file of choices already made: {question: backend}.
enum PlanCache {
    static var path: String {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["IWAE_GEMM_PLAN_CACHE"], !path.isEmpty { return path }
        let base = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["HOME"] ?? NSHomeDirectory()) + "/.cache"
        return base + "/iwae/gemm-plans.json"
    }

    static func read() -> [String: String] {
        guard let data = FileManager.default.contents(atPath: path), data.count < 1 << 20,
              let object = try? JSONDecoder().decode([String: String].self, from: data) else { return [:] }
        return object
    }

    /// Written whole to a temporary file and renamed over the old one.
    static func write(_ cache: [String: String]) {
        let target = URL(fileURLWithPath: path)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        guard let data = try? encoder.encode(cache) else { return }
        try? FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        let temporary = target.path + ".\(getpid()).\(UUID().uuidString).tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data) else { return }
        if rename(temporary, target.path) != 0 { unlink(temporary) }
    }
}
