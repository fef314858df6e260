import Foundation

/// Times the kernels a precision allows on a model's product sites, at the
/// rows and threads of its training step, and keeps the fastest for each.
///
/// fp32 times OpenBLAS against oneDNN. bf16 starts from the fp32 plan: at
/// each site the emulation is the bf16-rounded operands on the fastest fp32
/// product (the passes that make the operands round them, `MLP`, and
/// Adam rounds the weights, `BFloat16Copy`, so the emulated product costs
/// what the fp32 one does). It is timed against oneDNN's bf16 matmul only
/// where that passed its check (`BFloat16Units`), both reading their
/// operands rounded, as a training step gives them: on bfloat16 units that
/// are slower than two fp32 FMA ports the emulation wins, and bf16 runs at
/// fp32's speed with bf16's numbers.
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
        let (plan, timed) = self.plan(sites: sites, precision: precision, bf16KernelPasses: BFloat16Units.current.kernelPasses,
                                      question: { question(rows: rows, threads: threads, precision: $0) },
                                      known: &known) { site, kernels in
            time(site, kernels, rows: max(1, rows), threads: max(1, threads))
        }
        if timed { PlanCache.write(known) }
        return plan
    }

    /// The cache's key for a plan of `precision` (before the site): this
    /// CPU, the kernels and libraries, rows, threads and precision ("oneDNN
    /// … matmul": answers timed on its dnnl_sgemm before are not reused;
    /// "weight gradients β 0": nor those timed adding to the weight
    /// gradients, before a step wrote over them). bf16
    /// questions say that the operands come rounded ("rounded operands"):
    /// answers timed while the products rounded their operands themselves
    /// are not reused. Only runs that have oneDNN's bf16 matmul as a
    /// candidate ask one; the others take the fp32 plan's emulation.
    package static func question(rows: Int, threads: Int, precision: Precision) -> String {
        "\(Processor.current.summary) | OpenBLAS \(BLASLibrary.coreName) | \(GEMMBackend.oneDNNVersion) matmul | weight gradients β 0 | rows \(rows) | threads \(threads)"
            + (precision == .fp32 ? "" : " | \(precision.rawValue) rounded operands")
    }

    /// fp32's kernels, in order of preference (the first is kept unless
    /// the other is faster by 3 %).
    package static let fp32Candidates: [ProductKernel] = [.openblas, .onednn]

    /// The plan of `precision` for `sites`: fp32's from `fp32Candidates`;
    /// bf16's from the fp32 plan, its emulation at each site, or oneDNN's
    /// bf16 matmul where `bf16KernelPasses` and it is faster by 3 %.
    /// `seconds` times the candidates on one site (the best of several
    /// rounds each); each site is looked up in `known` first
    /// ({question | site: kernel}) and what was timed is added to it. A
    /// known answer that is not a candidate is timed again. Returns
    /// whether anything was timed.
    package static func plan(sites: [ProductSite], precision: Precision, bf16KernelPasses: Bool,
                             question: (Precision) -> String, known: inout [String: String],
                             seconds: (ProductSite, [ProductKernel]) -> [ProductKernel: Double]) -> (ComputePlan, timed: Bool) {
        let (fp32, timed) = choose(sites: sites, precision: .fp32, candidates: { _ in fp32Candidates }, question: question(.fp32),
                                   known: &known, seconds: seconds)
        guard precision == .bf16 else { return (fp32, timed) }
        let emulation = fp32.emulatingBFloat16()
        guard bf16KernelPasses else { return (emulation, timed) }
        let (bf16, timedBF16) = choose(sites: sites, precision: .bf16, candidates: { [emulation.kernel(for: $0), .onednnBF16] },
                                       question: question(.bf16), known: &known, seconds: seconds)
        return (bf16, timed || timedBF16)
    }

    /// Each site's fastest of its `candidates`, known or timed.
    static func choose(sites: [ProductSite], precision: Precision, candidates: (ProductSite) -> [ProductKernel], question: String,
                       known: inout [String: String],
                       seconds: (ProductSite, [ProductKernel]) -> [ProductKernel: Double]) -> (ComputePlan, timed: Bool) {
        var kernels = [ProductSite: ProductKernel]()
        var timed = false
        for site in Set(sites).sorted() {
            let key = "\(question) | \(site)", candidates = candidates(site)
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
    /// subnormals flushed as the workers run, and a bf16 kernel's operands
    /// given rounded, as a training step gives them.
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
            let buffers = (0..<3).map { _ in RoundedBuffer() }
            let (roundedX, roundedW, roundedY) = (round(x, buffers[0]), round(w, buffers[1]), round(y, buffers[2]))
            func run(_ kernel: ProductKernel) {
                let bf16 = kernel.precision == .bf16
                switch site.product {
                case .forward:
                    gemm(y.matrix, x.matrix, .none, w.matrix, .transposed, kernel: kernel, workspace: workspace,
                         roundedA: bf16 ? roundedX : nil, roundedB: bf16 ? roundedW : nil)
                case .weightGradient:   // written over the last step's, as a step writes it
                    gemm(w.matrix, y.matrix, .transposed, x.matrix, .none, beta: 0, kernel: kernel, workspace: workspace,
                         roundedA: bf16 ? roundedY : nil, roundedB: bf16 ? roundedX : nil)
                case .inputGradient:
                    gemm(x.matrix, y.matrix, .none, w.matrix, .none, kernel: kernel, workspace: workspace,
                         roundedA: bf16 ? roundedY : nil, roundedB: bf16 ? roundedW : nil)
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

    /// `x` in both rounded forms, held by `buffer`.
    private static func round(_ x: Tensor<Float>, _ buffer: RoundedBuffer) -> RoundedOperand {
        let destination = buffer.reserve(x.count, [.bits, .floats])!
        roundToBFloat16(x.matrix, into: destination)
        return destination.operand
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
