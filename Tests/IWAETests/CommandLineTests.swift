import Foundation
import IWAE
import RealModule
import XCTest

/// The `iwae` tool end to end on a small synthetic data set, and every bad
/// input: one line on stderr, a non-zero exit, never a trap or a partial file.
final class CommandLineTests: XCTestCase {
    var data = ""
    var runDirectory = ""

    override func setUpWithError() throws {
        data = temporaryDirectory(self)
        try writeSyntheticIDX(to: data, train: 300, test: 60, side: 8, gzip: true)
        runDirectory = temporaryDirectory(self)
    }

    /// Common arguments of a small, fast training run.
    func small(_ out: String, epochs: Int = 2) -> [String] {
        smallTrainArguments(data: data, out: out, k: 3, epochs: epochs, hidden: 16, latent: 4)
    }

    func testTrainEvaluateSample() throws {
        let out = runDirectory + "/run"
        let train = try runIWAE(small(out))
        XCTAssertEqual(train.status, 0, train.stderr)
        let lines = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        let last = try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as! [String: Any]
        for key in ["epoch", "step", "train_bound", "validation_bound", "examples_per_s", "seconds"] {
            XCTAssertNotNil(first[key], key)
        }
        XCTAssertEqual(last["step"] as? Int, 2 * 13)   // 260 training images / 20 per batch
        XCTAssertGreaterThan(last["validation_bound"] as! Double, first["validation_bound"] as! Double)
        let checkpoint = try Checkpoint.load(from: out)
        XCTAssertEqual(checkpoint.trainingState?.epoch, 2)

        let evaluate = try runIWAE(["evaluate", out, "--k", "200", "--test-examples", "30", "--json"])
        XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(evaluate.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(json["k"] as? Int, 200)
        XCTAssertEqual(json["examples"] as? Int, 30)
        let nll = json["nll"] as! Double, elbo = json["elbo"] as! Double
        XCTAssertGreaterThan(nll, 0)
        XCTAssertLessThanOrEqual(nll, -elbo)      // L_200 ≥ ELBO
        XCTAssertNotNil(json["nll_stderr"] as? Double)
        XCTAssertNotNil(json["active_units"] as? Int)
        // Per image: the same estimate (same seed), the mean of whose bounds and ELBOs is the summary's.
        let perExample = runDirectory + "/per-example.jsonl"
        let withRows = try runIWAE(["evaluate", out, "--k", "200", "--test-examples", "30", "--json", "--per-example", perExample])
        XCTAssertEqual(withRows.status, 0, withRows.stderr)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(withRows.stdout.utf8)) as! [String: Any])["nll"] as? Double, nll)
        let rows = try String(contentsOfFile: perExample, encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
        XCTAssertEqual(rows.map { $0["index"] as? Int }, (0..<30).map { $0 })
        XCTAssertEqual(-rows.map { $0["bound"] as! Double }.reduce(0, +) / 30, nll, accuracy: 1e-9 * nll)
        XCTAssertEqual(rows.map { $0["elbo"] as! Double }.reduce(0, +) / 30, elbo, accuracy: 1e-9 * abs(elbo))
        try assertOneLineError(["evaluate", out, "--per-example", runDirectory + "/missing/rows.jsonl"], mentioning: "--per-example")
        try assertOneLineError(["evaluate", out, "--per-example", runDirectory], mentioning: "is a directory")
        let table = try runIWAE(["evaluate", out, "--k", "10", "--test-examples", "5"])
        XCTAssertTrue(table.stdout.contains("NLL"), table.stdout)

        let png = runDirectory + "/grid.png"
        let sample = try runIWAE(["sample", out, "--out", png, "--rows", "4"])
        XCTAssertEqual(sample.status, 0, sample.stderr)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: png)))
        XCTAssertEqual(Array(bytes.prefix(4)), [0x89, 0x50, 0x4e, 0x47])
    }

    func testSameSeedSameModel() throws {
        let a = runDirectory + "/a", b = runDirectory + "/b"
        XCTAssertEqual(try runIWAE(small(a, epochs: 1)).status, 0)
        XCTAssertEqual(try runIWAE(small(b, epochs: 1)).status, 0)
        XCTAssertEqual(try Checkpoint.load(from: a).model.store.values.array, try Checkpoint.load(from: b).model.store.values.array)
    }

    func testBadArguments() throws {
        let out = runDirectory + "/bad"
        try assertOneLineError(small(out) + ["--k", "0"], mentioning: "k must be at least 1")
        try assertOneLineError(small(out) + ["--batch", "0"], mentioning: "batch must be at least 1")
        for rate in ["nan", "inf", "0", "-0.001"] {
            try assertOneLineError(small(out) + ["--learning-rate=\(rate)"], mentioning: "learning rate must be finite and positive")
        }
        try assertOneLineError(small(out) + ["--objective", "best"], mentioning: "'best' is invalid for '--objective")
        try assertOneLineError(small(out) + ["--hidden", "16,x"], mentioning: "--hidden")
        try assertOneLineError(small(out) + ["--latent", "0"], mentioning: "latent dimension must be at least 1")
        try assertOneLineError(small(out) + ["--validation-examples", "300"], mentioning: "must be fewer")
        try assertOneLineError(small(out) + ["--k", "1000000000000"], mentioning: "would need")
        try assertOneLineError(small(out) + ["--k", "many"], mentioning: "k")
        try assertOneLineError(["train", "--data", data], mentioning: "--out")
        try assertOneLineError(["frobnicate"], mentioning: "frobnicate")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/model.safetensors"))
    }

    func testBadData() throws {
        let out = runDirectory + "/bad"
        try assertOneLineError(["train", "--data", runDirectory + "/nowhere", "--out", out], mentioning: "does not exist")
        try assertOneLineError(["train", "--out", out], mentioning: "no data set")
        let broken = temporaryDirectory(self)
        try writeSyntheticIDX(to: broken, train: 20, test: 10, side: 4)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: broken + "/train-images-idx3-ubyte")))
        bytes[2] = 0x0b
        try Data(bytes).write(to: URL(fileURLWithPath: broken + "/train-images-idx3-ubyte"))
        try assertOneLineError(["train", "--data", broken, "--out", out], mentioning: "unsupported IDX element type")
        bytes[0] = 0x42; bytes[2] = 8
        try Data(bytes).write(to: URL(fileURLWithPath: broken + "/train-images-idx3-ubyte"))
        try assertOneLineError(["train", "--data", broken, "--out", out], mentioning: "not an IDX file")
        bytes[0] = 0
        try Data(bytes.dropLast(3)).write(to: URL(fileURLWithPath: broken + "/train-images-idx3-ubyte"))
        try assertOneLineError(["train", "--data", broken, "--out", out], mentioning: "truncated")
        try Data(bytes).write(to: URL(fileURLWithPath: broken + "/train-images-idx3-ubyte"))
        try Data(IDXArray(shape: [19], values: [UInt8](repeating: 1, count: 19)).encoded)
            .write(to: URL(fileURLWithPath: broken + "/train-labels-idx1-ubyte"))
        try assertOneLineError(["train", "--data", broken, "--out", out], mentioning: "20 images but 19 labels")
        try Data([0x1f, 0x8b, 1, 2, 3]).write(to: URL(fileURLWithPath: broken + "/train-labels-idx1-ubyte"))
        try assertOneLineError(["train", "--data", broken, "--out", out], mentioning: "gzip")
    }

    func testBadOutputAndCheckpoints() throws {
        // An output directory that cannot be created or written.
        try assertOneLineError(small("/proc/iwae-cannot-write-here"), mentioning: "cannot create output directory")
        let file = runDirectory + "/plain-file"
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        try assertOneLineError(small(file), mentioning: "not a directory")

        let out = runDirectory + "/run"
        XCTAssertEqual(try runIWAE(small(out, epochs: 1)).status, 0)
        try assertOneLineError(["evaluate", runDirectory + "/none"], mentioning: "no checkpoint")
        try assertOneLineError(["evaluate", out, "--k", "0"], mentioning: "k must be between 1")
        // Data whose dimension does not match the checkpoint.
        let other = temporaryDirectory(self)
        try writeSyntheticIDX(to: other, train: 20, test: 10, side: 5)
        try assertOneLineError(["evaluate", out, "--data", other], mentioning: "dimension 25")
        try assertOneLineError(["sample", out, "--data", other, "--out", runDirectory + "/g.png"], mentioning: "dimension 25")
        // A corrupt and a truncated checkpoint.
        let path = out + "/model.safetensors"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count - 7] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        try assertOneLineError(["evaluate", out], mentioning: "checksum mismatch")
        try Data(bytes.prefix(bytes.count / 2)).write(to: URL(fileURLWithPath: path))
        try assertOneLineError(["evaluate", out], mentioning: "truncated")
        try Data("not a checkpoint at all".utf8).write(to: URL(fileURLWithPath: path))
        try assertOneLineError(["sample", out, "--out", runDirectory + "/g.png"], mentioning: "model.safetensors")
        XCTAssertFalse(FileManager.default.fileExists(atPath: runDirectory + "/g.png"))
    }

    /// The full model on synthetic data: `exact_nll` beside the estimate,
    /// options saved in the checkpoint and read back.
    func testLinearGaussianExactLikelihood() throws {
        let out = runDirectory + "/lg"
        let train = try runIWAE(["train", "--data", "linear-gaussian", "--synthetic-dimension", "6", "--synthetic-latent", "2",
                                 "--synthetic-examples", "2000", "--synthetic-test-examples", "200", "--encoder", "full",
                                 "--prior", "learned", "--likelihood", "gaussian", "--learn-sigma", "--decoder-hidden", "none",
                                 "--encoder-hidden", "none", "--latent", "2", "--objective", "elbo", "--epochs", "15",
                                 "--batch", "50", "--validation-examples", "100", "--learning-rate", "0.003", "--out", out])
        XCTAssertEqual(train.status, 0, train.stderr)
        let checkpoint = try Checkpoint.load(from: out)
        XCTAssertEqual(checkpoint.model.configuration.encoder, .full)
        XCTAssertEqual(checkpoint.model.configuration.prior, .learned)
        XCTAssertEqual(checkpoint.model.configuration.likelihood, .gaussian)
        guard case .linearGaussian(let generator, _, _)? = checkpoint.data else { return XCTFail("data \(String(describing: checkpoint.data))") }
        XCTAssertEqual(generator.dimension, 6)
        XCTAssertNotNil(checkpoint.model.store.layout.slot(named: "prior.log_variance"))
        let evaluate = try runIWAE(["evaluate", out, "--k", "500", "--json"])
        XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(evaluate.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(json["examples"] as? Int, 200)
        let nll = json["nll"] as! Double, exact = json["exact_nll"] as! Double
        XCTAssertEqual(nll, exact, accuracy: 0.05)
        let reconstruction = json["reconstruction"] as! Double, kl = json["kl"] as! Double
        XCTAssertTrue(reconstruction.isFinite)
        XCTAssertGreaterThan(kl, 0)
        XCTAssertGreaterThanOrEqual(-nll, (json["elbo"] as! Double) - 1e-6)
        // Bernoulli checkpoints carry no exact likelihood.
        let bernoulli = runDirectory + "/b"
        XCTAssertEqual(try runIWAE(small(bernoulli, epochs: 1)).status, 0)
        let plain = try runIWAE(["evaluate", bernoulli, "--k", "5", "--json"])
        XCTAssertFalse(plain.stdout.contains("exact_nll"))
    }

    func testFullModelBadOptions() throws {
        let out = runDirectory + "/bad"
        try assertOneLineError(small(out) + ["--encoder", "banded"], mentioning: "'banded' is invalid for '--encoder")
        try assertOneLineError(small(out) + ["--prior", "uniform"], mentioning: "'uniform' is invalid for '--prior")
        try assertOneLineError(small(out) + ["--likelihood", "poisson"], mentioning: "'poisson' is invalid for '--likelihood")
        try assertOneLineError(small(out) + ["--learn-sigma"], mentioning: "--learn-sigma needs --likelihood gaussian")
        try assertOneLineError(small(out) + ["--likelihood", "gaussian", "--sigma", "0"], mentioning: "sigma must be finite and positive")
        try assertOneLineError(small(out) + ["--decoder-hidden", "0"], mentioning: "--decoder-hidden")
        try assertOneLineError(["train", "--data", "linear-gaussian", "--out", out], mentioning: "use --likelihood gaussian")
        try assertOneLineError(["train", "--data", "linear-gaussian", "--likelihood", "gaussian", "--synthetic-dimension", "0", "--out", out],
                               mentioning: "synthetic-dimension must be a positive integer")
    }

    /// A checkpoint of the first format (flat string metadata, and from
    /// before the full-model options: no encoder/prior/likelihood keys) still
    /// loads as the diagonal model and evaluates on its recorded data; it
    /// cannot be resumed, and says so.
    func testVersion1CheckpointLoads() throws {
        let out = runDirectory + "/old"
        XCTAssertEqual(try runIWAE(small(out, epochs: 1)).status, 0)
        let path = out + "/model.safetensors"
        var file = try SafetensorsFile(parsing: [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), name: path)
        let v2 = try Checkpoint.load(from: out)
        file.entries.removeAll { $0.name.hasPrefix("optimizer.") || $0.name == "trainer.order" }
        file.metadata = ["format": "iwae-checkpoint", "format_version": "1", "data_dimension": "64", "latent_dimension": "4",
                         "encoder_hidden": "16", "decoder_hidden": "16", "activation": "tanh", "data": data,
                         "image_width": "8", "image_height": "8", "epoch": "1", "k": "3"]
        try Data(file.encoded()).write(to: URL(fileURLWithPath: path))
        let loaded = try Checkpoint.load(from: out)
        XCTAssertEqual(loaded.model.configuration, v2.model.configuration)
        XCTAssertEqual(loaded.model.store.values.array, v2.model.store.values.array)
        XCTAssertEqual(loaded.data, .files(data))
        XCTAssertNil(loaded.training)
        let evaluate = try runIWAE(["evaluate", out, "--k", "3", "--test-examples", "5"])
        XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
        try assertOneLineError(["train", "--resume", out], mentioning: "no training state to resume from")
    }

    func testGradStats() throws {
        let out = runDirectory + "/run"
        XCTAssertEqual(try runIWAE(small(out, epochs: 1)).status, 0)
        let plot = runDirectory + "/snr.png"
        let result = try runIWAE(["grad-stats", out, "--estimators", "reparam,score,score-vimco,stl,dreg", "--ks", "2,8",
                                  "--draws", "20", "--batch", "5", "--json", "--plot", plot])
        XCTAssertEqual(result.status, 0, result.stderr)
        let rows = try result.stdout.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        // 5 estimators × 2 K × 2 groups (encoder, decoder: the standard prior has no parameters).
        XCTAssertEqual(rows.count, 20)
        for row in rows {
            for key in ["estimator", "group", "k", "snr", "slope", "slope_stderr", "variance", "ess_fraction"] { XCTAssertNotNil(row[key], key) }
            let ess = try XCTUnwrap(row["ess_fraction"] as? Double)
            XCTAssertTrue(ess > 0 && ess <= 1 + 1e-12, "ESS/K = \(ess)")
        }
        func value(_ estimator: String, _ group: String, _ k: Int, _ key: String) -> Double {
            rows.first { $0["estimator"] as? String == estimator && $0["group"] as? String == group && $0["k"] as? Int == k }![key] as! Double
        }
        // The score function's encoder variance is orders of magnitude above the pathwise one.
        XCTAssertGreaterThan(value("score", "encoder", 8, "variance"), 100 * value("reparam", "encoder", 8, "variance"))
        // θ takes the same gradient whatever the encoder estimator.
        XCTAssertEqual(value("stl", "decoder", 8, "snr"), value("dreg", "decoder", 8, "snr"), accuracy: 0.5)
        // ESS/K is the model's at each K, whatever the estimator.
        for k in [2, 8] { XCTAssertEqual(value("reparam", "encoder", k, "ess_fraction"), value("dreg", "decoder", k, "ess_fraction")) }
        XCTAssertGreaterThan(value("reparam", "encoder", 2, "ess_fraction"), value("reparam", "encoder", 8, "ess_fraction"))
        // The slope through two points is the line through them; its standard error needs a third.
        let expected = Double.log(value("reparam", "encoder", 8, "snr") / value("reparam", "encoder", 2, "snr")) / Double.log(4)
        XCTAssertEqual(value("reparam", "encoder", 2, "slope"), expected, accuracy: 1e-12)
        XCTAssertTrue(rows[0]["slope_stderr"] is NSNull)
        XCTAssertEqual(Array([UInt8](try Data(contentsOf: URL(fileURLWithPath: plot))).prefix(4)), [0x89, 0x50, 0x4e, 0x47])
        try assertOneLineError(["grad-stats", out, "--estimators", "dreg", "--objective", "elbo"], mentioning: "dreg is for the IWAE bound")
        try assertOneLineError(["grad-stats", out, "--estimators", "score-vimco", "--ks", "1"], mentioning: "vimco needs k > 1")
        try assertOneLineError(["grad-stats", out, "--estimators", "magic"], mentioning: "unknown estimator")
        try assertOneLineError(["grad-stats"], mentioning: "--fresh")
        try assertOneLineError(["grad-stats", out, "--draws", "1"], mentioning: "--draws must be at least 2")
    }

    /// The two-layer model through the CLI: training, evaluation with active
    /// units per layer, grad-stats, and the exact check on a linear-Gaussian chain.
    func testTwoLayerModelThroughTheCLI() throws {
        let out = runDirectory + "/two"
        let train = try runIWAE(small(out, epochs: 1) + ["--upper-layer", "3@8,6/5"])
        XCTAssertEqual(train.status, 0, train.stderr)
        let configuration = try Checkpoint.load(from: out).model.configuration
        XCTAssertEqual(configuration.latentDimensions, [4, 3])
        XCTAssertEqual(configuration.upperLayers[0].decoderHidden, [5])
        let evaluate = try runIWAE(["evaluate", out, "--k", "50", "--test-examples", "20", "--json"])
        XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(evaluate.stdout.utf8)) as! [String: Any]
        XCTAssertEqual((json["active_units_per_layer"] as! [Int]).count, 2)
        XCTAssertEqual(json["latent_dimensions"] as! [Int], [4, 3])
        let stats = try runIWAE(["grad-stats", out, "--estimators", "reparam,dreg", "--ks", "2", "--draws", "5", "--batch", "4", "--json"])
        XCTAssertEqual(stats.status, 0, stats.stderr)
        try assertOneLineError(small(runDirectory + "/a") + ["--upper-layer", "3@8", "--objective", "elbo-analytic"], mentioning: "one stochastic layer")
        try assertOneLineError(small(runDirectory + "/b") + ["--upper-layer", "x@8"], mentioning: "--upper-layer")
        // A linear-Gaussian chain and a model of its form: evaluate reports the exact NLL.
        let chain = runDirectory + "/chain"
        let fit = try runIWAE(["train", "--data", "linear-gaussian", "--synthetic-dimension", "6", "--synthetic-latent", "3",
                               "--synthetic-upper-latent", "2", "--synthetic-examples", "600", "--synthetic-test-examples", "100",
                               "--likelihood", "gaussian", "--learn-sigma", "--prior", "learned", "--encoder", "full",
                               "--latent", "3", "--encoder-hidden", "none", "--decoder-hidden", "none", "--upper-layer", "2@none",
                               "--objective", "elbo", "--epochs", "2", "--batch", "50", "--validation-examples", "100", "--out", chain])
        XCTAssertEqual(fit.status, 0, fit.stderr)
        let exact = try runIWAE(["evaluate", chain, "--k", "100", "--json"])
        let exactJSON = try JSONSerialization.jsonObject(with: Data(exact.stdout.utf8)) as! [String: Any]
        XCTAssertNotNil(exactJSON["exact_nll"] as? Double, exact.stdout)
    }

    func testTrainingWithEachEstimator() throws {
        for extra in [["--estimator", "score", "--baseline", "vimco"], ["--estimator", "stl"], ["--estimator", "dreg"], ["--estimator", "score"]] {
            let out = runDirectory + "/" + extra.joined(separator: "-")
            let result = try runIWAE(small(out, epochs: 1) + extra)
            XCTAssertEqual(result.status, 0, "\(extra): \(result.stderr)")
            XCTAssertEqual(try Checkpoint.load(from: out).training?.options.objective.estimator.rawValue, extra[1])
        }
        try assertOneLineError(small(runDirectory + "/x") + ["--estimator", "dreg", "--objective", "elbo"], mentioning: "dreg is for the IWAE bound")
        try assertOneLineError(small(runDirectory + "/x") + ["--estimator", "telepathy"], mentioning: "'telepathy' is invalid for '--estimator")
        try assertOneLineError(small(runDirectory + "/x") + ["--baseline", "vimco"], mentioning: "--baseline vimco goes with --estimator score")
    }

    /// A diverging run stops with an error naming the step; its last good
    /// checkpoint stays and loads; an existing run is never overwritten.
    func testDivergenceStopsAndKeepsTheLastCheckpoint() throws {
        let out = runDirectory + "/run"
        try assertOneLineError(small(out, epochs: 1) + ["--learning-rate", "1e30"], mentioning: "non-finite")
        let checkpoint = try Checkpoint.load(from: out)
        XCTAssertEqual(checkpoint.trainingState?.step, 0)
        XCTAssertTrue(checkpoint.model.store.values.buffer.allSatisfy { $0.isFinite })
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.contains(".tmp") }
        XCTAssertEqual(leftovers, [])
        // A finished run's directory is not overwritten by a new run.
        let done = runDirectory + "/done"
        XCTAssertEqual(try runIWAE(small(done, epochs: 1)).status, 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: done + "/model.safetensors"))
        try assertOneLineError(small(done, epochs: 1) + ["--learning-rate", "1e30"], mentioning: "already holds a checkpoint")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: done + "/model.safetensors")), before)
    }
}
