import Foundation
@testable import IWAE
import XCTest

/// Forged documents inside a checkpoint: values out of range, keys this
/// version does not know, keys written twice.
extension HostileInputTests {
    /// The checkpoint's `metadata[key]` JSON changed by `change` (checksums recomputed).
    func forgedDocument(_ name: String, _ key: String, _ change: @escaping (inout [String: Any]) -> Void) throws -> String {
        try forged(name) { file in
            var document = try JSONSerialization.jsonObject(with: Data(file.metadata[key]!.utf8)) as! [String: Any]
            change(&document)
            file.metadata[key] = String(decoding: try JSONSerialization.data(withJSONObject: document), as: UTF8.self)
        }
    }

    /// Every typed document of a checkpoint, forged with out-of-range values
    /// or keys this version does not know (checksums recomputed), gives one
    /// line: `evaluate` refuses what it reads (the model, the image size, the
    /// data source); a forged training record or state refuses only
    /// `--resume`, and the parameters still evaluate.
    func testForgedDocumentsAreRefusedInOneLine() throws {
        let mid = root + "/mid-documents"
        XCTAssertEqual(try runIWAE(train(mid) + ["--epochs", "1"], environment: ["IWAE_FAULT_INTERRUPT_AT_STEP": "2"]).status, 130)
        run = mid
        func options(_ change: @escaping (inout [String: Any]) -> Void) -> (inout [String: Any]) -> Void {
            { record in
                var options = record["options"] as! [String: Any]
                change(&options)
                record["options"] = options
            }
        }
        // Read by evaluate: the whole checkpoint is refused.
        let unreadable: [(String, String, (inout [String: Any]) -> Void, String)] = [
            ("model", "negative-latent", { $0["latentDimension"] = -3 }, "latent dimension must be at least 1"),
            ("model", "huge-hidden", { $0["encoderHidden"] = [1 << 40] }, "too large"),
            ("model", "unknown-model-key", { $0["dropout"] = 0.5 }, "does not know: dropout"),
            // 1.5 MB of layers: within the header's allowance, past the document limit (1 MiB), refused unparsed.
            ("model", "long-model", { $0["upperLayers"] = Array(repeating: ["dimension": 2, "encoderHidden": [4], "decoderHidden": [4]],
                                                                count: 30_000) }, "model metadata is"),
            ("image", "negative-width", { $0["width"] = -8 }, "does not hold the model's"),
            ("image", "wrong-size", { $0["width"] = 9; $0["height"] = 9 }, "does not hold the model's"),
            ("data", "unknown-data-key", { $0["mirror"] = "https://example.org" }, "does not know: mirror"),
        ]
        for (key, name, change, fragment) in unreadable {
            let directory = try forgedDocument(name, key, change)
            try assertOneLineError(["evaluate", directory, "--k", "3"], mentioning: fragment, name)
            try assertOneLineError(["train", "--resume", directory], mentioning: fragment, name)
        }
        // Needed only to resume: evaluate reads the parameters, --resume says what is wrong.
        let resumeOnly: [(String, String, (inout [String: Any]) -> Void, String)] = [
            ("training", "negative-limit", { $0["trainExamplesLimit"] = -5 }, "--train-examples must be at least 1"),
            ("training", "zero-threads", { $0["threads"] = 0 }, "threads must be between 1 and"),
            ("training", "negative-validation", { $0["validationExamples"] = -1 }, "--validation-examples must be at least 0"),
            ("training", "count-past-limit", { $0["trainCount"] = 1 << 41 }, "do not fit together"),
            ("training", "zero-batch", options { $0["batchSize"] = 0 }, "batch must be at least 1"),
            // Found by the typed-metadata fuzzer: ⌈count / batch⌉ overflowed (a trap) for a batch near Int.max.
            ("training", "huge-batch", options { $0["batchSize"] = Int.max }, "of an epoch of 1"),
            ("training", "negative-k", options { $0["samplesPerExample"] = -2 }, "k must be at least 1"),
            ("training", "huge-groups", options { $0["objective"] = "miwae"; $0["groups"] = 1 << 62 }, "m × k overflows"),
            ("training", "beta-not-ciwae", options { $0["beta"] = 0.5 }, "--beta is for ciwae, not iwae"),
            ("training", "ciwae-beta-nan", options { $0["objective"] = "ciwae"; $0["beta"] = 2.5 }, "--beta must be in [0, 1]"),
            ("training", "nan-rate", options { $0["learningRate"] = -1.0 }, "learning rate must be finite and positive"),
            ("training", "unknown-option", options { $0["warmup"] = 100 }, "does not know: options.warmup"),
            ("state", "forged-seen", { $0["seen"] = 1 }, "examples seen in the epoch"),
            ("state", "forged-step", { $0["step"] = 7 }, "does not match epoch"),
            ("state", "unknown-state-key", { $0["ema"] = [1, 2] }, "does not know: ema"),
        ]
        for (key, name, change, fragment) in resumeOnly {
            let directory = try forgedDocument(name, key, change)
            let evaluate = try runIWAE(["evaluate", directory, "--k", "3", "--json"])
            XCTAssertEqual(evaluate.status, 0, "\(name): \(evaluate.stderr)")
            try assertOneLineError(["train", "--resume", directory], mentioning: fragment, name)
            XCTAssertTrue(try runIWAE(["train", "--resume", directory]).stderr.contains("the parameters are intact"), name)
        }
        // The unforged checkpoint resumes (the checks accept what the trainer writes).
        let resumed = try runIWAE(["train", "--resume", mid])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
    }

    /// A document that repeats a key, the first copy of it anything at all
    /// (a value out of range, a key this version does not know), is one line
    /// naming the key: for the documents `evaluate` reads, from `evaluate`,
    /// `sample`, `resume` and `train --resume`; for the training record and
    /// state, which only resuming reads, from the two resumes, while the
    /// parameters still evaluate. Readers differ on which copy wins, so none
    /// is read.
    func testRepeatedKeysAreRefusedInOneLine() throws {
        let mid = root + "/mid-repeated"
        XCTAssertEqual(try runIWAE(train(mid) + ["--epochs", "1"], environment: ["IWAE_FAULT_INTERRUPT_AT_STEP": "2"]).status, 130)
        run = mid
        /// The document `key` with `repeated` written first, then the document as it was.
        func repeatedKey(_ name: String, _ key: String, _ repeated: String, firstCopy: String) throws -> String {
            try forged(name) { file in
                let text = file.metadata[key]!
                XCTAssertTrue(text.hasPrefix("{") && text.contains("\"\(repeated)\":"), "\(key) holds \(repeated)")
                file.metadata[key] = "{\"\(repeated)\":\(firstCopy)," + text.dropFirst()
            }
        }
        let sample = root + "/sample.png"
        let readByEvaluate: [(String, String, String)] = [
            ("model", "latentDimension", "4"),
            ("model", "latentDimension", "9223372036854775807"),
            ("data", "kind", "{\"frobnicate\": 1}"),
            ("image", "width", "4"),
        ]
        for (key, repeated, first) in readByEvaluate {
            let directory = try repeatedKey("repeated-\(key)-\(first.count)", key, repeated, firstCopy: first)
            let fragment = "\(key) metadata has the key \"\(repeated)\" twice"
            for command in [["evaluate", directory, "--k", "3"], ["sample", directory, "--out", sample], ["resume", directory],
                            ["train", "--resume", directory]] {
                try assertOneLineError(command, mentioning: fragment, "\(command[0]) \(key).\(repeated)")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: sample), "nothing written")
        }
        for (key, repeated) in [("training", "trainCount"), ("state", "step")] {
            let directory = try repeatedKey("repeated-\(key)", key, repeated, firstCopy: "{\"frobnicate\": 1}")
            let evaluate = try runIWAE(["evaluate", directory, "--k", "3", "--json"])
            XCTAssertEqual(evaluate.status, 0, "\(key): \(evaluate.stderr)")
            for command in [["resume", directory], ["train", "--resume", directory]] {
                try assertOneLineError(command, mentioning: "\(key) metadata has the key \"\(repeated)\" twice", "\(command[0]) \(key)")
            }
        }
        // The safetensors header itself: a tensor named twice.
        let path = run + "/model.safetensors"
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var length = 0
        for i in (0..<8).reversed() { length = length << 8 | Int(bytes[i]) }
        var header = String(decoding: bytes[8..<8 + length], as: UTF8.self)
        let tensor = try XCTUnwrap(header.range(of: #""encoder.0.bias":\{[^}]*\}"#, options: .regularExpression))
        header.insert(contentsOf: header[tensor] + ",", at: tensor.lowerBound)
        var forgedHeader = Array(header.utf8)
        while forgedHeader.count % 8 != 0 { forgedHeader.append(0x20) }
        var file = (0..<8).map { UInt8(truncatingIfNeeded: forgedHeader.count >> (8 * $0)) } + forgedHeader
        file += bytes[(8 + length)...]
        let directory = root + "/repeated-tensor"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Data(file).write(to: URL(fileURLWithPath: directory + "/model.safetensors"))
        try assertOneLineError(["evaluate", directory, "--k", "3"], mentioning: "header has the key \"encoder.0.bias\" twice")
        // And the checkpoint as written still resumes.
        XCTAssertEqual(try runIWAE(["train", "--resume", mid]).status, 0)
    }
}
