import Foundation
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
            for backend in GEMMBackend.allCases {
                c.pointer.update(from: before, count: before.count)
                gemm(MatrixView(c.pointer, rows: m, columns: n, rowStride: ldc), a.matrix, ta, b.matrix, tb,
                     alpha: alpha, beta: beta, backend: backend)
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
        let plan = GEMMPlan([ProductSite(.forward, inputs: 784, outputs: 200): .onednn,
                             ProductSite(.weightGradient, inputs: 200, outputs: 50): .openblas])
        let json = String(decoding: try JSONEncoder().encode(plan), as: UTF8.self)
        XCTAssertTrue(json.contains("\"forward 784→200\":\"onednn\""), json)
        XCTAssertEqual(try JSONDecoder().decode(GEMMPlan.self, from: Data(json.utf8)), plan)
        XCTAssertThrowsError(try JSONDecoder().decode(GEMMPlan.self, from: Data(#"{"sideways 1→2": "onednn"}"#.utf8)))
        XCTAssertThrowsError(try JSONDecoder().decode(GEMMPlan.self, from: Data(#"{"forward 0→2": "onednn"}"#.utf8)))
        XCTAssertThrowsError(try JSONDecoder().decode(GEMMPlan.self, from: Data(#"{"forward 1→2": "cublas"}"#.utf8)))
        XCTAssertEqual(plan.backend(for: ProductSite(.inputGradient, inputs: 784, outputs: 200)), .openblas)
    }

    /// Each affine layer's three products, with the rows each sees: the first
    /// encoder the B examples, the rest the B·K draws.
    func testModelListsItsProductSites() {
        let model = VariationalAutoencoder<Float>(ModelConfiguration(dataDimension: 784), seed: 1)
        let sites = model.productSites(examples: 10, samplesPerExample: 5)
        XCTAssertEqual(sites[ProductSite(.forward, inputs: 784, outputs: 200)], 10)
        XCTAssertEqual(sites[ProductSite(.forward, inputs: 200, outputs: 784)], 50)
        XCTAssertEqual(sites[ProductSite(.weightGradient, inputs: 50, outputs: 200)], 50)
        XCTAssertEqual(sites[ProductSite(.inputGradient, inputs: 200, outputs: 200)], 50, "shared by encoder and decoder: the larger")
        // 784-200-200 trunk, μ and log σ heads (200→50 twice: one site), 50-200-200-784 decoder.
        XCTAssertEqual(Set(sites.keys.map { "\($0.inputs)→\($0.outputs)" }), ["784→200", "200→200", "200→50", "50→200", "200→784"])
        XCTAssertEqual(sites.count, 15)
        XCTAssertEqual(model.gemmPlan(.onednn, examples: 10, samplesPerExample: 5, threads: 1).counts, [.onednn: 15])
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
            XCTAssertEqual(Set(saved.trainingState!.gemmPlan!.backends.values), [GEMMBackend(rawValue: backend)!])
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
        XCTAssertEqual(Set(try Checkpoint.load(from: reference).trainingState!.gemmPlan!.backends.values), [.onednn])
        let stopped = root + "/stopped"
        XCTAssertEqual(try runIWAE(arguments(stopped, epochs: 1), environment: ["IWAE_GEMM_PLAN_CACHE": allOneDNN]).status, 0)
        let resumed = try runIWAE(["train", "--resume", stopped, "--epochs", "2"], environment: ["IWAE_GEMM_PLAN_CACHE": allOpenBLAS])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try trainedBytes(stopped), try trainedBytes(reference))
        // And the cache is what a fresh run follows: the same run under the OpenBLAS cache computes other bits.
        let other = root + "/other"
        XCTAssertEqual(try runIWAE(arguments(other, epochs: 2), environment: ["IWAE_GEMM_PLAN_CACHE": allOpenBLAS]).status, 0)
        XCTAssertEqual(Set(try Checkpoint.load(from: other).trainingState!.gemmPlan!.backends.values), [.openblas])
        XCTAssertNotEqual(try trainedBytes(other), try trainedBytes(reference))
    }
}
