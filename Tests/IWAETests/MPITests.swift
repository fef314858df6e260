import Foundation
import IWAE
import XCTest

/// `iwae train` under mpirun (built with `--traits MPI`): ranks give the
/// bits of one process, a failing, killed or hung rank stops every rank, and
/// a killed run resumes under mpirun to the bits of one that never stopped.
/// Without the trait, a launch by mpirun is refused in one line.
final class MPITests: XCTestCase {
    var data = ""
    var root = ""

    override func setUpWithError() throws {
        (data, root) = try smallTrainingFixture(self)
    }

    func arguments(_ out: String, threads: Int) -> [String] {
        ["train", "--data", data, "--k", "3", "--epochs", "3", "--batch", "20", "--hidden", "16", "--latent", "4",
         "--validation-examples", "40", "--checkpoint-every", "4", "--threads", "\(threads)", "--out", out]
    }

    #if MPI
    /// `mpirun -np ranks iwae …`, oversubscribed, in a container, as root;
    /// killed after two minutes at most (a hang fails the test, not CI).
    func mpirun(_ ranks: Int, _ arguments: [String], environment: [String: String] = [:]) throws
        -> (status: Int32, stderr: String)
    {
        let launcher = ["120", "mpirun", "-np", "\(ranks)", "--oversubscribe", "--mca", "btl", "self,vader",
                        "--mca", "btl_vader_single_copy_mechanism", "none"]
        let rootAllowed = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"]
        let result = try runProcess("/usr/bin/timeout", launcher + [productsDirectory.appendingPathComponent("iwae").path] + arguments,
                                    environment: rootAllowed.merging(environment) { _, new in new }, stdout: FileHandle.nullDevice)
        return (result.status, result.stderr)
    }

    /// The error lines of `iwae` (not mpirun's own notices).
    func errorLines(_ stderr: String) -> [Substring] { stderr.split(separator: "\n").filter { $0.hasPrefix("iwae:") } }

    func testRanksGiveTheBitsOfOneProcess() throws {
        for ranks in [2, 4] {
            let single = root + "/single\(ranks)", spread = root + "/ranks\(ranks)"
            XCTAssertEqual(try runIWAE(arguments(single, threads: ranks)).status, 0)
            let run = try mpirun(ranks, arguments(spread, threads: 1))
            XCTAssertEqual(run.status, 0, run.stderr)
            XCTAssertEqual(try trainedBytes(spread), try trainedBytes(single), "\(ranks) ranks × 1 thread vs \(ranks) threads")
            // Metrics, written by rank 0 alone, hold the same bounds.
            let bounds = { (dir: String) throws -> [String] in
                try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
                    .map { String($0.split(separator: ",").filter { $0.contains("bound") }.joined()) }
            }
            XCTAssertEqual(try bounds(spread), try bounds(single))
        }
        // A start computed from the data on every rank (principal directions) keeps them equal.
        let singlePCA = root + "/single-pca", spreadPCA = root + "/ranks-pca"
        XCTAssertEqual(try runIWAE(arguments(singlePCA, threads: 2) + ["--output-init", "pca"]).status, 0)
        let pcaRun = try mpirun(2, arguments(spreadPCA, threads: 1) + ["--output-init", "pca"])
        XCTAssertEqual(pcaRun.status, 0, pcaRun.stderr)
        XCTAssertEqual(try trainedBytes(spreadPCA), try trainedBytes(singlePCA), "--output-init pca: 2 ranks vs 2 threads")
        // The opt-in reducer trains too (its bits may differ: OpenMPI picks the order).
        let fast = root + "/allreduce"
        let run = try mpirun(4, arguments(fast, threads: 1) + ["--reducer", "allreduce"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(try Checkpoint.load(from: fast).trainingState?.step, 39)
    }

    func testAFailingRankStopsEveryRankWithOneError() throws {
        let out = root + "/failing"
        let run = try mpirun(2, arguments(out, threads: 1), environment: ["IWAE_FAULT_RANK": "1", "IWAE_FAULT_FAIL_SAVE_AT_STEP": "10"])
        XCTAssertNotEqual(run.status, 0)
        XCTAssertEqual(errorLines(run.stderr), ["iwae: error: rank 1: cannot write the checkpoint at step 12 (injected fault)"], run.stderr)
        // The checkpoint rank 0 wrote at that step is whole, and resumes.
        XCTAssertEqual(try Checkpoint.load(from: out).trainingState?.step, 12)
        let resumed = try mpirun(2, ["train", "--resume", out])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try Checkpoint.load(from: out).trainingState?.step, 39)
    }

    func testAKilledRankStopsTheJobAndTheRunResumesUnderMPIRun() throws {
        let out = root + "/killed", reference = root + "/reference"
        let started = Date()
        let killed = try mpirun(2, arguments(out, threads: 1), environment: ["IWAE_FAULT_RANK": "1", "IWAE_FAULT_KILL_AT_STEP": "22"])
        XCTAssertNotEqual(killed.status, 0)
        XCTAssertNotEqual(killed.status, 124, "mpirun hung after a rank was killed")
        XCTAssertLessThan(Date().timeIntervalSince(started), 60)
        XCTAssertEqual(try Checkpoint.load(from: out).trainingState?.step, 20)
        let resumed = try mpirun(2, ["resume", out])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try runIWAE(arguments(reference, threads: 2)).status, 0)
        XCTAssertEqual(try trainedBytes(out), try trainedBytes(reference))
    }

    /// A rank that hangs (SIGSTOP) does not keep the others waiting: the
    /// exchange timeout stops every rank with one line, and the checkpoint
    /// written before stays whole.
    func testAHungRankIsTimedOut() throws {
        let out = root + "/hung"
        let started = Date()
        let run = try mpirun(2, arguments(out, threads: 1) + ["--rank-timeout", "2"],
                             environment: ["IWAE_FAULT_RANK": "1", "IWAE_FAULT_STOP_AT_STEP": "10"])
        XCTAssertEqual(run.status, 1, run.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 60)
        XCTAssertEqual(errorLines(run.stderr).count, 1, run.stderr)
        XCTAssertTrue(run.stderr.contains("no exchange with the other ranks completed within 2 s"), run.stderr)
        XCTAssertEqual(try Checkpoint.load(from: out).trainingState?.step, 8)
    }

    func testOnlyTrainAndResumeRunAcrossRanks() throws {
        let out = root + "/run"
        XCTAssertEqual(try runIWAE(arguments(out, threads: 1) + ["--epochs", "1"]).status, 0)
        let run = try mpirun(2, ["evaluate", out, "--k", "2"])
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(errorLines(run.stderr), ["iwae: error: only 'iwae train' and 'iwae resume' run across MPI ranks; run other commands without mpirun"])
    }
    #else
    /// A build without the trait refuses, in one line, to be one of several ranks.
    func testABuildWithoutMPIRefusesSeveralRanks() throws {
        let out = root + "/run"
        let result = try runIWAE(arguments(out, threads: 1), environment: ["OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"])
        XCTAssertEqual(result.status, 1)
        XCTAssertEqual(result.stderr, "iwae: error: mpirun started 2 processes but this iwae was built without MPI: build it with 'swift build -c release --traits MPI'\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
    #endif
}
