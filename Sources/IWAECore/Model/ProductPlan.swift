import IWAELinearAlgebra

/// How a run chooses the library of its Float products (`--gemm`).
public enum GEMMChoice: String, Codable, CaseIterable, Sendable {
    /// Each product site by the fastest kernel on this machine (`ComputePlanner`).
    case auto
    /// Every product by OpenBLAS (emulating bf16 in a bf16 plan).
    case openblas
    /// Every product by oneDNN: its fp32 matmul, or in a bf16 plan its bf16
    /// matmul where that passed its check (`BFloat16Units`), else its emulation.
    case onednn
}

extension VariationalAutoencoder {
    /// The model's compute plan: the precision of its products and the
    /// kernel of each (its store's; a replica made afterwards copies it).
    /// `ModelWorkers.plan` sets it on every replica.
    package var plan: ComputePlan {
        get { store.plan }
        set { store.plan = newValue }
    }

    /// Every affine layer's three product sites, with the rows each sees in
    /// a training step of `examples` examples with K draws each: the first
    /// encoder reads the B examples, every other layer the B·K draws. (Each
    /// `Linear` registers `NAME.weight` of shape (outputs, inputs).) A shape
    /// used by both keeps the larger.
    package func productSites(examples: Int, drawsPerExample K: Int) -> [ProductSite: Int] {
        var rows = [ProductSite: Int]()
        for slot in store.layout.slots where slot.name.hasSuffix(".weight") && slot.shape.count == 2 {
            let seen = slot.name.hasPrefix("encoder.") ? examples : examples * K
            for site in ProductSite.sites(inputs: slot.shape[1], outputs: slot.shape[0]) {
                rows[site] = Swift.max(rows[site] ?? 0, seen)
            }
        }
        return rows
    }

    /// The plan `choice` gives this model's products in `precision` when
    /// each worker takes `examples` examples with K draws, on `threads`
    /// threads per product. `auto` times the sites not yet in the machine's
    /// plan cache.
    package func computePlan(_ choice: GEMMChoice, precision: Precision, examples: Int, drawsPerExample K: Int,
                            threads: Int) -> ComputePlan {
        let sites = productSites(examples: examples, drawsPerExample: K)
        switch (choice, precision) {
        case (.openblas, _): return ComputePlan(sites: Array(sites.keys), kernel: ProductKernel(.openblas, precision))
        case (.onednn, .fp32): return ComputePlan(sites: Array(sites.keys), kernel: .onednn)
        case (.onednn, .bf16):
            return ComputePlan(sites: Array(sites.keys), kernel: BFloat16Units.current.kernelPasses ? .onednnBF16 : .onednnEmulatingBF16)
        case (.auto, _):
            var kernels = [ProductSite: ProductKernel]()
            for (rows, group) in Dictionary(grouping: sites.keys, by: { sites[$0]! }) {
                kernels.merge(ComputePlanner.plan(sites: group, rows: rows, threads: threads, precision: precision).kernels) { a, _ in a }
            }
            return ComputePlan(precision: precision, kernels)
        }
    }
}

extension ComputePlan {
    /// A checkpoint's plan for a run of `precision`: as saved, or for a bf16
    /// run saved before its kernels were planned per site (its plan names
    /// fp32 libraries), their emulations. A bf16 plan for an fp32 run is
    /// refused.
    package func recorded(for precision: Precision) throws -> ComputePlan {
        if self.precision == precision { return self }
        guard precision == .bf16 else {
            throw IWAEError.invalidCheckpoint("the training state's plan has bf16 kernels but the run's precision is fp32")
        }
        return emulatingBFloat16()
    }
}
