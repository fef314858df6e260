import Foundation
@testable import IWAE
import XCTest

/// `iwae evaluate --method ais` and `iwae bdmc` from the command line.
final class AISCommandTests: XCTestCase {
    /// A linear-Gaussian model trained for 3 epochs: the directory of its run.
    func trainedLinearGaussian() throws -> (root: String, run: String) {
        let root = temporaryDirectory(self), out = root + "/lg"
        let train = try runIWAE(["train", "--data", "linear-gaussian", "--synthetic-dimension", "6", "--synthetic-latent", "2",
                                 "--synthetic-examples", "1000", "--synthetic-test-examples", "40", "--likelihood", "gaussian",
                                 "--learn-sigma", "--decoder-hidden", "none", "--encoder-hidden", "8", "--latent", "2",
                                 "--epochs", "3", "--batch", "50", "--validation-examples", "50", "--out", out])
        XCTAssertEqual(train.status, 0, train.stderr)
        return (root, out)
    }

    /// `iwae evaluate --method ais` on a trained linear-Gaussian model: near
    /// the exact NLL it prints beside it, a per-example file, and each
    /// setting out of range (or given without `--method ais`) one line.
    func testEvaluateByAISFromTheCommandLine() throws {
        let (root, out) = try trainedLinearGaussian()
        let perExample = root + "/ais.jsonl"
        let result = try runIWAE(["evaluate", out, "--method", "ais", "--ais-steps", "300", "--chains", "16", "--json",
                                  "--per-example", perExample])
        XCTAssertEqual(result.status, 0, result.stderr)
        let fields = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let nll = try XCTUnwrap(fields["nll"] as? Double), exact = try XCTUnwrap(fields["exact_nll"] as? Double)
        XCTAssertEqual(nll, exact, accuracy: 0.1, "AIS T = 300 against the exact NLL")
        XCTAssertEqual(fields["method"] as? String, "ais")
        XCTAssertEqual(fields["examples"] as? Int, 40)
        XCTAssertEqual(try String(contentsOfFile: perExample, encoding: .utf8).split(separator: "\n").count, 40)
        let fromEncoder = try runIWAE(["evaluate", out, "--method", "ais", "--ais-start", "encoder", "--ais-steps", "300", "--json"])
        XCTAssertEqual(fromEncoder.status, 0, fromEncoder.stderr)
        let encoderFields = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(fromEncoder.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(encoderFields["ais_start"] as? String, "encoder")
        XCTAssertEqual(try XCTUnwrap(encoderFields["nll"] as? Double), exact, accuracy: 0.1, "AIS from the encoder against the exact NLL")
        for (arguments, fragment) in [(["--ais-steps", "0"], "--ais-steps must be between 1"), (["--chains", "0"], "--chains must be between 1"),
                                      (["--leapfrog", "5000"], "--leapfrog must be between 1"), (["--step-size", "nan"], "--step-size must be in"),
                                      (["--pilot-chains=-1"], "--pilot-chains must be between 0")] {
            try assertOneLineError(["evaluate", out, "--method", "ais"] + arguments, mentioning: fragment, arguments[0])
        }
        try assertOneLineError(["evaluate", out, "--ais-steps", "10"], mentioning: "are for --method ais")
        try assertOneLineError(["evaluate", out, "--ais-start", "encoder"], mentioning: "are for --method ais")
    }

    /// `iwae bdmc`: one JSON line per T, the lower bound below the upper,
    /// the gap shrinking with T, the exact value between them; bad lists and counts are one line.
    func testBDMCFromTheCommandLine() throws {
        let (_, out) = try trainedLinearGaussian()
        let result = try runIWAE(["bdmc", out, "--examples", "30", "--steps", "5,200", "--chains", "8", "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let lines = try result.stdout.split(separator: "\n").map { try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        XCTAssertEqual(lines.map { $0["ais_steps"] as? Int }, [5, 200])
        let gaps = try lines.map { try XCTUnwrap($0["gap"] as? Double) }
        XCTAssertLessThan(gaps[1], gaps[0], "the gap shrinks with T")
        XCTAssertGreaterThan(gaps[1], -0.05, "upper ≥ lower up to noise")
        // A linear-Gaussian model: each line carries the simulated examples'
        // exact log p(x), the same for every T, between the bounds at T = 200.
        let exact = try lines.map { try XCTUnwrap($0["exact"] as? Double) }
        XCTAssertEqual(exact[0], exact[1])
        let (lower, upper) = (try XCTUnwrap(lines[1]["lower"] as? Double), try XCTUnwrap(lines[1]["upper"] as? Double))
        XCTAssertLessThan(lower, exact[1] + 0.05, "lower bound below the exact value, up to noise")
        XCTAssertGreaterThan(upper, exact[1] - 0.05, "upper bound above it, up to noise")
        for (arguments, fragment) in [(["--steps", "10,x"], "comma-separated list of integers"), (["--examples", "0"], "--examples must be between 1"),
                                      (["--steps", "0"], "--ais-steps must be between 1"), (["--ais-steps", "10"], "takes its list of T as --steps")] {
            try assertOneLineError(["bdmc", out] + arguments, mentioning: fragment, arguments.joined(separator: " "))
        }
    }
}
