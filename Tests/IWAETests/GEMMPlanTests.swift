import Foundation
import Synchronization
import IWAE
import XCTest

/// The second GEMM backend and the plan that picks one per product: oneDNN
/// against a naive Double product, plans as JSON, and a run's plan kept
/// through checkpoints and resume.
final class GEMMPlanTests: XCTestCase {
    /// C ← α op(A) op(B) + β C by oneDNN, for each transpose, with a C wider
    /// than the product (ldc > n), against the naive sum in Double. Bound per
    /// element: the k-term dot product in Float, 2k·u·Σ|α a b| + 2u|β c| (u = 2⁻²⁴).
    func testOneDNNProductMatchesNaiveDoubleProduct() {
        let (m, n, k) = (37, 29, 53)
        let rng = Xoshiro256(seed: 11)
        let u = Double(Float.ulpOfOne) / 2
        for (ta, tb) in [(Transpose.none, Transpose.none), (.transposed, .none), (.none, .transposed), (.transposed, .transposed)] {
            let a = Tensor<Float>(shape: ta == .none ? [m, k] : [k, m]), b = Tensor<Float>(shape: tb == .none ? [k, n] : [n, k])
            rng.fillUniform(a.pointer, count: a.count)
            rng.fillUniform(b.pointer, count: b.count)
            for i in 0..<a.count { a[i] -= 0.5 }
            for i in 0..<b.count { b[i] -= 0.5 }
            let ldc = n + 3
            let c = Tensor<Float>(shape: [m, ldc])
            for i in 0..<c.count { c[i] = Float(i % 7) - 3 }
            let before = c.array
            let (alpha, beta): (Float, Float) = (0.75, -1.5)
            for backend in [ProductKernel.openblas, .onednn] {
                c.pointer.update(from: before, count: before.count)
                gemm(MatrixView(c.pointer, rows: m, columns: n, rowStride: ldc), a.matrix, ta, b.matrix, tb,
                     alpha: alpha, beta: beta, kernel: backend)
                for i in 0..<m {
                    for j in 0..<ldc {
                        let got = Double(c[i * ldc + j])
                        if j >= n { XCTAssertEqual(got, Double(before[i * ldc + j]), "\(backend) wrote past n"); continue }
                        var exact = 0.0, magnitude = 0.0
                        for l in 0..<k {
                            let x = Double(ta == .none ? a[i * k + l] : a[l * m + i]), y = Double(tb == .none ? b[l * n + j] : b[j * k + l])
                            exact += x * y
                            magnitude += abs(x * y)
                        }
                        let c0 = Double(before[i * ldc + j])
                        exact = Double(alpha) * exact + Double(beta) * c0
                        let bound = 2 * Double(k) * u * abs(Double(alpha)) * magnitude + 2 * u * abs(Double(beta) * c0) + 1e-30
                        if abs(got - exact) > bound {
                            XCTFail("\(backend) \(ta)/\(tb) [\(i), \(j)]: \(got) vs \(exact) (bound \(bound))")
                            return
                        }
                    }
                }
            }
        }
    }

    func testPlanIsPlainJSONAndSitesWithoutAnEntryUseOpenBLAS() throws {
        let plan = ComputePlan([ProductSite(.forward, inputs: 784, outputs: 200): .onednn,
                                ProductSite(.weightGradient, inputs: 200, outputs: 50): .openblas])
        let json = String(decoding: try JSONEncoder().encode(plan), as: UTF8.self)
        XCTAssertTrue(json.contains("\"forward 784→200\":\"onednn\""), json)
        XCTAssertEqual(try JSONDecoder().decode(ComputePlan.self, from: Data(json.utf8)), plan)
        XCTAssertThrowsError(try JSONDecoder().decode(ComputePlan.self, from: Data(#"{"sideways 1→2": "onednn"}"#.utf8)))
        XCTAssertThrowsError(try JSONDecoder().decode(ComputePlan.self, from: Data(#"{"forward 0→2": "onednn"}"#.utf8)))
        XCTAssertThrowsError(try JSONDecoder().decode(ComputePlan.self, from: Data(#"{"forward 1→2": "cublas"}"#.utf8)))
        XCTAssertEqual(plan.kernel(for: ProductSite(.inputGradient, inputs: 784, outputs: 200)), .openblas)
    }

    /// The planner keeps the faster of two kernels whose times the test
    /// sets, the first unless the other is faster by 3 %, and asks only
    /// what it does not know.
    func testPlannerKeepsTheFasterOfTwoFakeKernels() {
        let a = ProductSite(.forward, inputs: 784, outputs: 200), b = ProductSite(.weightGradient, inputs: 200, outputs: 50)
        let c = ProductSite(.inputGradient, inputs: 50, outputs: 200), d = ProductSite(.forward, inputs: 200, outputs: 784)
        let times: [ProductSite: [ProductKernel: Double]] = [
            a: [.openblas: 100, .onednn: 50], b: [.openblas: 100, .onednn: 98], c: [.openblas: 50, .onednn: 100], d: [.openblas: 100, .onednn: 96],
        ]
        var known = [String: String](), asked = [ProductSite]()
        let (plan, timed) = ComputePlanner.plan(sites: [a, b, c, d, a], precision: .fp32, bf16KernelPasses: true,
                                                question: { "test \($0)" }, known: &known) { site, kernels in
            XCTAssertEqual(kernels, [.openblas, .onednn])
            asked.append(site)
            return times[site]!
        }
        XCTAssertTrue(timed)
        XCTAssertEqual(plan.kernels, [a: .onednn, b: .openblas, c: .openblas, d: .onednn])
        XCTAssertEqual(plan.precision, .fp32)
        XCTAssertEqual(asked.sorted(), [a, b, c, d].sorted(), "each site timed once")
        XCTAssertEqual(known["test fp32 | \(a)"], "onednn")
        // Asked again, the known answers are kept without timing, even where the times would now say otherwise.
        let (again, timedAgain) = ComputePlanner.plan(sites: [a, b, c, d], precision: .fp32, bf16KernelPasses: true,
                                                      question: { "test \($0)" }, known: &known) { _, _ in
            XCTFail("nothing to time")
            return [:]
        }
        XCTAssertFalse(timedAgain)
        XCTAssertEqual(again, plan)
    }

    /// In bf16 the planner starts from the fp32 plan: the emulation at each
    /// site is the bf16-rounded operands on the fastest fp32 product, and
    /// it weighs oneDNN's bf16 matmul against that emulation only: it keeps
    /// the bf16 units where they are faster (as with AMX) and the emulation
    /// where they are slower (the Xeon whose hypervisor hides AMX: 1.6×
    /// fp32's time). A plan whose oneDNN check failed never uses oneDNN's
    /// bf16 matmul, however fast the timer says it is, nor a cached answer
    /// naming it, and asks no bf16 question.
    func testBFloat16PlanTakesTheUnitsOnlyWhereFasterAndChecked() {
        let site = ProductSite(.forward, inputs: 200, outputs: 784), other = ProductSite(.forward, inputs: 784, outputs: 200)
        let fp32Times: [ProductSite: [ProductKernel: Double]] = [site: [.openblas: 110, .onednn: 100], other: [.openblas: 90, .onednn: 100]]
        let emulation: [ProductSite: ProductKernel] = [site: .onednnEmulatingBF16, other: .openblasEmulatingBF16]
        func plan(native: Double, passes: Bool, known: [String: String] = [:]) -> (ComputePlan, [String: String]) {
            var known = known
            let plan = ComputePlanner.plan(sites: [site, other], precision: .bf16, bf16KernelPasses: passes, question: { "test \($0)" },
                                           known: &known) { site, kernels in
                if kernels == ComputePlanner.fp32Candidates { return fp32Times[site]! }
                XCTAssertTrue(passes, "no bf16 question without the units")
                XCTAssertEqual(kernels, [emulation[site]!, .onednnBF16], "the emulation on the fp32 plan's library, and the units")
                let fastestFP32 = fp32Times[site]!.values.min()!
                return [emulation[site]!: fastestFP32, .onednnBF16: native]
            }.0
            return (plan, known)
        }
        XCTAssertEqual(Set(plan(native: 50, passes: true).0.kernels.values), [.onednnBF16], "units twice as fast: taken")
        XCTAssertEqual(plan(native: 160, passes: true).0.kernels, emulation, "units slower: emulated on the faster fp32 library")
        XCTAssertEqual(plan(native: 98, passes: true).0.kernels, emulation, "units faster by less than 3 %: the emulation")
        let (failed, written) = plan(native: 1, passes: false)
        XCTAssertEqual(failed.kernels, emulation, "check failed: never the bf16 kernel")
        XCTAssertEqual(Set(written.keys), ["test fp32 | \(site)", "test fp32 | \(other)"], "an emulated-only run writes fp32 answers only")
        let cached = ["test bf16 | \(site)": "onednn-bf16", "test bf16 | \(other)": "openblas-bf16-emulated"]
        XCTAssertEqual(plan(native: 1, passes: false, known: cached).0.kernels, emulation)
        XCTAssertEqual(plan(native: 160, passes: true, known: cached).0.kernels, [site: .onednnBF16, other: .openblasEmulatingBF16],
                       "what the cache knows is kept")
        let stale = ["test bf16 | \(other)": "onednn-bf16-emulated"]
        XCTAssertEqual(plan(native: 160, passes: true, known: stale).0.kernels[other], .openblasEmulatingBF16,
                       "a cached emulation on another library than the fp32 plan's is timed again")

        // The one line says what was chosen.
        let avx = BFloat16Units(name: "AVX512-BF16", kernelPasses: true, whyUnavailable: "")
        XCTAssertEqual(plan(native: 160, passes: true).0.line(units: avx), "bf16: bf16 units slower than fp32 here: emulated at fp32 speed at 2 of 2 sites")
        XCTAssertEqual(plan(native: 50, passes: true).0.line(units: avx), "bf16: oneDNN on AVX512-BF16 at 2 of 2 sites")
        XCTAssertEqual(ComputePlan(precision: .bf16, [site: .onednnBF16, other: .openblasEmulatingBF16]).line(units: avx),
                       "bf16: oneDNN on AVX512-BF16 at 1 of 2 sites (emulated, faster here: forward 784→200)")
        let none = BFloat16Units(name: "no bf16 units", kernelPasses: false, whyUnavailable: "no bf16 units on this CPU")
        XCTAssertEqual(plan(native: 1, passes: false).0.line(units: none), "bf16: no bf16 units on this CPU: emulated at fp32 speed at 2 of 2 sites")
    }

    /// The cache's questions: one per precision (fp32's the same whether or
    /// not the bf16 units are there), bf16's new since the operands come
    /// rounded (answers timed while the products rounded them are not
    /// reused).
    /// Signals handled while oneDNN multiplies change nothing: products at
    /// the engine's shapes (250 rows, 784 and 200 wide: forward, input and
    /// weight gradient) on this thread while another sends it SIGUSR2 about
    /// every 0.2 ms, each equal to the bit to the same product computed
    /// before, without signals. Under oneDNN 2.6.3's dnnl_sgemm, which the
    /// onednn kernel called before, this corrupted the heap in 3 runs of 3
    /// (a Ctrl-C during `iwae train` crashed about one run in four).
    func testOneDNNProductsSurviveSignals() {
        let (rows, wide, narrow) = (250, 784, 200)
        let rng = Xoshiro256(seed: 5)
        let x = Tensor<Float>(shape: [rows, wide]), w = Tensor<Float>(shape: [narrow, wide]), dy = Tensor<Float>(shape: [rows, narrow])
        for t in [x, w, dy] { rng.fillUniform(t.pointer, count: t.count) }
        let outputs = [Tensor<Float>(shape: [rows, narrow]), Tensor<Float>(shape: [rows, wide]), Tensor<Float>(shape: [narrow, wide])]
        func product(_ index: Int) {
            switch index {
            case 0: gemm(outputs[0].matrix, x.matrix, .none, w.matrix, .transposed, kernel: .onednn)
            case 1: gemm(outputs[1].matrix, dy.matrix, .none, w.matrix, .none, kernel: .onednn)
            default: gemm(outputs[2].matrix, dy.matrix, .transposed, x.matrix, .none, kernel: .onednn)
            }
        }
        let expected = (0..<3).map { i -> [Float] in product(i); return outputs[i].array }
        let previous = signal(SIGUSR2, { _ in })
        defer { signal(SIGUSR2, previous) }
        let target = pthread_self()
        let stop = Atomic<Bool>(false), sent = Atomic<Int>(0)
        let sender = Thread {
            while !stop.load(ordering: .relaxed) {
                pthread_kill(target, SIGUSR2)
                sent.add(1, ordering: .relaxed)
                usleep(200)
            }
        }
        sender.start()
        var mismatches = 0
        for call in 0..<1500 {
            product(call % 3)
            if outputs[call % 3].array != expected[call % 3] { mismatches += 1 }
        }
        stop.store(true, ordering: .relaxed)
        while !sender.isFinished { usleep(100) }
        XCTAssertEqual(mismatches, 0)
        XCTAssertGreaterThan(sent.load(ordering: .relaxed), 100, "too few signals to test anything")
    }

    func testQuestionsSayPrecisionAndRoundedOperands() {
        let fp32 = ComputePlanner.question(rows: 10, threads: 1, precision: .fp32)
        let bf16 = ComputePlanner.question(rows: 10, threads: 1, precision: .bf16)
        XCTAssertNotEqual(fp32, bf16)
        XCTAssertTrue(bf16.hasPrefix(fp32) && bf16.hasSuffix("bf16 rounded operands"), bf16)
        XCTAssertFalse(bf16.hasSuffix("rounded weights"))
    }

    /// A plan is one value: its kernels carry its precision, the JSON names
    /// them, a plan mixing fp32 and bf16 kernels is refused, and a bf16
    /// checkpoint written before bf16 kernels were planned per site (its
    /// plan names fp32 libraries) reads as their emulations.
    func testPlanCarriesItsPrecision() throws {
        let site = ProductSite(.forward, inputs: 784, outputs: 200), other = ProductSite(.inputGradient, inputs: 200, outputs: 50)
        let bf16 = ComputePlan(precision: .bf16, [site: .onednnBF16, other: .openblasEmulatingBF16])
        let json = String(decoding: try JSONEncoder().encode(bf16), as: UTF8.self)
        XCTAssertTrue(json.contains("\"forward 784→200\":\"onednn-bf16\""), json)
        XCTAssertEqual(try JSONDecoder().decode(ComputePlan.self, from: Data(json.utf8)), bf16)
        XCTAssertEqual(bf16.kernel(for: ProductSite(.forward, inputs: 1, outputs: 2)), .openblasEmulatingBF16)
        XCTAssertThrowsError(try JSONDecoder().decode(ComputePlan.self, from: Data(#"{"forward 1→2": "onednn", "forward 2→1": "onednn-bf16"}"#.utf8)))
        let old = try JSONDecoder().decode(ComputePlan.self, from: Data(#"{"forward 784→200": "onednn", "input-gradient 200→50": "openblas"}"#.utf8))
        XCTAssertEqual(old.precision, .fp32)
        XCTAssertEqual(try old.recorded(for: .bf16), ComputePlan(precision: .bf16, [site: .onednnEmulatingBF16, other: .openblasEmulatingBF16]))
        XCTAssertEqual(try old.recorded(for: .fp32), old)
        XCTAssertThrowsError(try bf16.recorded(for: .fp32))
        for kernel in ProductKernel.allCases where kernel != .onednnBF16 {
            XCTAssertEqual(ProductKernel(kernel.library, kernel.precision), kernel)
        }
    }

    /// Each affine layer's three products, with the rows each sees: the first
    /// encoder the B examples, the rest the B·K draws.
    func testModelListsItsProductSites() {
        let model = VariationalAutoencoder<Float>(ModelConfiguration(dataDimension: 784), seed: 1)
        let sites = model.productSites(examples: 10, drawsPerExample: 5)
        XCTAssertEqual(sites[ProductSite(.forward, inputs: 784, outputs: 200)], 10)
        XCTAssertEqual(sites[ProductSite(.forward, inputs: 200, outputs: 784)], 50)
        XCTAssertEqual(sites[ProductSite(.weightGradient, inputs: 50, outputs: 200)], 50)
        XCTAssertEqual(sites[ProductSite(.inputGradient, inputs: 200, outputs: 200)], 50, "shared by encoder and decoder: the larger")
        // 784-200-200 trunk, μ and log σ heads (200→50 twice: one site), 50-200-200-784 decoder.
        XCTAssertEqual(Set(sites.keys.map { "\($0.inputs)→\($0.outputs)" }), ["784→200", "200→200", "200→50", "50→200", "200→784"])
        XCTAssertEqual(sites.count, 15)
        XCTAssertEqual(model.computePlan(.onednn, precision: .fp32, examples: 10, drawsPerExample: 5, threads: 1).counts, [.onednn: 15])
    }

    /// Training records its plan; evaluation under either backend reads the
    /// checkpoint, and the two estimates agree to Float rounding.
    func testCheckpointFromEitherBackendLoadsUnderTheOther() throws {
        let (data, root) = try smallTrainingFixture(self)
        var nll = [String: Double]()
        for backend in ["onednn", "openblas"] {
            let out = root + "/" + backend
            let train = try runIWAE(["train", "--data", data, "--k", "3", "--epochs", "1", "--batch", "20", "--hidden", "16",
                                     "--latent", "4", "--validation-examples", "40", "--gemm", backend, "--out", out])
            XCTAssertEqual(train.status, 0, train.stderr)
            let saved = try Checkpoint.load(from: out)
            XCTAssertEqual(Set(saved.trainingState!.plan!.kernels.values), [ProductKernel(rawValue: backend)!])
            for other in ["onednn", "openblas"] {
                let evaluate = try runIWAE(["evaluate", out, "--k", "50", "--json", "--gemm", other])
                XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
                let json = try JSONSerialization.jsonObject(with: Data(evaluate.stdout.utf8)) as! [String: Any]
                nll["\(backend)/\(other)"] = json["nll"] as? Double
            }
        }
        // Same model, same draws, products by two libraries: equal to Float rounding.
        XCTAssertEqual(nll["onednn/onednn"]!, nll["onednn/openblas"]!, accuracy: 1e-3)
        XCTAssertEqual(nll["openblas/openblas"]!, nll["openblas/onednn"]!, accuracy: 1e-3)
    }

    /// A resumed run computes with the plan its checkpoint recorded, even
    /// where this machine's plan cache would now choose otherwise: a run with
    /// every product on oneDNN, stopped after one epoch and resumed under a
    /// cache that says OpenBLAS everywhere, ends with the bytes of the run that
    /// never stopped.
    func testResumedRunKeepsItsRecordedPlan() throws {
        let (data, root) = try smallTrainingFixture(self)
        func arguments(_ out: String, epochs: Int) -> [String] {
            ["train", "--data", data, "--k", "3", "--epochs", "\(epochs)", "--batch", "20", "--hidden", "16", "--latent", "4",
             "--validation-examples", "40", "--threads", "2", "--out", out]
        }
        // The questions this run asks the planner, from a first run with an empty cache.
        let discovery = root + "/discovery.json"
        XCTAssertEqual(try runIWAE(arguments(root + "/discover", epochs: 1), environment: ["IWAE_GEMM_PLAN_CACHE": discovery]).status, 0)
        let questions = try JSONDecoder().decode([String: String].self, from: Data(contentsOf: URL(fileURLWithPath: discovery)))
        XCTAssertFalse(questions.isEmpty)
        func cache(_ backend: String) throws -> String {
            let path = root + "/\(backend).json"
            try JSONEncoder().encode(questions.mapValues { _ in backend }).write(to: URL(fileURLWithPath: path))
            return path
        }
        let allOneDNN = try cache("onednn"), allOpenBLAS = try cache("openblas")

        let reference = root + "/reference"
        XCTAssertEqual(try runIWAE(arguments(reference, epochs: 2), environment: ["IWAE_GEMM_PLAN_CACHE": allOneDNN]).status, 0)
        XCTAssertEqual(Set(try Checkpoint.load(from: reference).trainingState!.plan!.kernels.values), [.onednn])
        let stopped = root + "/stopped"
        XCTAssertEqual(try runIWAE(arguments(stopped, epochs: 1), environment: ["IWAE_GEMM_PLAN_CACHE": allOneDNN]).status, 0)
        let resumed = try runIWAE(["train", "--resume", stopped, "--epochs", "2"], environment: ["IWAE_GEMM_PLAN_CACHE": allOpenBLAS])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try trainedBytes(stopped), try trainedBytes(reference))
        // And the cache is what a fresh run follows: the same run under the OpenBLAS cache computes other bits.
        let other = root + "/other"
        XCTAssertEqual(try runIWAE(arguments(other, epochs: 2), environment: ["IWAE_GEMM_PLAN_CACHE": allOpenBLAS]).status, 0)
        XCTAssertEqual(Set(try Checkpoint.load(from: other).trainingState!.plan!.kernels.values), [.openblas])
        XCTAssertNotEqual(try trainedBytes(other), try trainedBytes(reference))
    }

    /// A bf16 run's plan, each site's kernel set by the machine's cache (the
    /// fp32 answers alternating the two libraries, so that the emulations
    /// alternate, and oneDNN's bf16 matmul at every third site where it
    /// passes its check), is the plan its checkpoint records and loading
    /// gives back; a run stopped and resumed under a cache that says
    /// otherwise ends with the bytes of the run that never stopped.
    func testBFloat16PlanRoundTripsThroughCheckpointAndResume() throws {
        let (data, root) = try smallTrainingFixture(self)
        func arguments(_ out: String, epochs: Int) -> [String] {
            ["train", "--data", data, "--k", "3", "--epochs", "\(epochs)", "--batch", "20", "--hidden", "16", "--latent", "4",
             "--validation-examples", "40", "--threads", "2", "--precision", "bf16", "--out", out]
        }
        let discovery = root + "/discovery.json"
        XCTAssertEqual(try runIWAE(arguments(root + "/discover", epochs: 1), environment: ["IWAE_GEMM_PLAN_CACHE": discovery]).status, 0)
        let questions = try JSONDecoder().decode([String: String].self, from: Data(contentsOf: URL(fileURLWithPath: discovery)))
        let passes = BFloat16Units.current.kernelPasses
        let bf16Keys = questions.keys.filter { $0.contains("| bf16 rounded operands |") }, fp32Keys = questions.keys.filter { !$0.contains("| bf16") }
        XCTAssertFalse(fp32Keys.isEmpty)
        XCTAssertEqual(bf16Keys.count, passes ? fp32Keys.count : 0, "a bf16 question for each site only where the units are a candidate")
        func site(_ key: String) -> ProductSite { ProductSite(String(key.split(separator: "|").last!.trimmingCharacters(in: .whitespaces)))! }
        var mixed = [String: String](), expected = [ProductSite: ProductKernel]()
        for (i, key) in fp32Keys.sorted().enumerated() {
            let library: ProductKernel = i % 2 == 0 ? .openblas : .onednn
            mixed[key] = library.rawValue
            expected[site(key)] = ProductKernel(library.library, .bf16)
        }
        for (i, key) in bf16Keys.sorted().enumerated() {
            let kernel = i % 3 == 0 ? .onednnBF16 : expected[site(key)]!
            mixed[key] = kernel.rawValue
            expected[site(key)] = kernel
        }
        XCTAssertEqual(Set(expected.values).count, passes ? 3 : 2)
        let mixedPath = root + "/mixed.json", otherPath = root + "/other.json"
        try JSONEncoder().encode(mixed).write(to: URL(fileURLWithPath: mixedPath))
        try JSONEncoder().encode(Dictionary(uniqueKeysWithValues: questions.keys.map {
            ($0, ($0.contains("| bf16") ? ProductKernel.openblasEmulatingBF16 : .openblas).rawValue)
        })).write(to: URL(fileURLWithPath: otherPath))

        let reference = root + "/reference"
        XCTAssertEqual(try runIWAE(arguments(reference, epochs: 2), environment: ["IWAE_GEMM_PLAN_CACHE": mixedPath]).status, 0)
        let saved = try Checkpoint.load(from: reference)
        XCTAssertEqual(saved.trainingState?.plan, ComputePlan(precision: .bf16, expected))
        XCTAssertEqual(saved.model.plan, ComputePlan(precision: .bf16, expected))
        let stopped = root + "/stopped"
        XCTAssertEqual(try runIWAE(arguments(stopped, epochs: 1), environment: ["IWAE_GEMM_PLAN_CACHE": mixedPath]).status, 0)
        let resumed = try runIWAE(["train", "--resume", stopped, "--epochs", "2"], environment: ["IWAE_GEMM_PLAN_CACHE": otherPath])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try Checkpoint.load(from: stopped).trainingState?.plan, ComputePlan(precision: .bf16, expected))
        XCTAssertEqual(try trainedBytes(stopped), try trainedBytes(reference))
    }

    /// `--gemm onednn` in bf16 with the bf16 kernel refused (`IWAE_BF16=emulate`):
    /// every site is oneDNN's emulation, never its bf16 matmul.
    func testRefusedBFloat16KernelIsNeverPlanned() throws {
        let (data, root) = try smallTrainingFixture(self)
        let out = root + "/emulated"
        let train = try runIWAE(smallTrainArguments(data: data, out: out) + ["--precision", "bf16", "--gemm", "onednn"],
                                environment: ["IWAE_BF16": "emulate"])
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertTrue(train.stdout.contains("IWAE_BF16=emulate: emulated at fp32 speed"), train.stdout)
        XCTAssertEqual(Set(try Checkpoint.load(from: out).trainingState!.plan!.kernels.values), [.onednnEmulatingBF16])
    }
}
