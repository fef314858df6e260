import IWAELinearAlgebra

/// How a run chooses the library of its Float products (`--gemm`).
public enum GEMMChoice: String, Codable, CaseIterable, Sendable {
    /// Each product site by the faster library on this machine (`GEMMPlanner`).
    case auto
    /// Every product by OpenBLAS.
    case openblas
    /// Every product by oneDNN.
    case onednn
}

extension VariationalAutoencoder {
    /// The library of each of the model's products (its store's plan; a
    /// replica made afterwards copies it). `ModelWorkers.gemmPlan` sets it on
    /// every replica.
    public var gemmPlan: GEMMPlan {
        get { store.gemmPlan }
        set { store.gemmPlan = newValue }
    }

    /// The inputs of the model's products, fp32 or bf16 (its store's; a
    /// replica made afterwards copies it). `ModelWorkers.precision` sets it
    /// on every replica.
    public var precision: Precision {
        get { store.precision }
        set { store.precision = newValue }
    }

    /// Every affine layer's three product sites, with the rows each sees in
    /// a training step of `examples` examples with K draws each: the first
    /// encoder reads the B examples, every other layer the B·K draws. (Each
    /// `Linear` registers `NAME.weight` of shape (outputs, inputs).) A shape
    /// used by both keeps the larger.
    public func productSites(examples: Int, samplesPerExample K: Int) -> [ProductSite: Int] {
        var rows = [ProductSite: Int]()
        for slot in store.layout.slots where slot.name.hasSuffix(".weight") && slot.shape.count == 2 {
            let seen = slot.name.hasPrefix("encoder.") ? examples : examples * K
            for site in ProductSite.sites(inputs: slot.shape[1], outputs: slot.shape[0]) {
                rows[site] = Swift.max(rows[site] ?? 0, seen)
            }
        }
        return rows
    }

    /// The plan `choice` gives this model's products when each worker takes
    /// `examples` examples with K draws, on `threads` threads per product.
    /// `auto` times the sites not yet in the machine's plan cache.
    public func gemmPlan(_ choice: GEMMChoice, examples: Int, samplesPerExample K: Int, threads: Int) -> GEMMPlan {
        let sites = productSites(examples: examples, samplesPerExample: K)
        switch choice {
        case .openblas: return GEMMPlan(sites: Array(sites.keys), backend: .openblas)
        case .onednn: return GEMMPlan(sites: Array(sites.keys), backend: .onednn)
        case .auto:
            var plan = GEMMPlan()
            for (rows, group) in Dictionary(grouping: sites.keys, by: { sites[$0]! }) {
                plan.backends.merge(GEMMPlanner.plan(sites: group, rows: rows, threads: threads).backends) { a, _ in a }
            }
            return plan
        }
    }
}
