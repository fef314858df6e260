import Foundation
import IWAE
import XCTest

/// `Examples/` is a separate package that depends on this one by path and
/// uses only the public API (`import IWAE`, arrays in, numbers out). This
/// builds it, runs it, and checks every number it prints against a closed
/// form written out here, and its log p(x) against `iwae evaluate`.
final class ExamplesTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func values(_ output: String) throws -> [String: Double] {
        var result = [String: Double]()
        for line in output.split(separator: "\n") {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            result[object["quantity"] as! String] = (object["value"] as! NSNumber).doubleValue
        }
        return result
    }

    func testExamplesPackageBuildsAndItsNumbersHold() throws {
        try checkExamples(configuration: "debug")
    }

    /// Users ship release builds: Swift 6.3.1's optimizer once turned
    /// `elboEstimate` into a function that returned 0.
    func testExamplesPackageInReleaseBuild() throws {
        try checkExamples(configuration: "release")
    }

    func checkExamples(configuration: String) throws {
        let package = ExamplesTests.repository.appendingPathComponent("Examples").path
        // A fresh build folder each time: SwiftPM's incremental build of a path
        // dependency can miss a changed struct layout (seen here: a crash in a
        // stale binary after a field was added to ModelConfiguration).
        let scratch = temporaryDirectory(self)
        let build = try runProcess("/usr/bin/env", ["swift", "build", "-c", configuration, "--package-path", package,
                                                    "--scratch-path", scratch])
        XCTAssertEqual(build.status, 0, "Examples did not build: \(build.stdout.suffix(1500)) \(build.stderr.suffix(1500))")
        let executable = scratch + "/\(configuration)/iwae-examples"

        // A small trained model whose log p(x) the example computes too.
        let data = temporaryDirectory(self), out = temporaryDirectory(self) + "/run"
        try writeSyntheticIDX(to: data, train: 200, test: 30, side: 6)
        let train = try runIWAE(["train", "--data", data, "--k", "3", "--epochs", "1", "--batch", "20", "--hidden", "12",
                                 "--latent", "3", "--validation-examples", "20", "--out", out])
        XCTAssertEqual(train.status, 0, train.stderr)
        let rowsFile = temporaryDirectory(self) + "/rows.npy"
        let result = try runProcess(executable, [out, "20", "300", rowsFile])
        XCTAssertEqual(result.status, 0, result.stderr)
        let v = try values(result.stdout)

        // KL(N(μ, Σ) ‖ N(λ₁, diag λ₂)), k = 2: ½[tr(Λ⁻¹Σ) + (λ₁−μ)ᵀΛ⁻¹(λ₁−μ) − 2 + log det Λ − log det Σ].
        let detSigma = 2.0 * 1 - 0.6 * 0.6
        let kl = 0.5 * ((2.0 / 1 + 1.0 / 2) + (0.25 / 1 + 2.25 / 2) - 2 + Double.log(2) - Double.log(detSigma))
        XCTAssertEqual(v["kl"]!, kl, accuracy: 1e-10)
        XCTAssertEqual(v["kl_from_factor"]!, kl, accuracy: 1e-10)
        // log N(z; μ, Σ) with Σ⁻¹ by the 2×2 adjugate, at z − μ = (0.5, 1).
        let quadratic = (1.0 * 0.25 - 2 * 0.6 * 0.5 * 1 + 2.0 * 1) / detSigma
        XCTAssertEqual(v["log_q_full"]!, -0.5 * quadratic - 0.5 * Double.log(detSigma) - Double.log(2 * Double.pi), accuracy: 1e-10)
        // Diagonal: Σ_i −½((z_i − μ_i)/s_i)² − log s_i − ½ log 2π.
        let diagonal = -0.5 * (0.25 / 4 + 1.0 / 0.25) - Double.log(2) - Double.log(0.5) - Double.log(2 * Double.pi)
        XCTAssertEqual(v["log_q_diagonal"]!, diagonal, accuracy: 1e-10)
        XCTAssertEqual(v["log_r_standard"]!, -0.5 - Double.log(2 * Double.pi), accuracy: 1e-10)
        // Bernoulli: Σ x log σ(ℓ) + (1 − x) log(1 − σ(ℓ)).
        func sigmoid(_ l: Double) -> Double { 1 / (1 + Double.exp(-l)) }
        let bernoulli = Double.log(sigmoid(2)) + Double.log(1 - sigmoid(-1)) + Double.log(sigmoid(0))
        XCTAssertEqual(v["log_p_bernoulli"]!, bernoulli, accuracy: 1e-10)
        // Gaussian, σ² = 0.25: −‖x − f‖²/(2σ²) − (D/2) log(2πσ²).
        XCTAssertEqual(v["log_p_gaussian"]!, -0.5 / 0.5 - Double.log(2 * Double.pi * 0.25), accuracy: 1e-10)
        // Bounds of log w = (−3, −1, −2, −4).
        let weights = [-3.0, -1.0, -2.0, -4.0]
        XCTAssertEqual(v["iwae_bound"]!, Double.log(weights.map { Double.exp($0) }.reduce(0, +) / 4), accuracy: 1e-12)
        XCTAssertEqual(v["elbo"]!, -2.5, accuracy: 1e-15)
        XCTAssertGreaterThan(v["iwae_bound"]!, v["elbo"]!)
        // A TrainingExamples of the example's own trains to the same bits as an ImageSet of its values.
        XCTAssertEqual(v["own_examples_match_image_set"], 1)
        // The loop written with the public step trains: the bound rises over
        // 30 epochs (by 0.09 nats, −2.866 → −2.772, on the AMD EPYC Zen 5), and the training bound of the
        // last epoch lies below the model's L_200 on the same rows, as an
        // average of L_5 under moving parameters lies below a tighter bound
        // of the final ones, up to Monte Carlo noise.
        let firstEpoch = try XCTUnwrap(v["loop_first_epoch_bound"]), lastEpoch = try XCTUnwrap(v["loop_last_epoch_bound"])
        XCTAssertGreaterThan(lastEpoch, firstEpoch + 0.05, "the public-step loop raises the bound: \(firstEpoch) → \(lastEpoch)")
        XCTAssertLessThan(lastEpoch, -v["loop_test_nll"]! + 0.2)
        // Saved into a new directory and loaded back: the same per-row log-likelihoods.
        XCTAssertEqual(v["loaded_scores_match"], 1)
        // The same in Float, within its rounding.
        XCTAssertEqual(v["iwae_bound_float"]!, Double.log(weights.map { Double.exp($0) }.reduce(0, +) / 4), accuracy: 1e-6)
        XCTAssertEqual(v["elbo_float"]!, -2.5, accuracy: 1e-7)
        XCTAssertEqual(v["logsumexp_float"]!, Double.log(weights.map { Double.exp($0) }.reduce(0, +)), accuracy: 1e-6)
        XCTAssertEqual(v["sigmoid_float"]!, sigmoid(2), accuracy: 1e-7)

        // log p(x) through the library equals `iwae evaluate` (same seed, k and images).
        let evaluate = try runIWAE(["evaluate", out, "--k", "300", "--test-examples", "20", "--json"])
        XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(evaluate.stdout.utf8)) as! [String: Any]
        // Same draws, same plan of product libraries, but not always the same
        // OpenBLAS kernels: `iwae` relaunches itself with the CPU's best ones
        // where OpenBLAS fell back to generic ones (the Intel Xeon), and a
        // library user's process keeps what it loaded. Kernels round
        // differently: allow ~100 Float roundings (u = 6·10⁻⁸) relative, far
        // below the estimate's own standard error.
        let nll = json["nll"] as! Double, stderr = json["nll_stderr"] as! Double
        XCTAssertEqual(v["nll"]!, nll, accuracy: 1e-5 + 1e-5 * abs(nll))
        XCTAssertEqual(v["nll_stderr"]!, stderr, accuracy: 1e-5 + 1e-4 * abs(stderr))
        // The same images as a table in the library: the same estimate, and
        // row 0 as `iwae score` scores it (same kernels caveat).
        XCTAssertEqual(v["table_nll"]!, v["nll"]!, accuracy: 1e-9 * abs(nll), "a table of the images is the images")
        let scores = temporaryDirectory(self) + "/scores.csv"
        XCTAssertEqual(try runIWAE(["score", out, "--data", rowsFile, "--k", "300", "--out", scores]).status, 0)
        let first = try String(contentsOfFile: scores, encoding: .utf8).split(separator: "\n")[1].split(separator: ",")
        XCTAssertEqual(v["table_first_row"]!, Double(first[1])!, accuracy: 1e-5 * abs(Double(first[1])!))
        XCTAssertEqual(v["table_first_row_stderr"]!, Double(first[2])!, accuracy: 1e-4 * Double(first[2])! + 1e-7)
    }
}
