import Foundation
import IWAE
import XCTest

/// The bad-input corpus: every case gets one line `iwae: error: …` on stderr
/// and a non-zero exit; none traps, hangs or leaves a partial file.
final class BadInputCorpusTests: XCTestCase {
    struct Case {
        var name: String
        var arguments: [String]
        var fragment: String
    }

    /// IDX files broken in every way the reader must catch, one data directory each.
    func corruptDataSets(in root: String) throws -> [(String, String, String)] {
        let good = IDXArray(shape: [30, 4, 4], values: [UInt8](repeating: 100, count: 480)).encoded
        let labels = IDXArray(shape: [30], values: [UInt8](repeating: 1, count: 30)).encoded
        let variants: [(String, [UInt8], String)] = [
            ("truncated-header", Array(good.prefix(6)), "truncated IDX header"),
            ("oversized-header", [0, 0, 8, 3, 0, 0, 0xff, 0xff, 0, 0, 0, 4, 0, 0, 0, 4] + Array(good.dropFirst(16)), "truncated IDX data"),
            ("overflowing-dimensions", [0, 0, 8, 3, 0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff], "overflow"),
            ("wrong-magic", [0x1f, 0x9d] + Array(good.dropFirst(2)), "not an IDX file"),
            ("float-elements", [0, 0, 0x0d] + Array(good.dropFirst(3)), "unsupported IDX element type"),
            ("trailing-bytes", good + [0, 0, 0], "unexpected bytes"),
            ("gzip-garbage", [0x1f, 0x8b, 8, 0] + [UInt8](repeating: 0xab, count: 40), "gzip"),
            ("truncated-gzip", Array(try gzipCompress(good).prefix(30)), "truncated gzip"),
            ("no-dimensions", [0, 0, 8, 0], "0 dimensions"),
            ("empty", IDXArray(shape: [0, 4, 4], values: []).encoded, "empty"),
            ("zero-size-images", IDXArray(shape: [30, 0, 4], values: []).encoded, "images of size"),
            ("labels-as-images", IDXArray(shape: [30, 4], values: [UInt8](repeating: 0, count: 120)).encoded, "expected 3"),
        ]
        var result = [(String, String, String)]()
        for (name, images, fragment) in variants {
            let directory = root + "/" + name
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let emptyLabels = name == "empty" ? IDXArray(shape: [0], values: []).encoded : labels
            try Data(images).write(to: URL(fileURLWithPath: directory + "/train-images-idx3-ubyte"))
            try Data(emptyLabels).write(to: URL(fileURLWithPath: directory + "/train-labels-idx1-ubyte"))
            try Data(good).write(to: URL(fileURLWithPath: directory + "/t10k-images-idx3-ubyte"))
            try Data(labels).write(to: URL(fileURLWithPath: directory + "/t10k-labels-idx1-ubyte"))
            result.append((name, directory, fragment))
        }
        let disagreeing = root + "/counts-disagree"
        try FileManager.default.createDirectory(atPath: disagreeing, withIntermediateDirectories: true)
        try Data(good).write(to: URL(fileURLWithPath: disagreeing + "/train-images-idx3-ubyte"))
        try Data(IDXArray(shape: [29], values: [UInt8](repeating: 1, count: 29)).encoded)
            .write(to: URL(fileURLWithPath: disagreeing + "/train-labels-idx1-ubyte"))
        try Data(good).write(to: URL(fileURLWithPath: disagreeing + "/t10k-images-idx3-ubyte"))
        try Data(labels).write(to: URL(fileURLWithPath: disagreeing + "/t10k-labels-idx1-ubyte"))
        result.append(("counts-disagree", disagreeing, "30 images but 29 labels"))
        return result
    }

    func testEveryBadInputFailsCleanly() throws {
        let root = temporaryDirectory(self)
        let data = root + "/good"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try writeSyntheticIDX(to: data, train: 120, test: 20, side: 4)
        let out = root + "/out"
        let base = smallTrainArguments(data: data, out: nil, validation: 10)
        var cases = try corruptDataSets(in: root).map { Case(name: "data: \($0.0)", arguments: ["train", "--data", $0.1, "--out", out], fragment: $0.2) }
        cases += [
            Case(name: "k = 0", arguments: base + ["--k", "0", "--out", out], fragment: "k must be at least 1"),
            Case(name: "batch = 0", arguments: base + ["--batch", "0", "--out", out], fragment: "batch must be at least 1"),
            Case(name: "absurd k", arguments: base + ["--k", "4000000000000", "--out", out], fragment: "would need"),
            Case(name: "absurd batch", arguments: base + ["--batch", "90000000000", "--out", out], fragment: "would need"),
            Case(name: "negative k", arguments: base + ["--k=-3", "--out", out], fragment: "k must be at least 1"),
            Case(name: "latent 0", arguments: base + ["--latent", "0", "--out", out], fragment: "latent dimension must be at least 1"),
            Case(name: "hidden 0", arguments: base + ["--hidden", "0", "--out", out], fragment: "--hidden"),
            Case(name: "learning rate NaN", arguments: base + ["--learning-rate", "nan", "--out", out], fragment: "learning rate"),
            Case(name: "learning rate 0", arguments: base + ["--learning-rate", "0", "--out", out], fragment: "learning rate"),
            Case(name: "sigma inf", arguments: base + ["--likelihood", "gaussian", "--sigma", "inf", "--out", out], fragment: "sigma"),
            Case(name: "validation ≥ data", arguments: base + ["--validation-examples", "120", "--out", out], fragment: "must be fewer"),
            Case(name: "checkpoint-every 0", arguments: base + ["--checkpoint-every", "0", "--out", out], fragment: "--checkpoint-every"),
            Case(name: "contradictory: learn-sigma with bernoulli", arguments: base + ["--learn-sigma", "--out", out], fragment: "--learn-sigma needs"),
            Case(name: "contradictory: vimco without score", arguments: base + ["--baseline", "vimco", "--out", out], fragment: "goes with --estimator score"),
            Case(name: "contradictory: dreg with elbo", arguments: base + ["--estimator", "dreg", "--objective", "elbo", "--out", out], fragment: "dreg"),
            Case(name: "contradictory: stl with elbo-analytic", arguments: base + ["--estimator", "stl", "--objective", "elbo-analytic", "--out", out], fragment: "elbo-analytic"),
            Case(name: "contradictory: real-valued data, bernoulli", arguments: ["train", "--data", "linear-gaussian", "--out", out], fragment: "real-valued"),
            Case(name: "contradictory: --resume with --k", arguments: ["train", "--resume", out, "--k", "3"], fragment: "Unknown option '--k'"),
            Case(name: "missing --out", arguments: ["train", "--data", data], fragment: "--out"),
            Case(name: "unwritable output", arguments: base + ["--out", "/proc/iwae/out"], fragment: "cannot create output directory"),
            Case(name: "output is a file", arguments: base + ["--out", data + "/train-images-idx3-ubyte"], fragment: "not a directory"),
            Case(name: "missing data directory", arguments: ["train", "--data", root + "/none", "--out", out], fragment: "does not exist"),
            Case(name: "evaluate: no checkpoint", arguments: ["evaluate", root + "/none"], fragment: "no checkpoint"),
            Case(name: "evaluate: k = 0", arguments: ["evaluate", out, "--k", "0"], fragment: "k must be between 1"),
            Case(name: "evaluate: test-examples 0", arguments: ["evaluate", out, "--test-examples", "0"], fragment: "--test-examples"),
            Case(name: "sample: not a png", arguments: ["sample", out, "--out", root + "/grid.jpg"], fragment: ".png"),
            Case(name: "sample: 0 rows", arguments: ["sample", out, "--out", root + "/grid.png", "--rows", "0"], fragment: "--rows"),
            Case(name: "grad-stats: 1 draw", arguments: ["grad-stats", out, "--draws", "1"], fragment: "--draws"),
        ]
        var checked = 0
        for c in cases {
            let before = Set((try? FileManager.default.subpathsOfDirectory(atPath: root)) ?? [])
            let result = try runIWAE(c.arguments)
            XCTAssertNotEqual(result.status, 0, "\(c.name): exit 0")
            XCTAssertLessThan(result.status, 128, "\(c.name): killed by a signal")
            let lines = result.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(c.name): stderr \(result.stderr)")
            XCTAssertTrue(result.stderr.hasPrefix("iwae: error: ") && result.stderr.contains(c.fragment),
                          "\(c.name): '\(result.stderr)' lacks '\(c.fragment)'")
            let after = Set((try? FileManager.default.subpathsOfDirectory(atPath: root)) ?? [])
            let leftovers = after.subtracting(before).filter { !$0.hasSuffix("out") }
            XCTAssertTrue(leftovers.isEmpty, "\(c.name) left \(leftovers)")
            checked += 1
        }
        print("bad-input corpus: \(checked) cases, each a one-line error and a non-zero exit")
        // Data smaller than one batch is not an error: one short step per epoch.
        let tiny = root + "/tiny"
        try FileManager.default.createDirectory(atPath: tiny, withIntermediateDirectories: true)
        try writeSyntheticIDX(to: tiny, train: 7, test: 3, side: 4)
        let small = try runIWAE(["train", "--data", tiny, "--hidden", "8", "--latent", "2", "--validation-examples", "2",
                                 "--batch", "100", "--epochs", "2", "--out", root + "/tiny-run"])
        XCTAssertEqual(small.status, 0, small.stderr)
        XCTAssertEqual(try Checkpoint.load(from: root + "/tiny-run").trainingState?.step, 2)
    }

    /// A write error (a full file system) is a one-line error that leaves no
    /// partial checkpoint; a previous checkpoint would stay.
    func testFullFileSystem() throws {
        let root = temporaryDirectory(self)
        let data = root + "/data"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try writeSyntheticIDX(to: data, train: 60, test: 10, side: 8)
        let mountPoint = root + "/full"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mountPoint]
        mount.standardError = FileHandle.nullDevice
        try mount.run()
        mount.waitUntilExit()
        guard mount.terminationStatus == 0 else { throw XCTSkip("cannot mount a small tmpfs here") }
        defer {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = [mountPoint]
            try? umount.run()
            umount.waitUntilExit()
        }
        let result = try runIWAE(["train", "--data", data, "--validation-examples", "10", "--epochs", "1", "--out", mountPoint + "/run"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.hasPrefix("iwae: error: cannot write"), result.stderr)
        XCTAssertTrue(result.stderr.contains("No space left on device"), result.stderr)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1)
        // The run created its directory and wrote nothing: the directory is gone too.
        XCTAssertFalse(FileManager.default.fileExists(atPath: mountPoint + "/run"))
    }

    /// All log-weights −∞ (a Gaussian decoder with a tiny σ, far from the
    /// data): a clear error naming the step, and the parameters untouched.
    func testAllLogWeightsMinusInfinityIsAClearError() throws {
        let generator = LinearGaussianData(dimension: 4, latentDimension: 2, noise: 0.5, seed: 1)
        let train = generator.examples(40, sampleSeed: 1)
        let c = ModelConfiguration(dataDimension: 4, latentDimension: 2, encoderHidden: [4], decoderHidden: [],
                                   likelihood: .gaussian, sigma: 1e-30)
        let model = VariationalAutoencoder<Float>(c, seed: 1)
        let before = model.store.values.array
        let options = try TrainingOptions(epochs: 1, batchSize: 10, outputInitialization: .unchanged)
        let trainer = try Trainer(model: model, options: options, validation: nil)
        XCTAssertThrowsError(try trainer.train(train)) { error in
            XCTAssertTrue("\(error)".contains("non-finite bound") && "\(error)".contains("step 1"), "\(error)")
        }
        XCTAssertEqual(model.store.values.array, before)
        // NaN or infinite data is refused up front.
        var poisoned = train
        poisoned.pixels[13] = .nan
        XCTAssertThrowsError(try Trainer(model: model, options: options, validation: nil).train(poisoned)) { error in
            XCTAssertTrue("\(error)".contains("training example 3 has a NaN"), "\(error)")
        }
    }
}
