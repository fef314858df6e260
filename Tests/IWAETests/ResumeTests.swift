import Foundation
import IWAE
import XCTest

/// Crash-safe, bit-exact resumable training: a run killed with SIGKILL (or
/// stopped by SIGINT) and resumed ends with the same bytes as one that never
/// stopped.
final class ResumeTests: XCTestCase {
    var data = ""
    var root = ""

    override func setUpWithError() throws {
        (data, root) = try smallTrainingFixture(self)
    }

    func arguments(_ out: String) -> [String] {
        smallTrainArguments(data: data, out: out, k: 3, epochs: 3, hidden: 16, latent: 4) + ["--checkpoint-every", "4", "--threads", "2"]
    }

    func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, reason: Process.TerminationReason, stderr: String) {
        let result = try runProcess(productsDirectory.appendingPathComponent("iwae").path, arguments, environment: environment,
                                    stdout: FileHandle.nullDevice)
        return (result.status, result.reason, result.stderr)
    }

    func testKilledRunResumesBitForBit() throws {
        let reference = root + "/reference"
        XCTAssertEqual(try run(arguments(reference)).status, 0)
        let expected = try trainedBytes(reference)
        // 260 training images in batches of 20: 13 steps per epoch, checkpoints every 4 steps.
        for killStep in [6, 13, 27] {
            let out = root + "/killed-\(killStep)"
            let killed = try run(arguments(out), environment: ["IWAE_FAULT_KILL_AT_STEP": "\(killStep)"])
            XCTAssertEqual(killed.reason, .uncaughtSignal, "the run should have died at step \(killStep)")
            XCTAssertEqual(killed.status, SIGKILL)
            let saved = try Checkpoint.load(from: out)
            XCTAssertLessThan(saved.trainingState!.step, killStep)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.contains(".tmp") }, [])
            // Both spellings: `iwae resume DIR` and the older `iwae train --resume DIR`.
            let resumed = try run(killStep == 13 ? ["train", "--resume", out] : ["resume", out])
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            let actual = try trainedBytes(out)
            XCTAssertEqual(Set(actual.keys), Set(expected.keys))
            for (name, bytes) in expected { XCTAssertEqual(actual[name], bytes, "\(name) after a kill at step \(killStep)") }
            XCTAssertEqual(try Checkpoint.load(from: out).trainingState?.step, 39)
        }
    }

    /// Runs `arguments(out) + extra` to its end, and again killed at step
    /// 19 and resumed; asserts both end with the same bytes and returns the
    /// resumed run's directory.
    func assertKilledRunResumesBitForBit(_ name: String, extra: [String]) throws -> String {
        let reference = root + "/\(name)-reference", out = root + "/\(name)-killed"
        XCTAssertEqual(try run(arguments(reference) + extra).status, 0)
        XCTAssertEqual(try run(arguments(out) + extra, environment: ["IWAE_FAULT_KILL_AT_STEP": "19"]).reason, .uncaughtSignal)
        let resumed = try run(["resume", out])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try trainedBytes(out), try trainedBytes(reference), name)
        return out
    }

    /// bf16 training resumes bit for bit too (the rounding is a pure
    /// function of the operands), and the resumed run keeps bf16.
    func testBFloat16RunResumesBitForBit() throws {
        let out = try assertKilledRunResumesBitForBit("bf16", extra: ["--precision", "bf16"])
        XCTAssertEqual(try Checkpoint.load(from: out).training?.options.precision, .bf16)
        // And bf16 is not fp32: the same run in fp32 ends elsewhere.
        let fp32 = root + "/fp32-reference"
        XCTAssertEqual(try run(arguments(fp32)).status, 0)
        XCTAssertNotEqual(try trainedBytes(fp32), try trainedBytes(out))
    }

    /// PIWAE (its two passes, its M recorded in the checkpoint) resumes bit
    /// for bit, and its metrics name it.
    func testPIWAERunResumesBitForBit() throws {
        let out = try assertKilledRunResumesBitForBit("piwae", extra: ["--objective", "piwae", "--m", "2", "--k", "2"])
        let objective = try XCTUnwrap(Checkpoint.load(from: out).training?.options.objective)
        XCTAssertEqual(objective, try Objective(.piwae, samplesPerExample: 2, groups: 2))
        let metrics = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8)
        XCTAssertTrue(metrics.contains("\"objective\":\"piwae(2,2)\""), metrics)
    }

    /// The two-layer model and its resumed run end with the same bytes too.
    func testTwoLayerRunResumesBitForBit() throws {
        let out = try assertKilledRunResumesBitForBit("two", extra: ["--upper-layer", "3@8", "--estimator", "dreg"])
        XCTAssertEqual(try Checkpoint.load(from: out).model.configuration.upperLayers,
                       [StochasticLayer(dimension: 3, encoderHidden: [8], decoderHidden: [8])])
    }

    func testInterruptedRunSavesAndResumes() throws {
        let reference = root + "/reference"
        XCTAssertEqual(try run(arguments(reference)).status, 0)
        let out = root + "/interrupted"
        let stopped = try run(arguments(out), environment: ["IWAE_FAULT_INTERRUPT_AT_STEP": "17"])
        XCTAssertEqual(stopped.status, 130, stopped.stderr)
        XCTAssertTrue(stopped.stderr.contains("continue with: iwae resume \(out)"), stopped.stderr)
        XCTAssertEqual(try Checkpoint.load(from: out).trainingState?.step, 17)
        let resumed = try run(["resume", out])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try trainedBytes(out), try trainedBytes(reference))
        // More epochs on a finished run continue it.
        XCTAssertEqual(try run(["resume", out, "--epochs", "4"]).status, 0)
        XCTAssertEqual(try Checkpoint.load(from: out).trainingState?.epoch, 4)
        XCTAssertEqual(try run(["train", "--resume", out, "--epochs", "5"]).status, 0)
        XCTAssertEqual(try Checkpoint.load(from: out).trainingState?.epoch, 5)
    }

    func testResumeRefusesContradictoryOptionsAndBadCheckpoints() throws {
        let out = root + "/run"
        XCTAssertEqual(try run(arguments(out)).status, 0)
        // `iwae resume` (and `train --resume`, the same command) has no --k at
        // all: the run's options come from its checkpoint, and the parser
        // refuses it in one line.
        try assertOneLineError(["train", "--resume", out, "--k", "5"], mentioning: "Unknown option '--k'")
        try assertOneLineError(["train", "--k", "5", "--resume=" + out], mentioning: "Unknown option '--k'")
        try assertOneLineError(["resume", out, "--k", "5"], mentioning: "--k")
        try assertOneLineError(["resume", out, "--checkpoint-every", "0"], mentioning: "--checkpoint-every must be at least 1")
        XCTAssertEqual(try run(["train", "--resume", root + "/nothing"]).status, 1)
        // A truncated and a bit-flipped checkpoint are refused, never half-loaded.
        let path = out + "/model.safetensors"
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        try Data(bytes.prefix(bytes.count - 100)).write(to: URL(fileURLWithPath: path))
        let truncated = try run(["train", "--resume", out])
        XCTAssertEqual(truncated.status, 1)
        XCTAssertTrue(truncated.stderr.contains("truncated"), truncated.stderr)
        var flipped = bytes
        flipped[bytes.count / 2] ^= 0x04
        try Data(flipped).write(to: URL(fileURLWithPath: path))
        let corrupt = try run(["train", "--resume", out])
        XCTAssertEqual(corrupt.status, 1)
        XCTAssertTrue(corrupt.stderr.contains("checksum mismatch"), corrupt.stderr)
    }
}
