import Foundation
import IWAE
import XCTest

/// Checkpoint format 3: named keys in every metadata document, format 2
/// still read and resumed, the schema document complete, and a checkpoint
/// readable from Python with the `safetensors` package.
final class CheckpointFormatTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func json(_ text: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
    }

    func text(_ object: Any) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    /// Format 2's synthesized form of a format-3 data document.
    func legacy(_ data: [String: Any]) -> [String: Any] {
        switch data["kind"] as! String {
        case "files": return ["files": ["_0": data["name"]!]]
        case "mnist": return ["mnist": data["directory"].map { ["directory": $0] } ?? [:]]
        default: return ["linearGaussian": ["_0": data["generator"]!, "trainExamples": data["trainExamples"]!,
                                            "testExamples": data["testExamples"]!]]
        }
    }

    func testDataSourcesHaveNamedKeysAndTheOldFormStillDecodes() throws {
        let sources: [DataSource] = [.files("fashion-mnist"), .mnist(directory: nil), .mnist(directory: "/data/mnist"),
                                     .linearGaussian(LinearGaussianData(), trainExamples: 300, testExamples: 40)]
        let expectedKeys: [Set<String>] = [["kind", "name"], ["kind", "directory"], ["kind", "directory"],
                                           ["kind", "generator", "trainExamples", "testExamples"]]
        for (source, keys) in zip(sources, expectedKeys) {
            let encoded = String(decoding: try JSONEncoder().encode(source), as: UTF8.self)
            let object = try json(encoded)
            XCTAssertEqual(Set(object.keys), keys, encoded)
            XCTAssertEqual(try JSONDecoder().decode(DataSource.self, from: Data(encoded.utf8)), source)
            let old = try text(legacy(object))
            XCTAssertEqual(try JSONDecoder().decode(DataSource.self, from: Data(old.utf8)), source, old)
        }
        XCTAssertEqual(try json(String(decoding: try JSONEncoder().encode(DataSource.files("x")), as: UTF8.self))["kind"] as? String, "files")
        for bad in [#"{"kind": "floppy", "name": "x"}"#, #"{"files": {"_0": "a"}, "mnist": {}}"#, #"{}"#] {
            XCTAssertThrowsError(try JSONDecoder().decode(DataSource.self, from: Data(bad.utf8)), bad)
        }
    }

    /// A run stopped after one epoch, its checkpoint rewritten in format 2
    /// (the old data documents, version 2, both sums recomputed), resumes to
    /// the bytes of the same run resumed from its format-3 checkpoint.
    func testFormatTwoCheckpointLoadsAndResumesAsFormatThree() throws {
        let (data, root) = try smallTrainingFixture(self)
        let original = root + "/v3"
        let train = try runIWAE(["train", "--data", data, "--k", "3", "--epochs", "1", "--batch", "20", "--hidden", "16", "--latent", "4",
                                 "--validation-examples", "40", "--threads", "2", "--gemm", "openblas", "--out", original])
        XCTAssertEqual(train.status, 0, train.stderr)
        let converted = root + "/v2"
        try FileManager.default.createDirectory(atPath: converted, withIntermediateDirectories: true)
        let path = original + "/model.safetensors"
        var file = try SafetensorsFile(parsing: [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), name: path)
        XCTAssertEqual(file.metadata["format_version"], "3")
        file.metadata["format_version"] = "2"
        file.metadata["data"] = try text(legacy(try json(file.metadata["data"]!)))
        var training = try json(file.metadata["training"]!)
        training["data"] = legacy(training["data"] as! [String: Any])
        file.metadata["training"] = try text(training)
        XCTAssertTrue(file.metadata["data"]!.contains("\"_0\""))
        try Data(Checkpoint.resealed(file).encoded()).write(to: URL(fileURLWithPath: converted + "/model.safetensors"))

        let old = try Checkpoint.load(from: converted), new = try Checkpoint.load(from: original)
        XCTAssertEqual(old.data, new.data)
        XCTAssertEqual(old.training, new.training)
        XCTAssertEqual(old.trainingState, new.trainingState)
        for directory in [original, converted] {
            let resumed = try runIWAE(["train", "--resume", directory, "--epochs", "2"])
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
        }
        XCTAssertEqual(try trainedBytes(converted), try trainedBytes(original))
        let rewritten = try Checkpoint.load(from: converted)
        XCTAssertEqual(rewritten.trainingState?.epoch, 2)
    }

    /// Every key of every metadata document, as the engine writes them for a
    /// rich model (two stochastic layers, full covariance, learned prior and
    /// σ, mid-epoch state) and for image data, is named in the CheckpointFormat article.
    func testSchemaDocumentNamesEveryKey() throws {
        let (data, root) = try smallTrainingFixture(self)
        let synthetic = root + "/lg", images = root + "/images"
        XCTAssertEqual(try runIWAE(["train", "--data", "linear-gaussian", "--synthetic-upper-latent", "2", "--synthetic-examples", "300",
                                    "--likelihood", "gaussian", "--learn-sigma", "--prior", "learned", "--encoder", "full", "--latent", "3",
                                    "--hidden", "8", "--upper-layer", "2@none", "--epochs", "1", "--batch", "20", "--k", "3",
                                    "--validation-examples", "40", "--train-examples", "200", "--threads", "1", "--out", synthetic],
                                   environment: ["IWAE_FAULT_INTERRUPT_AT_STEP": "5"]).status, 130)
        XCTAssertEqual(try runIWAE(smallTrainArguments(data: data, out: images)).status, 0)
        let document = try String(contentsOf: CheckpointFormatTests.repository.appendingPathComponent("Sources/IWAE/IWAE.docc/CheckpointFormat.md"), encoding: .utf8)
        var documented = Set<String>()
        let pattern = try NSRegularExpression(pattern: "`([A-Za-z_][A-Za-z0-9_.]*)`")
        for match in pattern.matches(in: document, range: NSRange(document.startIndex..., in: document)) {
            documented.insert(String(document[Range(match.range(at: 1), in: document)!]))
        }
        func keys(_ value: Any, into found: inout Set<String>) {
            if let object = value as? [String: Any] {
                for (key, child) in object {
                    found.insert(key)
                    if key != "gemmPlan" && key != "plan" { keys(child, into: &found) }   // maps from product sites
                }
            } else if let array = value as? [Any] {
                for child in array { keys(child, into: &found) }
            }
        }
        // A model saved without its run: its plan instead of the run's state.
        let bare = root + "/bare"
        try Checkpoint(model: try Checkpoint.load(from: images).model).save(to: bare)
        var found = Set<String>()
        for directory in [synthetic, images, bare] {
            let path = directory + "/model.safetensors"
            let file = try SafetensorsFile(parsing: [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), name: path)
            XCTAssertEqual(file.metadata["format_version"], "3")
            for (key, value) in file.metadata {
                found.insert(key)
                if key != "plan", let object = try? JSONSerialization.jsonObject(with: Data(value.utf8)) { keys(object, into: &found) }
            }
            for entry in file.entries where entry.name.hasPrefix("trainer.") || entry.name.hasPrefix("optimizer.") {
                found.insert(entry.name)
            }
        }
        XCTAssertTrue(found.contains("batchInEpoch") && found.contains("upperDimension") && found.contains("learnSigma") && found.contains("plan"))
        XCTAssertEqual(found.subtracting(documented), [], "keys a checkpoint holds that the CheckpointFormat article does not name")
    }

    /// The Python snippet of the CheckpointFormat article, run on a checkpoint where
    /// python3 has numpy and safetensors: shapes and a sum of parameters as
    /// Swift reads them.
    func testPythonSnippetReadsACheckpoint() throws {
        let probe = try runProcess("/usr/bin/env", ["python3", "-c", "import numpy, safetensors"])
        guard probe.status == 0 else { throw XCTSkip("python3 with numpy and safetensors is not installed (pip install safetensors numpy)") }
        let document = try String(contentsOf: CheckpointFormatTests.repository.appendingPathComponent("Sources/IWAE/IWAE.docc/CheckpointFormat.md"), encoding: .utf8)
        let section = document.components(separatedBy: "## Reading a checkpoint from Python")[1]
        let code = section.components(separatedBy: "```python\n")[1].components(separatedBy: "```")[0]
        let (data, root) = try smallTrainingFixture(self)
        let out = root + "/run", script = root + "/read_checkpoint.py"
        try code.write(toFile: script, atomically: true, encoding: .utf8)
        XCTAssertEqual(try runIWAE(smallTrainArguments(data: data, out: out)).status, 0)
        let result = try runProcess("/usr/bin/env", ["python3", script, out + "/model.safetensors"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let read = try json(result.stdout)
        let checkpoint = try Checkpoint.load(from: out)
        XCTAssertEqual(read["format_version"] as? Int, 3)
        XCTAssertEqual(read["latent_dimension"] as? Int, 2)
        XCTAssertEqual(read["data_kind"] as? String, "files")
        let shapes = read["shapes"] as! [String: [Int]]
        for slot in checkpoint.model.store.layout.slots { XCTAssertEqual(shapes[slot.name], slot.shape, slot.name) }
        let sum = checkpoint.model.store.values.array.reduce(0.0) { $0 + Double($1) }
        XCTAssertEqual(read["parameter_sum"] as! Double, sum, accuracy: 1e-9 * Swift.max(1, abs(sum)), "the same values in another order")
    }
}
