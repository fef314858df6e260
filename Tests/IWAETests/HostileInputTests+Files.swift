import Foundation
@testable import IWAE
import XCTest

/// Runs that would lose or mix up a user's files: races for a directory,
/// divergence, concurrent runs, unwritable outputs.
extension HostileInputTests {
    /// Two `iwae train --out NEW` started together, 50 times: each time one
    /// trains to the end and the other refuses in one line, and the winner's
    /// directory, lock and checkpoint stay whole (the loser never removes
    /// what it did not create and lock).
    func testTwoRunsRacingForOneNewDirectory() throws {
        let executable = productsDirectory.appendingPathComponent("iwae").path
        for attempt in 0..<50 {
            let out = root + "/race-\(attempt)"
            let processes = (0..<2).map { _ -> (Process, Pipe) in
                let process = Process(), err = Pipe()
                process.executableURL = URL(fileURLWithPath: executable)
                process.arguments = train(out) + ["--epochs", "1"]
                process.standardOutput = FileHandle.nullDevice
                process.standardError = err
                return (process, err)
            }
            for (process, _) in processes { try process.run() }
            var outcomes = [(Int32, String)]()
            for (process, err) in processes {
                let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                process.waitUntilExit()
                outcomes.append((process.terminationStatus, text))
            }
            XCTAssertEqual(outcomes.map(\.0).sorted(), [0, 1], "attempt \(attempt): \(outcomes)")
            if let loser = outcomes.first(where: { $0.0 != 0 }) {
                XCTAssertEqual(loser.1.split(separator: "\n").count, 1, loser.1)
                XCTAssertTrue(loser.1.contains("another iwae train is running") || loser.1.contains("already holds a checkpoint"), loser.1)
            }
            XCTAssertNoThrow(try Checkpoint.load(from: out), "attempt \(attempt)")
        }
    }

    /// Divergence never writes a non-finite checkpoint: the last finite one stays and loads.
    func testDivergenceKeepsTheLastFiniteCheckpoint() throws {
        let out = root + "/diverge"
        let result = try runIWAE(train(out) + ["--learning-rate", "1e300", "--checkpoint-every", "1", "--epochs", "2"])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("kept"), result.stderr)
        let kept = try Checkpoint.load(from: out)
        XCTAssertTrue(kept.model.store.values.buffer.allSatisfy { $0.isFinite })
        XCTAssertEqual(try runIWAE(["evaluate", out, "--k", "3"]).status, 0)
        // Resuming diverges again (same learning rate): the same clear error, and the file stays finite.
        try assertOneLineError(["train", "--resume", out], mentioning: "kept", "resume of a diverged run")
        XCTAssertTrue(try Checkpoint.load(from: out).model.store.values.buffer.allSatisfy { $0.isFinite })
    }

    /// Two runs on one directory at once: the second is refused while the first holds the lock.
    func testConcurrentRunsOnOneDirectoryAreRefused() throws {
        let out = root + "/shared"
        let first = Process()
        first.executableURL = productsDirectory.appendingPathComponent("iwae")
        first.arguments = train(out) + ["--epochs", "200"]
        first.standardOutput = FileHandle.nullDevice
        first.standardError = FileHandle.nullDevice
        try first.run()
        defer { first.terminate(); first.waitUntilExit() }
        // Wait until the first run holds the lock and has written its checkpoint.
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: out + "/model.safetensors") && Date() < deadline { usleep(20_000) }
        try assertOneLineError(["train", "--resume", out], mentioning: "another iwae train is running", "concurrent --resume")
        try assertOneLineError(train(out), mentioning: "another iwae train is running", "concurrent --out")
        first.interrupt()
        first.waitUntilExit()
        XCTAssertEqual(first.terminationStatus, 130)
        let lines = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(Set(lines.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["epoch"] as? Int }).count,
                       lines.count, "metrics lines of one run only")
    }

    /// Output errors and paths that cannot be represented fail loudly; a
    /// failed run leaves no directory; a killed run's temporaries are cleaned.
    func testOutputAndDirectories() throws {
        // stdout on a full device.
        let iwae = productsDirectory.appendingPathComponent("iwae").path
        let full = try runProcess(iwae, ["evaluate", run, "--k", "3", "--json"], stdout: FileHandle(forWritingAtPath: "/dev/full"))
        XCTAssertEqual(full.status, 1, full.stderr)
        XCTAssertTrue(full.stderr.contains("cannot write the output"), full.stderr)
        // A non-UTF-8 byte in --out (Swift strings cannot hold one: the shell's printf makes it).
        let raw = try runProcess("/bin/sh", ["-c", "exec \"$0\" train --data \"$1\" --out \"$(printf '%s/caf\\351' \"$2\")\"",
                                             iwae, data, root])
        XCTAssertEqual(raw.status, 64, raw.stderr)
        XCTAssertTrue(raw.stderr.contains("not valid UTF-8"), raw.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root).filter { $0.hasPrefix("caf") }, [])
        // One-character relative names (Foundation's path functions trap on them): a run
        // directory `r`, written to, resumed, evaluated and sampled.
        let short = root + "/short"
        try FileManager.default.createDirectory(atPath: short, withIntermediateDirectories: true)
        let inShort = { (arguments: String) in
            try runProcess("/bin/sh", ["-c", "cd \"$1\" && exec \"$0\" \(arguments)", iwae, short, self.data])
        }
        for (command, written) in [("train --data \"$2\" --hidden 4 --latent 2 --epochs 1 --validation-examples 10 --out r", "r/model.safetensors"),
                                   ("train --resume r/ --epochs 2", "r/model.safetensors"), ("sample r --out s.png", "s.png")] {
            let result = try inShort(command)
            XCTAssertEqual(result.status, 0, "\(command): \(result.stderr)")
            XCTAssertTrue(FileManager.default.fileExists(atPath: short + "/" + written), command)
        }
        XCTAssertEqual(try inShort("evaluate r --k 2").status, 0)
        XCTAssertEqual(splitPath("r").directory, "")
        XCTAssertTrue(splitPath("r/") == ("", "r") && splitPath("/r") == ("/", "r") && splitPath("a//b/") == ("a", "b")
                      && splitPath("/") == ("/", "") && splitPath("x/ab") == ("x", "ab"))
        // A failed run leaves no empty directory behind.
        let failed = root + "/failed"
        XCTAssertNotEqual(try runIWAE(train(failed) + ["--validation-examples", "500"]).status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: failed))
        // Temporaries of killed writers are removed on the next start; a live one is not.
        let orphan = run + "/.model.safetensors.tmp-999999", live = run + "/.model.safetensors.tmp-1"
        for path in [orphan, live] { try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path)) }
        XCTAssertEqual(try runIWAE(["train", "--resume", run, "--epochs", "2"]).status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: orphan))
        XCTAssertTrue(FileManager.default.fileExists(atPath: live), "pid 1 is alive: its file is not ours to remove")
    }
}
