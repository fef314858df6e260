import Foundation
@testable import IWAE
import XCTest

/// The keys of a checkpoint's documents, read strictly by each type's own
/// decoder (CheckpointFormat.md): every optional key written out with its
/// default value loads, evaluates and resumes exactly as when it is absent,
/// and a key no type reads is refused with its path, wherever it sits.
final class CheckpointKeysTests: XCTestCase {
    var root = ""

    override func setUpWithError() throws {
        root = temporaryDirectory(self)
    }

    /// The checkpoint of `iwae train arguments` interrupted after step 2 of its first epoch.
    func interruptedRun(_ name: String, _ arguments: [String]) throws -> String {
        let out = root + "/" + name
        let trained = try runIWAE(["train", "--epochs", "1", "--batch", "20", "--hidden", "4", "--latent", "2", "--out", out] + arguments,
                                  environment: ["IWAE_FAULT_INTERRUPT_AT_STEP": "2"])
        XCTAssertEqual(trained.status, 130, trained.stderr)
        return out
    }

    /// The metadata of the checkpoint in `directory`.
    func file(_ directory: String) throws -> SafetensorsFile {
        let path = directory + "/model.safetensors"
        return try SafetensorsFile(parsing: [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), name: path)
    }

    /// `object` with the value at `path` set to `value` (removed when nil).
    func setting(_ path: ArraySlice<String>, to value: Any?, in object: [String: Any]) -> [String: Any] {
        var object = object
        guard let first = path.first else { return object }
        if path.count == 1 {
            object[first] = value
        } else {
            object[first] = setting(path.dropFirst(), to: value, in: object[first] as? [String: Any] ?? [:])
        }
        return object
    }

    /// `directory`'s checkpoint with `path` of the document `key` set to `value`
    /// (removed when nil), checksums recomputed, in a new directory.
    func edited(_ directory: String, _ key: String, _ path: [String], _ value: Any?) throws -> String {
        var file = try file(directory)
        let document = try JSONSerialization.jsonObject(with: Data(file.metadata[key]!.utf8)) as! [String: Any]
        file.metadata[key] = String(decoding: try JSONSerialization.data(withJSONObject: setting(path[...], to: value, in: document),
                                                                        options: [.sortedKeys]), as: UTF8.self)
        let out = root + "/edit-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try Data(Checkpoint.resealed(file).encoded()).write(to: URL(fileURLWithPath: out + "/model.safetensors"))
        return out
    }

    /// What a checkpoint does: its documents as decoded (the plan aside,
    /// which the resume checks), what `evaluate` prints (its time aside),
    /// and the checkpoint that `--resume` writes at the epoch's end.
    func behaviour(_ directory: String) throws -> (decoded: String, evaluate: NSDictionary, resumed: Data) {
        let checkpoint = try Checkpoint.load(from: directory)
        XCTAssertNil(checkpoint.resumeDamage, directory)
        var state = checkpoint.trainingState
        state?.plan = nil
        let decoded = "\(checkpoint.model.configuration) \(String(describing: checkpoint.data)) \(String(describing: checkpoint.imageSize)) "
            + "\(String(describing: checkpoint.training)) \(String(describing: state))"
        let evaluate = try runIWAE(["evaluate", directory, "--k", "3", "--json"])
        XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
        let numbers = try JSONSerialization.jsonObject(with: Data(evaluate.stdout.utf8)) as! [String: Any]
        let resumed = try runIWAE(["train", "--resume", directory])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        return (decoded, numbers.filter { $0.key != "seconds" } as NSDictionary,
                try Data(contentsOf: URL(fileURLWithPath: directory + "/model.safetensors")))
    }

    /// Every optional key of CheckpointFormat.md, in the runs that leave it
    /// at its default: written out with that value (or, where the writer
    /// writes the default, left out), the checkpoint decodes to the same
    /// values, evaluates to the same numbers and resumes to the same bytes.
    /// The second of the issue's cases: MIWAE with `"groups": 1` written.
    /// Three mid-epoch runs: MIWAE with M = 1 on IDX images (fixed OpenBLAS
    /// products), a Gaussian model on synthetic linear-Gaussian data, and a
    /// table with its test rows in another file.
    func threeRuns() throws -> (images: String, synthetic: String, tabled: String) {
        let data = root + "/images"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try writeSyntheticIDX(to: data, train: 120, test: 20, side: 4)
        let table = root + "/table.npy", tableTest = root + "/table-test.npy"
        let values = (0..<600).map { (i: Int) -> Double in Double((i * 37) % 101) / 10 + Double(i % 3) }
        try write(npyBytes(descr: "<f8", shape: [200, 3], values: values), to: table)
        try write(npyBytes(descr: "<f8", shape: [20, 3], values: Array(values.prefix(60))), to: tableTest)
        let images = try interruptedRun("miwae", ["--data", data, "--objective", "miwae", "--m", "1", "--k", "2", "--gemm", "openblas",
                                                  "--validation-examples", "10"])
        let synthetic = try interruptedRun("linear-gaussian", ["--data", "linear-gaussian", "--synthetic-dimension", "6", "--synthetic-latent", "2",
                                                               "--synthetic-examples", "200", "--synthetic-test-examples", "20",
                                                               "--likelihood", "gaussian", "--validation-examples", "20"])
        let tabled = try interruptedRun("table", ["--data", table, "--test-data", tableTest, "--validation-examples", "20"])
        return (images, synthetic, tabled)
    }

    func testEveryOptionalKeyAtItsDefaultActsAsWhenAbsent() throws {
        let (images, synthetic, tabled) = try threeRuns()
        /// (run, document, path, default); a nil default: the writer writes the default, and the case leaves it out.
        let null = NSNull()
        var cases: [(String, String, [String], Any?)] = []
        for (document, path, value) in [("model", ["upperLayers"], nil), ("model", ["sigmaPerFeature"], false as Any?),
                                        ("training", ["trainExamplesLimit"], null), ("training", ["options", "groups"], 1),
                                        ("training", ["options", "beta"], null), ("training", ["options", "workers"], null),
                                        ("training", ["options", "outputInitialization"], nil), ("training", ["options", "gemm"], nil),
                                        ("training", ["options", "precision"], nil),
                                        // "absent: OpenBLAS throughout", and --gemm openblas wrote OpenBLAS at every site.
                                        ("state", ["gemmPlan"], nil)] as [(String, [String], Any?)] {
            cases.append((images, document, path, value))
        }
        for document in ["data", "training"] {
            let prefix = document == "data" ? [String]() : ["data"]
            cases.append((synthetic, document, prefix + ["generator", "upperDimension"], null))
            for key in ["key", "columns", "testKey", "testFraction"] { cases.append((tabled, document, prefix + ["table", key], null)) }
        }
        var original = [String: (decoded: String, evaluate: NSDictionary, resumed: Data)]()
        for run in [images, synthetic, tabled] {
            let copy = try edited(run, "model", [], nil)   // the file as it is, to resume without touching the run
            original[run] = try behaviour(copy)
        }
        for (run, document, path, value) in cases {
            let label = "\(document).\(path.joined(separator: "."))"
            let written = try JSONSerialization.jsonObject(with: Data(try file(run).metadata[document]!.utf8)) as! [String: Any]
            let present = path.dropLast().reduce(written as Any?) { ($0 as? [String: Any])?[$1] }.flatMap { ($0 as? [String: Any])?[path.last!] }
            XCTAssertEqual(present == nil, value != nil, "\(label): the writer leaves out exactly the keys it does not write")
            let variant = try edited(run, document, path, value)
            let seen = try behaviour(variant), expected = original[run]!
            XCTAssertEqual(seen.decoded, expected.decoded, label)
            XCTAssertEqual(seen.evaluate, expected.evaluate, label)
            XCTAssertTrue(seen.resumed == expected.resumed, "\(label): the resumed checkpoint differs")
        }
    }

    /// A key that no type reads, at any depth of any document, is refused
    /// by the decoding with its path: in a document `evaluate` reads, the
    /// checkpoint is refused; in the training record or state, only
    /// `--resume` is. Keys of another kind of an enum count as unknown; an
    /// unknown key whose value is null is ignored (null stands for absent),
    /// and a required key that is null is still refused.
    func testUnknownKeysAreRefusedByTheDecodersWithTheirPath() throws {
        let (images, synthetic, tabled) = try threeRuns()
        let null = NSNull()
        let cases: [(String, String, [String], Any, String?)] = [
            (images, "model", ["upperLayers"], [["dimension": 2, "encoderHidden": [4], "decoderHidden": [4], "dropout": 0.1]],
             "model metadata has a key this version does not know: upperLayers[0].dropout"),
            (images, "model", ["dropout"], null, nil),
            (images, "data", ["directory"], "/srv/mnist", "data metadata has a key this version does not know: directory"),
            (images, "data", ["directory"], null, nil),
            (images, "image", ["depth"], 3, "image metadata has a key this version does not know: depth"),
            (images, "training", ["options", "warmup"], 100, "training metadata has a key this version does not know: options.warmup"),
            (images, "training", ["options", "warmup"], null, nil),
            (images, "training", ["options", "seed"], null, "bad training metadata"),
            (images, "training", ["data", "mirror"], "https://example.org", "training metadata has a key this version does not know: data.mirror"),
            (images, "state", ["ema"], [1, 2], "state metadata has a key this version does not know: ema"),
            (synthetic, "training", ["data", "generator", "frobnicate"], 1,
             "training metadata has a key this version does not know: data.generator.frobnicate"),
            (synthetic, "data", ["generator", "upperDimension"], null, nil),
            (tabled, "data", ["table", "encoding", "shift"], [1, 1, 1], "data metadata has a key this version does not know: table.encoding.shift"),
            (tabled, "data", ["table", "encoding"], ["kind": "values", "scale": [1, 1, 1]],
             "data metadata has a key this version does not know: table.encoding.scale"),
            (tabled, "training", ["data", "table", "sheet"], "Sheet1", "training metadata has a key this version does not know: data.table.sheet"),
        ]
        for (run, document, path, value, expected) in cases {
            let label = "\(document).\(path.joined(separator: ".")) = \(value)"
            let directory = try edited(run, document, path, value)
            do {
                let checkpoint = try Checkpoint.load(from: directory)
                if let expected, ["training", "state"].contains(document) {
                    XCTAssertTrue(checkpoint.resumeDamage?.contains(expected) == true, "\(label): \(checkpoint.resumeDamage ?? "resumable")")
                } else {
                    XCTAssertNil(expected, "\(label): read")
                    XCTAssertNil(checkpoint.resumeDamage, label)
                }
            } catch {
                XCTAssertTrue(expected.map { "\(error)".contains($0) } == true && !["training", "state"].contains(document), "\(label): \(error)")
            }
        }
    }

    /// The optional keys no run of the test above leaves out (a data source
    /// of another kind, a table trained with a held-out fraction), decoded
    /// strictly by their types: null, or the documented default, reads as
    /// the key left out.
    func testOptionalKeysOfOtherKindsReadAsAbsent() throws {
        func decode<T: Decodable & Equatable>(_ type: T.Type, _ text: String) throws -> T {
            let decoder = JSONDecoder()
            decoder.userInfo[refusingUnknownKeys] = true
            return try decoder.decode(T.self, from: Data(text.utf8))
        }
        XCTAssertEqual(try decode(DataSource.self, #"{"kind":"mnist"}"#), try decode(DataSource.self, #"{"kind":"mnist","directory":null}"#))
        let table = #""file":"t.npy","splitSeed":1,"testFraction":0.1,"rows":40"#
        for key in ["key", "columns", "testFile", "testKey", "kind", "encoding", "fingerprint", "testFingerprint"] {
            XCTAssertEqual(try decode(TableSource.self, "{\(table)}"), try decode(TableSource.self, "{\(table),\"\(key)\":null}"), key)
        }
        let options = #""objective":"iwae","samplesPerExample":5,"estimator":"reparam","baseline":"none","epochs":1,"batchSize":20,"learningRate":0.001,"schedule":"constant","adamEpsilon":0.0001,"seed":1"#
        for (key, value) in [("groups", "1"), ("beta", "null"), ("workers", "null"), ("outputInitialization", "\"glorot\""),
                             ("gemm", "\"openblas\""), ("precision", "\"fp32\"")] {
            XCTAssertEqual(try decode(TrainingOptions.self, "{\(options)}"), try decode(TrainingOptions.self, "{\(options),\"\(key)\":\(value)}"), key)
        }
    }
}
