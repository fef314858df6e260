import Foundation
@testable import IWAE
import XCTest

/// Input chosen to break the tool, beyond the first corpus: numbers that
/// overflow, sizes that would exhaust memory, files that never end or never
/// open, states that do not fit the data, and runs that would lose or mix up
/// a user's files. Every case is one line on stderr and a non-zero exit (or
/// the correct behaviour), never a trap, a hang or a lost file.
final class HostileInputTests: XCTestCase {
    var root = "", data = "", run = ""

    override func setUpWithError() throws {
        root = temporaryDirectory(self)
        data = root + "/data"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try writeSyntheticIDX(to: data, train: 120, test: 20, side: 4)
        run = root + "/run"
        let trained = try runIWAE(train(run) + ["--checkpoint-every", "2", "--epochs", "1"])
        XCTAssertEqual(trained.status, 0, trained.stderr)
    }

    func train(_ out: String) -> [String] {
        smallTrainArguments(data: data, out: out, validation: 10) + ["--threads", "2"]
    }

    /// The checkpoint of `run`, changed by `change`, checksums recomputed (as a careful forger would), in a new directory.
    func forged(_ name: String, _ change: (inout SafetensorsFile) throws -> Void) throws -> String {
        let path = run + "/model.safetensors"
        var file = try SafetensorsFile(parsing: [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), name: path)
        try change(&file)
        file.metadata["checksum_crc32"] = String(Checkpoint.checksum(file.entries))
        file.metadata["metadata_crc32"] = String(Checkpoint.metadataChecksum(file.metadata))
        let directory = root + "/" + name
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Data(file.encoded()).write(to: URL(fileURLWithPath: directory + "/model.safetensors"))
        return directory
    }

    /// A mid-epoch checkpoint (step 2 of 6) whose training state JSON is changed by `change`.
    func forgedState(_ name: String, _ change: @escaping (inout [String: Any]) -> Void) throws -> String {
        try forged(name) { file in
            var state = try JSONSerialization.jsonObject(with: Data(file.metadata["state"]!.utf8)) as! [String: Any]
            change(&state)
            file.metadata["state"] = String(decoding: try JSONSerialization.data(withJSONObject: state), as: UTF8.self)
        }
    }

    func testHostileCommandLinesAndFiles() throws {
        let out = root + "/out"
        let huge = "9223372036854775807"
        let fifo = root + "/fifo"
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let fifoData = root + "/fifo-data"
        try FileManager.default.createDirectory(atPath: fifoData, withIntermediateDirectories: true)
        for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
            XCTAssertEqual(mkfifo(fifoData + "/" + name, 0o644), 0)
        }
        let zeroData = root + "/zero-data"
        try FileManager.default.createDirectory(atPath: zeroData, withIntermediateDirectories: true)
        for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
            try FileManager.default.createSymbolicLink(atPath: zeroData + "/" + name, withDestinationPath: "/dev/zero")
        }
        // A gzip bomb: an IDX header announcing 10 images of 4×4, followed by 16 MB of zeros.
        let bombData = root + "/bomb-data"
        try FileManager.default.createDirectory(atPath: bombData, withIntermediateDirectories: true)
        let header: [UInt8] = [0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 4, 0, 0, 0, 4]
        try Data(try gzipCompress(header + [UInt8](repeating: 0, count: 16 << 20)))
            .write(to: URL(fileURLWithPath: bombData + "/train-images-idx3-ubyte.gz"))
        try FileManager.default.createDirectory(atPath: root + "/bomb-rest", withIntermediateDirectories: true)
        try writeSyntheticIDX(to: root + "/bomb-rest", train: 10, test: 5, side: 4)
        for name in ["train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
            try FileManager.default.copyItem(atPath: root + "/bomb-rest/" + name, toPath: bombData + "/" + name)
        }
        let overflowShape = try forged("overflow-shape") { file in
            file.entries.append(SafetensorsEntry(name: "huge", dtype: "F32", shape: [1 << 62], bytes: []))
        }
        let hugeLatent = try forged("huge-latent") { file in
            file.metadata["model"] = file.metadata["model"]!.replacingOccurrences(of: "\"latentDimension\":2", with: "\"latentDimension\":\(huge)")
        }
        let manyParameters = try forged("many-parameters") { file in
            // A valid architecture of about 2·10⁹ parameters, described by a 30 KB file.
            file.metadata["model"] = file.metadata["model"]!.replacingOccurrences(of: "\"encoderHidden\":[8]", with: "\"encoderHidden\":[30000000]")
        }
        let utf16 = root + "/utf16"
        try FileManager.default.createDirectory(atPath: utf16, withIntermediateDirectories: true)
        let json = Array("{\"__metadata__\":{\"format\":\"iwae-checkpoint\"}}".utf16).flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
        var length = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { length[i] = UInt8(truncatingIfNeeded: json.count >> (8 * i)) }
        try Data(length + json).write(to: URL(fileURLWithPath: utf16 + "/model.safetensors"))
        let newlineTensor = try forged("newline-tensor") { file in file.entries[0].name = "encoder.0.weight\nsecond line" }
        let noChecksums = root + "/no-checksums"
        try FileManager.default.createDirectory(atPath: noChecksums, withIntermediateDirectories: true)
        var stripped = try SafetensorsFile(parsing: [UInt8](try Data(contentsOf: URL(fileURLWithPath: run + "/model.safetensors"))), name: "c")
        stripped.metadata["checksum_crc32"] = nil
        stripped.metadata["metadata_crc32"] = nil
        try Data(stripped.encoded()).write(to: URL(fileURLWithPath: noChecksums + "/model.safetensors"))

        let cases: [(String, [String], String)] = [
            // Class 1: numbers from input that would overflow.
            ("--latent Int.max", train(out) + ["--latent", huge], "would need"),
            ("--hidden Int.max", train(out) + ["--hidden", huge], "would need"),
            ("--encoder-hidden Int.max", train(out) + ["--encoder-hidden", huge], "would need"),
            ("--upper-layer Int.max", train(out) + ["--upper-layer", "\(huge)@8"], "would need"),
            ("--upper-layer huge widths", train(out) + ["--upper-layer", "3@\(huge)"], "would need"),
            ("--k Int.max", train(out) + ["--k", huge], "would need"),
            ("--batch Int.max", train(out) + ["--batch", huge], "would need"),
            ("--latent 2^40, full", train(out) + ["--latent", "1099511627776", "--encoder", "full", "--hidden", "8"], "would need"),
            ("--synthetic-dimension Int.max", ["train", "--data", "linear-gaussian", "--likelihood", "gaussian", "--synthetic-dimension", huge, "--out", out], "too large"),
            ("--synthetic-examples Int.max", ["train", "--data", "linear-gaussian", "--likelihood", "gaussian", "--synthetic-examples", huge, "--out", out], "2^30"),
            ("evaluate --k Int.max", ["evaluate", run, "--k", huge], "k must be between"),
            ("safetensors shape 2^62", ["evaluate", overflowShape], "overflows"),
            ("checkpoint latent Int.max", ["evaluate", hugeLatent], "too large"),
            ("grad-stats --ks empty", ["grad-stats", run, "--ks", ""], "--ks"),
            ("grad-stats --ks 0", ["grad-stats", run, "--ks", "0"], "--ks"),
            // Class 2: resources bounded before they are taken.
            ("--threads 10^9", train(out) + ["--threads", "1000000000"], "threads must be between"),
            ("evaluate --threads 10^9", ["evaluate", run, "--threads", "1000000000"], "--threads must be between"),
            ("2·10⁹ parameters in 30 KB", ["evaluate", manyParameters], "parameters but the file's tensors hold"),
            ("checkpoint /dev/zero", ["evaluate", "/dev/zero"], "not a regular file"),
            ("IDX /dev/zero", train(out).map { $0 == data ? zeroData : $0 }, "not a regular file"),
            ("checkpoint FIFO", ["evaluate", fifo], "not a regular file"),
            ("IDX FIFOs", train(out).map { $0 == data ? fifoData : $0 }, "not a regular file"),
            ("gzip bomb", train(out).map { $0 == data ? bombData : $0 }, "its header announces"),
            // Class 3: state that must be validated.
            ("no checksums", ["evaluate", noChecksums], "missing checksums"),
            ("UTF-16 header", ["evaluate", utf16], "not UTF-8 JSON"),
            // Class 5: output that must not fail silently or say too much.
            ("--estimators empty", ["grad-stats", run, "--estimators", ""], "--estimators"),
            ("--estimators comma", ["grad-stats", run, "--estimators", ","], "unknown estimator"),
            ("newline in --data", train(out).map { $0 == data ? "no\nsuch" : $0 }, "does not exist"),
            ("newline in a tensor name", ["evaluate", newlineTensor], "not part of this model"),
        ]
        for (label, arguments, fragment) in cases {
            try assertOneLineError(arguments, mentioning: fragment, label)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(label) left \(out)")
        }
        print("hostile input: \(cases.count) command-line and file cases, each a one-line error and a non-zero exit")
    }

    /// Resumed state must be a state this run could have saved.
    func testResumedStateIsValidatedAgainstTheData() throws {
        XCTAssertEqual(try Checkpoint.load(from: run).trainingState?.batchInEpoch, 0)
        // A mid-epoch checkpoint to start from: interrupt the run after step 2.
        let mid = root + "/mid"
        let stopped = try runIWAE(train(mid) + ["--epochs", "1"], environment: ["IWAE_FAULT_INTERRUPT_AT_STEP": "2"])
        XCTAssertEqual(stopped.status, 130, stopped.stderr)
        run = mid
        let zeroOrder = try forged("zero-order") { file in
            let index = file.entries.firstIndex { $0.name == "trainer.order" }!
            file.entries[index].bytes = [UInt8](repeating: 0, count: file.entries[index].bytes.count)
        }
        let shortOrder = try forged("short-order") { file in
            let index = file.entries.firstIndex { $0.name == "trainer.order" }!
            file.entries[index].bytes.removeLast(4)
            file.entries[index].shape = [file.entries[index].shape[0] - 1]
        }
        let past = try forgedState("past-epoch") { $0["batchInEpoch"] = 900 }
        let step = try forgedState("step-max") { $0["step"] = Int.max }
        let zeroGenerator = try forgedState("zero-generator") { $0["generator"] = [0, 0, 0, 0] }
        let adamStep = try forged("adam-step") { $0.metadata["optimizer_step"] = "9223372036854775807" }
        let nanMoment = try forged("nan-moment") { file in
            let index = file.entries.firstIndex { $0.name == "optimizer.second_moment" }!
            file.entries[index].bytes.replaceSubrange(0..<4, with: [0, 0, 0xc0, 0x7f])
        }
        for (label, directory, fragment) in [("order of zeros", zeroOrder, "not a permutation"), ("short order", shortOrder, "not a permutation"),
                                            ("position past the epoch", past, "is at batch 900 of an epoch of"), ("step Int.max", step, "out of range"),
                                            ("all-zero generator", zeroGenerator, "all-zero generator"),
                                            ("Adam step Int.max", adamStep, "malformed optimizer state"),
                                            ("NaN Adam moment", nanMoment, "moments contain NaN")] {
            let before = try Data(contentsOf: URL(fileURLWithPath: directory + "/model.safetensors"))
            try assertOneLineError(["train", "--resume", directory], mentioning: fragment, label)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: directory + "/model.safetensors")), before, "\(label): the checkpoint changed")
        }
        // A damaged optimizer state stops only --resume: the parameters still evaluate and sample.
        for directory in [adamStep, nanMoment] {
            let evaluate = try runIWAE(["evaluate", directory, "--k", "3", "--json"])
            XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
            let sample = try runIWAE(["sample", directory, "--out", directory + "/grid.png", "--rows", "2"])
            XCTAssertEqual(sample.status, 0, sample.stderr)
            XCTAssertTrue(try runIWAE(["train", "--resume", directory]).stderr.contains("parameters are intact"))
        }
    }

    /// Under a 4 GiB address-space limit (`ulimit -v`), a model of 1.6·10⁹
    /// parameters is refused in one line before anything is allocated, and
    /// no directory is left behind; so is a checkpoint whose data document
    /// asks for 10⁹-dimensional synthetic data (its checksums recomputed).
    func testSizesAreCheckedAgainstTheProcessLimits() throws {
        let out = root + "/huge"
        let command = "ulimit -v 4194304; exec '\(productsDirectory.appendingPathComponent("iwae").path)' train --data '\(data)' "
            + "--encoder-hidden 40000,40000 --decoder-hidden none --epochs 1 --out '\(out)'"
        let result = try runProcess("/bin/sh", ["-c", command])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("would need") && result.stderr.contains("ulimit -v"), result.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "the refused run's directory stays behind")

        let forgedData = try forged("huge-data") { file in
            let generator = #"{"dimension":1000000000,"latentDimension":5,"noise":0.5,"seed":1}"#
            file.metadata["data"] = #"{"generator":\#(generator),"kind":"linear-gaussian","testExamples":1000,"trainExamples":10000}"#
        }
        try assertOneLineError(["evaluate", forgedData, "--k", "3"], mentioning: "data", "a 10⁹-dimensional data document")

        // A model document listing 10⁶ upper layers (a 60 MB header, checksums recomputed) is refused in
        // one line before it is parsed, under the same limit, in memory of the order of the file: the
        // header is far longer than any written for so few tensors. (A smaller document of more than
        // 1 MiB, within that allowance, is refused by the document limit: `testForgedDocumentsAreRefusedInOneLine`.)
        let layers = try forged("million-layers") { file in
            let text = file.metadata["model"]!
            let layer = #"{"dimension":2,"encoderHidden":[4,4],"decoderHidden":[4,4]}"#
            file.metadata["model"] = #"{"upperLayers":["# + Array(repeating: layer, count: 1_000_000).joined(separator: ",") + "]," + text.dropFirst()
        }
        let executable = productsDirectory.appendingPathComponent("iwae").path
        for command in ["evaluate '\(layers)' --k 3", "sample '\(layers)' --out '\(root)/layers.png'", "train --resume '\(layers)'"] {
            let started = Date()
            let limited = try runProcess("/bin/sh", ["-c", "ulimit -v 4194304; exec '\(executable)' \(command)"])
            XCTAssertEqual(limited.status, 1, limited.stderr)
            XCTAssertEqual(limited.stderr.split(separator: "\n").count, 1, limited.stderr)
            XCTAssertTrue(limited.stderr.contains("the header is") && limited.stderr.contains("bytes of tensors, more than any checkpoint holds"), limited.stderr)
            print("10⁶ upper layers, \(command.split(separator: " ")[0]): refused in \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
        }
        // The largest resident set of the three refusals alone, measured by a Python parent of theirs
        // (its RUSAGE_CHILDREN holds nothing else), where Python is installed.
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else { return print("no python3: peak memory not measured") }
        let header = try FileManager.default.attributesOfItem(atPath: layers + "/model.safetensors")[.size] as! Int
        let script = "import resource, subprocess, sys\nfor c in sys.argv[1:]: subprocess.run(['sh', '-c', c], capture_output=True)\n"
            + "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        let commands = ["evaluate '\(layers)' --k 3", "sample '\(layers)' --out '\(root)/layers.png'", "train --resume '\(layers)'"]
            .map { "ulimit -v 4194304; exec '\(executable)' \($0)" }
        let measured = try runProcess("/usr/bin/python3", ["-c", script] + commands)
        let peak = try XCTUnwrap(Int(measured.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), measured.stderr) * 1024
        print("10⁶ upper layers: a \(header >> 20) MiB file, the refusals' peak resident memory \(peak >> 20) MiB")
        XCTAssertLessThan(peak, 2 * header, "the header is refused before the file is read")
    }
}
