import Foundation

/// Times the kernels a precision allows on a model's product sites, at the
/// rows and threads of its training step, and keeps the fastest for each.
///
/// fp32 times OpenBLAS against oneDNN. bf16 times the two emulations
/// (the activations' rounding included; the weight comes rounded, as
/// Adam's copy gives it to a training step, `BFloat16Copy`) against
/// oneDNN's bf16 matmul, which is a candidate
/// only where it passed its check (`BFloat16Units`): on bfloat16 units
/// that are slower than two fp32 FMA ports, the emulation wins and bf16
/// runs near fp32's speed (the activations are still rounded) with bf16's numbers.
///
/// A choice once made on a machine is kept in a small cache file and reused
/// by every later run that asks the same question (same CPU, kernels,
/// libraries, rows, threads and precision), so that the same command gives
/// the same bits run after run; only a site seen for the first time is
/// timed (about a millisecond per kernel). `IWAE_GEMM_PLAN_CACHE` names the
/// file (default `$XDG_CACHE_HOME/iwae/gemm-plans.json`, else
/// `~/.cache/iwae/…`); an unreadable or unwritable file is ignored and the
/// sites are timed.
package enum ComputePlanner {
    /// The plan for `sites` at `rows` rows per product and `threads` threads per product.
    package static func plan(sites: [ProductSite], rows: Int, threads: Int, precision: Precision) -> ComputePlan {
        var known = PlanCache.read()
        let passes = BFloat16Units.current.kernelPasses
        let question = question(rows: rows, threads: threads, precision: precision, bf16KernelPasses: passes)
        let (plan, timed) = self.plan(sites: sites, precision: precision,
                                      candidates: candidates(precision, bf16KernelPasses: passes),
                                      question: question, known: &known) { site, kernels in
            time(site, kernels, rows: max(1, rows), threads: max(1, threads))
        }
        if timed { PlanCache.write(known) }
        return plan
    }

    /// The cache's key for a plan (before the site): this CPU, the kernels
    /// and libraries, rows, threads and precision, and in bf16 whether
    /// oneDNN's bf16 matmul was a candidate. A run without it (`IWAE_BF16=emulate`,
    /// or a failed check) asks its own question: it would otherwise time
    /// the emulations alone and write them over the answers of the runs
    /// that had the bf16 units, which would then keep the emulation for good.
    /// bf16 questions say that the weights come rounded ("rounded
    /// weights"): answers timed while every product rounded its weight
    /// are not reused.
    package static func question(rows: Int, threads: Int, precision: Precision, bf16KernelPasses: Bool) -> String {
        "\(Processor.current.summary) | OpenBLAS \(BLASLibrary.coreName) | \(GEMMBackend.oneDNNVersion) | rows \(rows) | threads \(threads)"
            + (precision == .fp32 ? "" : " | \(precision.rawValue) rounded weights" + (bf16KernelPasses ? "" : " emulated only"))
    }

    /// The kernels `precision` may use, in order of preference (the first
    /// is kept unless another is faster by 3 %).
    package static func candidates(_ precision: Precision, bf16KernelPasses: Bool) -> [ProductKernel] {
        switch precision {
        case .fp32: [.openblas, .onednn]
        case .bf16: [.openblasEmulatingBF16, .onednnEmulatingBF16] + (bf16KernelPasses ? [.onednnBF16] : [])
        }
    }

    /// The plan from `seconds`, which times the candidates on one site
    /// (the best of several rounds each), each site looked up in `known`
    /// first ({question | site: kernel}) and what was timed added to it.
    /// A known answer that is not a candidate is timed again. Returns
    /// whether anything was timed.
    package static func plan(sites: [ProductSite], precision: Precision, candidates: [ProductKernel], question: String,
                             known: inout [String: String],
                             seconds: (ProductSite, [ProductKernel]) -> [ProductKernel: Double]) -> (ComputePlan, timed: Bool) {
        var kernels = [ProductSite: ProductKernel]()
        var timed = false
        for site in Set(sites).sorted() {
            let key = "\(question) | \(site)"
            if let answer = known[key].flatMap(ProductKernel.init(rawValue:)), candidates.contains(answer) {
                kernels[site] = answer
                continue
            }
            let kernel = fastest(candidates, seconds(site, candidates))
            kernels[site] = kernel
            known[key] = kernel.rawValue
            timed = true
        }
        return (ComputePlan(precision: precision, kernels), timed)
    }

    /// The first candidate, unless a later one is faster than the best so far by 3 %.
    package static func fastest(_ candidates: [ProductKernel], _ times: [ProductKernel: Double]) -> ProductKernel {
        var best = candidates[0]
        for kernel in candidates.dropFirst() where (times[kernel] ?? .infinity) < 0.97 * (times[best] ?? .infinity) { best = kernel }
        return best
    }

    /// Each kernel on `site`, timed alternately, best of several calls, with
    /// subnormals flushed as the workers run, and the weight given rounded
    /// to a bf16 kernel's forward and input-gradient products, as a
    /// training step gives it (`BFloat16Copy`).
    static func time(_ site: ProductSite, _ kernels: [ProductKernel], rows: Int, threads: Int) -> [ProductKernel: Double] {
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
            let workspace = ProductWorkspace<Float>()
            let floats = w.array.map(roundedToBFloat16), bits = floats.map { UInt16($0.bitPattern >> 16) }
            func run(_ kernel: ProductKernel) {
                floats.withUnsafeBufferPointer { floats in
                    bits.withUnsafeBufferPointer { bits in
                        let rounded = kernel.precision == .bf16 ? RoundedOperand(bits: bits.baseAddress, floats: floats.baseAddress) : nil
                        switch site.product {
                        case .forward:
                            gemm(y.matrix, x.matrix, .none, w.matrix, .transposed, kernel: kernel, workspace: workspace, roundedB: rounded)
                        case .weightGradient:
                            gemm(w.matrix, y.matrix, .transposed, x.matrix, .none, beta: 1, kernel: kernel, workspace: workspace)
                        case .inputGradient:
                            gemm(x.matrix, y.matrix, .none, w.matrix, .none, kernel: kernel, workspace: workspace, roundedB: rounded)
                        }
                    }
                }
            }
            // Enough calls for about a millisecond per measurement.
            let calls = max(1, min(50, Int(1e6 / Double(2 * rows * i * o))))
            var best = Dictionary(uniqueKeysWithValues: kernels.map { ($0, Double.infinity) })
            for kernel in kernels { run(kernel) }   // warm-up
            for _ in 0..<5 {
                for kernel in kernels {
                    let start = DispatchTime.now().uptimeNanoseconds
                    for _ in 0..<calls { run(kernel) }
                    best[kernel] = min(best[kernel]!, Double(DispatchTime.now().uptimeNanoseconds - start))
                }
            }
            return best
        }
    }
}

/// The planner's file of choices already made: {question: kernel}.
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
