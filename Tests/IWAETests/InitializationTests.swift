import Foundation
import IWAE
import XCTest

/// The data-dependent start of the decoder's output layer (`--output-init
/// pca`): the principal components against a closed form and against a
/// naive covariance, the output columns they give, and the option's way
/// through the command line and the checkpoint.
final class InitializationTests: XCTestCase {
    /// Four points (a, a), (−a, −a), (b, −b), (−b, b): mean 0, covariance
    /// ½[[a² + b², a² − b²], [a² − b², a² + b²]], eigenpairs a² along
    /// (1, 1)/√2 and b² along (1, −1)/√2.
    func testClosedForm() throws {
        let a = Float(3).squareRoot(), b = Float(1)
        let x: [Float] = [a, a, -a, -a, b, -b, -b, b]
        let pca = try XCTUnwrap(x.withUnsafeBufferPointer { PrincipalComponents(rows: $0, count: 4, dimension: 2, binarized: false) })
        assertClose(pca.mean, [0, 0], rtol: 0, atol: 1e-12)
        assertClose(pca.variances, [3, 1], rtol: 1e-6)
        let h = 0.5.squareRoot()
        assertClose(pca.direction(0).map { abs($0) }, [h, h], rtol: 1e-6)
        XCTAssertGreaterThan(pca.direction(0)[0] * pca.direction(0)[1], 0)
        XCTAssertLessThan(pca.direction(1)[0] * pca.direction(1)[1], 0)
    }

    /// Random correlated data in [0, 1]: the mean and covariance against
    /// naive loops in Double, then C u_i = λ_i u_i, ‖u_i‖ = 1, u_i ⟂ u_j and
    /// λ in descending order; with `binarized` the covariance gains
    /// diag(mean of x(1 − x)).
    func testEigenpairsOfTheNaiveCovariance() throws {
        let n = 500, d = 7
        let rng = Xoshiro256(seed: 11)
        var x = [Float](repeating: 0, count: n * d)
        for r in 0..<n {
            let common = rng.uniform(Double.self)
            for j in 0..<d { x[r * d + j] = Float(0.6 * common * Double(j % 3) / 2 + 0.4 * rng.uniform(Double.self)) }
        }
        for binarized in [false, true] {
            let pca = try XCTUnwrap(x.withUnsafeBufferPointer { PrincipalComponents(rows: $0, count: n, dimension: d, binarized: binarized) })
            var mean = [Double](repeating: 0, count: d)
            for r in 0..<n { for j in 0..<d { mean[j] += Double(x[r * d + j]) / Double(n) } }
            var c = [Double](repeating: 0, count: d * d)
            for r in 0..<n { for i in 0..<d { for j in 0..<d {
                c[i * d + j] += (Double(x[r * d + i]) - mean[i]) * (Double(x[r * d + j]) - mean[j]) / Double(n)
            } } }
            if binarized {
                for r in 0..<n { for j in 0..<d { let v = Double(x[r * d + j]); c[j * d + j] += v * (1 - v) / Double(n) } }
            }
            assertClose(pca.mean, mean, rtol: 1e-12, atol: 1e-14)
            XCTAssertEqual(pca.variances.reduce(0, +), (0..<d).map { c[$0 * d + $0] }.reduce(0, +), accuracy: 1e-12)
            for i in 0..<d {
                let u = Array(pca.direction(i))
                if i > 0 { XCTAssertGreaterThanOrEqual(pca.variances[i - 1], pca.variances[i]) }
                let cu = (0..<d).map { row in (0..<d).reduce(0.0) { $0 + c[row * d + $1] * u[$1] } }
                assertClose(cu, u.map { pca.variances[i] * $0 }, rtol: 0, atol: 1e-12, "C u_\(i) = λ u_\(i)")
                for j in 0...i {
                    let dot = zip(u, pca.direction(j)).reduce(0.0) { $0 + $1.0 * $1.1 }
                    XCTAssertEqual(dot, i == j ? 1 : 0, accuracy: 1e-12)
                }
            }
        }
    }

    /// OpenBLAS's products change in the last bits with its thread count;
    /// the components must not: the same bits with 1 and 2 threads set
    /// before the call (MNIST's shape: 784 pixels).
    func testSameBitsOnAnyNumberOfBLASThreads() throws {
        let n = 3000, d = 784
        let rng = Xoshiro256(seed: 8)
        let x = (0..<n * d).map { i in Float(i % 7 == 0 ? 0 : rng.uniform(Double.self)) }
        let saved = BLASLibrary.threads
        defer { BLASLibrary.threads = saved }
        var results: [PrincipalComponents] = []
        for threads in [1, 2] {
            BLASLibrary.threads = threads
            results.append(try XCTUnwrap(x.withUnsafeBufferPointer { PrincipalComponents(rows: $0, count: n, dimension: d, binarized: true) }))
            XCTAssertEqual(BLASLibrary.threads, threads, "the caller's thread count is restored")
        }
        XCTAssertTrue(results[0].variances == results[1].variances, "the variances differ with the thread count")
        XCTAssertTrue(results[0].directions == results[1].directions, "the directions differ with the thread count")
    }

    /// The decoder's output columns are √(2D/(D+H)) u_j for j < min(H, D),
    /// from the binarized covariance for a Bernoulli likelihood; the bias is
    /// the logit of the pixel means; every other parameter keeps its draw.
    func testOutputColumnsAlongThePrincipalDirections() throws {
        let side = 3, d = side * side, count = 200
        let rng = Xoshiro256(seed: 5)
        let pixels = (0..<count * d).map { i in Float((i % d < 4 ? 0.7 : 0.2) * rng.uniform(Double.self)) }
        let images = ImageSet(count: count, width: side, height: side, pixels: pixels, labels: [UInt8](repeating: 0, count: count))
        for hidden in [4, 12] {
            var configuration = ModelConfiguration(dataDimension: d)
            configuration.latentDimension = 2
            configuration.encoderHidden = [hidden]
            configuration.decoderHidden = [hidden]
            let model = VariationalAutoencoder<Float>(configuration, seed: 3)
            let glorot = model.store.values.array
            try model.initializeOutputLayer(from: images, .pca)
            let pca = try XCTUnwrap(pixels.withUnsafeBufferPointer { PrincipalComponents(rows: $0, count: count, dimension: d, binarized: true) })
            let output = try XCTUnwrap(model.store.layout.slot(named: "decoder.1.weight"))
            XCTAssertEqual(output.shape, [d, hidden])
            let norm = (2 * Double(d) / Double(d + hidden)).squareRoot()
            let w = model.store.values.array
            for j in 0..<hidden {
                let column = (0..<d).map { w[output.offset + $0 * hidden + j] }
                let expected = j < d ? pca.direction(j).map { Float(norm * $0) } : (0..<d).map { glorot[output.offset + $0 * hidden + j] }
                assertClose(column, expected, rtol: 0, atol: 1e-7, "column \(j), H = \(hidden)")
            }
            let bias = try XCTUnwrap(model.store.layout.slot(named: "decoder.1.bias"))
            for (i, m) in images.pixelMean.enumerated() {
                XCTAssertEqual(w[bias.offset + i], Float.log(m) - Float.log(1 - m), accuracy: 1e-5)
            }
            let changed = Set([output, bias].flatMap { $0.offset..<($0.offset + $0.count) })
            XCTAssertEqual((0..<w.count).filter { !changed.contains($0) && w[$0] != glorot[$0] }, [], "other parameters moved")
        }
    }

    /// A record written before the option existed reads as `.glorot`; the
    /// option survives a round trip.
    func testOptionsRecordWithoutTheField() throws {
        let options = try TrainingOptions(outputInitialization: .pca)
        let encoded = try JSONEncoder().encode(options)
        XCTAssertEqual(try JSONDecoder().decode(TrainingOptions.self, from: encoded), options)
        var object = try XCTUnwrap(JSONSerialization.jsonObject(with: encoded) as? [String: Any])
        XCTAssertEqual(object.removeValue(forKey: "outputInitialization") as? String, "pca")
        let old = try JSONDecoder().decode(TrainingOptions.self, from: JSONSerialization.data(withJSONObject: object))
        XCTAssertEqual(old.outputInitialization, .glorot)
        XCTAssertEqual(old, try options.with(outputInitialization: .glorot))
    }

    /// `iwae train --output-init pca`: the checkpoint records the choice, its
    /// output columns are orthogonal at Glorot's norm, the same seed gives
    /// the same bits with OPENBLAS_NUM_THREADS 1 and 2; a bad value and data too
    /// wide for the factorization are one line each.
    func testThroughTheCommandLine() throws {
        let (data, root) = try smallTrainingFixture(self)
        var runs: [String] = []
        for threads in ["1", "2"] {
            let out = root + "/pca-\(threads)"
            let r = try runIWAE(["train", "--data", data, "--epochs", "1", "--latent", "2", "--hidden", "16", "--output-init", "pca",
                                 "--validation-examples", "50", "--out", out], environment: ["OPENBLAS_NUM_THREADS": threads])
            XCTAssertEqual(r.status, 0, r.stderr)
            runs.append(out)
        }
        XCTAssertEqual(try trainedBytes(runs[0]), try trainedBytes(runs[1]))
        let start = root + "/start"
        let started = try runIWAE(["train", "--data", data, "--epochs", "0", "--latent", "2", "--hidden", "16",
                                   "--output-init", "pca", "--validation-examples", "50", "--out", start])
        XCTAssertEqual(started.status, 0, started.stderr)
        let checkpoint = try Checkpoint.load(from: start)
        XCTAssertEqual(checkpoint.training?.options.outputInitialization, .pca)
        let model = checkpoint.model
        let slot = try XCTUnwrap(model.store.layout.slot(named: "decoder.1.weight"))
        let (d, h) = (slot.shape[0], slot.shape[1])
        let w = model.store.values.array
        for i in 0..<h { for j in 0...i {
            let dot = (0..<d).reduce(0.0) { $0 + Double(w[slot.offset + $1 * h + i]) * Double(w[slot.offset + $1 * h + j]) }
            XCTAssertEqual(dot, i == j ? 2 * Double(d) / Double(d + h) : 0, accuracy: 1e-5, "columns \(i), \(j)")
        } }
        let bad = try runIWAE(["train", "--data", data, "--output-init", "svd", "--out", root + "/bad"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertEqual(bad.stderr.split(separator: "\n").count, 1, bad.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/bad"))
        // Images of 65 × 65 = 4,225 pixels: the D × D factorization is refused before it is tried.
        let wide = temporaryDirectory(self)
        try writeSyntheticIDX(to: wide, train: 20, test: 4, side: 65)
        let tooWide = try runIWAE(["train", "--data", wide, "--output-init", "pca", "--validation-examples", "4",
                                   "--hidden", "8", "--latent", "2", "--out", root + "/wide"])
        XCTAssertNotEqual(tooWide.status, 0)
        XCTAssertEqual(tooWide.stderr.split(separator: "\n").count, 1, tooWide.stderr)
        XCTAssertTrue(tooWide.stderr.contains("D = 4225 is above 4096"), tooWide.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/wide"))
    }
}
