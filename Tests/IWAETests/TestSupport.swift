import Foundation
import IWAE
import XCTest

/// `|actual − expected| ≤ atol + rtol·|expected|`, elementwise, with the first
/// offending index in the message.
func assertClose<S: BinaryFloatingPoint>(
    _ actual: [S], _ expected: [S], rtol: Double, atol: Double = 0, _ message: String = "",
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(actual.count, expected.count, "count \(message)", file: file, line: line)
    for i in 0..<min(actual.count, expected.count) {
        let a = Double(actual[i]), e = Double(expected[i])
        if !(abs(a - e) <= atol + rtol * abs(e)) {
            XCTFail("\(message) [\(i)]: \(a) vs \(e) (rtol \(rtol), atol \(atol))", file: file, line: line)
            return
        }
    }
}

func assertClose<S: BinaryFloatingPoint>(
    _ actual: S, _ expected: S, rtol: Double, atol: Double = 0, _ message: String = "",
    file: StaticString = #filePath, line: UInt = #line
) {
    assertClose([actual], [expected], rtol: rtol, atol: atol, message, file: file, line: line)
}

/// A fresh temporary directory, removed at the end of the test.
/// The fixture of the tests that train through the CLI: a directory of small
/// synthetic IDX files (300 training, 40 test images of 8×8) and an empty
/// directory for runs, both removed after the test.
func smallTrainingFixture(_ test: XCTestCase) throws -> (data: String, root: String) {
    let data = temporaryDirectory(test)
    try writeSyntheticIDX(to: data, train: 300, test: 40, side: 8)
    return (data, temporaryDirectory(test))
}

/// The arguments of a small, fast `iwae train` run on `data` into `out`
/// (nil: none given): hidden width 8, latent 2, K = 2, one epoch of batches
/// of 20, `validation` images held out. Options appended after these
/// override them (the last value of an option wins).
func smallTrainArguments(data: String, out: String?, k: Int = 2, epochs: Int = 1, hidden: Int = 8, latent: Int = 2,
                         validation: Int = 40) -> [String] {
    ["train", "--data", data, "--k", "\(k)", "--epochs", "\(epochs)", "--batch", "20", "--hidden", "\(hidden)",
     "--latent", "\(latent)", "--validation-examples", "\(validation)"] + (out.map { ["--out", $0] } ?? [])
}

func temporaryDirectory(_ test: XCTestCase) -> String {
    let path = NSTemporaryDirectory() + "iwae-test-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

/// A small MNIST-format data set: `train` and `test` images of side × side
/// pixels (blurry stripes of a few kinds, so there is something to learn).
func writeSyntheticIDX(to directory: String, train: Int = 300, test: Int = 60, side: Int = 8, gzip: Bool = false) throws {
    let rng = Xoshiro256(seed: 42)
    func images(_ n: Int) -> (IDXArray, IDXArray) {
        var pixels = [UInt8](), labels = [UInt8]()
        for _ in 0..<n {
            let kind = Int(rng.next() % 4)
            for y in 0..<side { for x in 0..<side {
                let on: Bool
                switch kind {
                case 0: on = x < side / 2
                case 1: on = y < side / 2
                case 2: on = x == y || x + 1 == y
                default: on = (x + y) % 3 == 0
                }
                let noise = UInt8(rng.next() % 40)
                pixels.append(on ? 215 + noise : noise)
            } }
            labels.append(UInt8(kind))
        }
        return (IDXArray(shape: [n, side, side], values: pixels), IDXArray(shape: [n], values: labels))
    }
    let (trainImages, trainLabels) = images(train)
    let (testImages, testLabels) = images(test)
    let files = [("train-images-idx3-ubyte", trainImages), ("train-labels-idx1-ubyte", trainLabels),
                 ("t10k-images-idx3-ubyte", testImages), ("t10k-labels-idx1-ubyte", testLabels)]
    for (name, array) in files {
        let bytes = gzip ? try gzipCompress(array.encoded) : array.encoded
        try Data(bytes).write(to: URL(fileURLWithPath: directory + "/" + name + (gzip ? ".gz" : "")))
    }
}

/// Runs the built `iwae` executable; returns exit status, stdout and stderr.
@discardableResult
func runIWAE(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
    let result = try runProcess(productsDirectory.appendingPathComponent("iwae").path, arguments, environment: environment)
    return (result.status, result.stdout, result.stderr)
}

/// The parameters and optimizer moments of the checkpoint in `directory`, as raw bytes.
func trainedBytes(_ directory: String) throws -> [String: [UInt8]] {
    let path = directory + "/model.safetensors"
    let file = try SafetensorsFile(parsing: [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), name: path)
    var result = [String: [UInt8]]()
    for entry in file.entries where entry.name != "trainer.order" { result[entry.name] = entry.bytes }
    return result
}

/// Runs `iwae arguments` and asserts it fails as bad input must: a non-zero
/// exit (not a signal) and exactly one line on stderr, `iwae: error: …`,
/// containing `fragment`.
func assertOneLineError(_ arguments: [String], mentioning fragment: String, _ label: String = "",
                        file: StaticString = #filePath, line: UInt = #line) throws {
    let result = try runIWAE(arguments)
    let what = label.isEmpty ? "\(arguments)" : label
    XCTAssertNotEqual(result.status, 0, "\(what): exit 0", file: file, line: line)
    XCTAssertLessThan(result.status, 128, "\(what): killed by a signal: \(result.stderr)", file: file, line: line)
    XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "\(what): stderr \(result.stderr)", file: file, line: line)
    XCTAssertTrue(result.stderr.hasPrefix("iwae: error: ") && result.stderr.contains(fragment),
                  "\(what): '\(result.stderr)' lacks '\(fragment)'", file: file, line: line)
}

/// Runs `executable` to its end; stdout goes to `stdout` when given (a
/// device, say), else it is captured. Returns status, how it ended, and both streams.
func runProcess(_ executable: String, _ arguments: [String], environment: [String: String] = [:], stdout: FileHandle? = nil)
    throws -> (status: Int32, reason: Process.TerminationReason, stdout: String, stderr: String)
{
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
    let out = Pipe(), err = Pipe()
    process.standardOutput = stdout ?? out
    process.standardError = err
    try process.run()
    let outData = stdout == nil ? out.fileHandleForReading.readDataToEndOfFile() : Data()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, process.terminationReason, String(decoding: outData, as: UTF8.self),
            String(decoding: errData, as: UTF8.self))
}

/// The build products folder (where `iwae` is), found from the test bundle.
var productsDirectory: URL {
    for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
        return bundle.bundleURL.deletingLastPathComponent()
    }
    return Bundle.main.bundleURL
}

/// True when Debian's Fashion-MNIST is installed.
var hasFashionMNIST: Bool {
    FileManager.default.fileExists(atPath: MNISTFormatDataset.fashionMNISTDirectory + "/train-images-idx3-ubyte.gz")
}

/// Trains `model` on `train` by the ELBO (K = 5, batch 50, Adam 3·10⁻³) for
/// `epochs`, then returns exact log p(x) − L_k on `test` for each k (the
/// tightness checks' gaps; the model must be linear-Gaussian).
func tightnessGaps(_ model: VariationalAutoencoder<Float>, train: ImageSet, test: ImageSet, epochs: Int,
                   ks: [Int] = [1, 5, 50]) throws -> [Double] {
    let options = try TrainingOptions(objective: try Objective(.elbo, samplesPerExample: 5), epochs: epochs, batchSize: 50,
                                      learningRate: 3e-3)
    try Trainer(model: model, options: options, validation: nil).train(train)
    let x = Tensor<Float>(shape: [test.count, test.dimension], values: test.pixels)
    let exact = try model.exactLogLikelihood(x.matrix).reduce(0, +) / Double(test.count)
    return try ks.map { k in exact - (try model.estimateLogLikelihood(x.matrix, samples: EvaluationSamples(k), seed: 9, rowsPerPass: 4000).meanLogLikelihood) }
}

/// Mean and variance per parameter of `draws` independent gradients of
/// `objective` on x (the draws' noise from one stream seeded by `seed`): the
/// oracle of the tests that compare estimators in expectation.
func gradientMoments(_ model: VariationalAutoencoder<Double>, _ x: Tensor<Double>, _ objective: Objective, draws: Int,
                     seed: UInt64) throws -> GradientMoments {
    let m = GradientMoments(count: model.store.values.count), rng = Xoshiro256(seed: seed)
    for _ in 0..<draws {
        model.store.zeroGradients()
        try model.accumulateGradient(x.matrix, objective: objective, using: rng)
        m.add(model.store.gradients.pointer)
    }
    return m
}

/// The parameters among `indices` whose two estimates disagree by more
/// than 4.5 standard errors of their difference.
func disagreements(_ a: GradientMoments, _ b: GradientMoments, _ indices: Range<Int>) -> [Int] {
    indices.filter { i in
        let se = (a.variance(i) / Double(a.draws) + b.variance(i) / Double(b.draws)).squareRoot()
        return abs(a.mean[i] - b.mean[i]) > 4.5 * se + 1e-9
    }
}

/// Central differences (f(v + h) − f(v − h)) / 2h of `f` with respect to
/// `values[i]`, for every i in `indices` (the oracle of every gradient test).
func centralDifferences(_ values: UnsafeMutablePointer<Double>, _ indices: Range<Int>, h: Double = 1e-6,
                        _ f: () -> Double) -> [Double] {
    indices.map { i in
        let saved = values[i]
        values[i] = saved + h
        let plus = f()
        values[i] = saved - h
        let minus = f()
        values[i] = saved
        return (plus - minus) / (2 * h)
    }
}

/// −mean_b bound_b of `objective` on x with its M·K draws, whose noise is
/// fixed by `seed`: the function whose central differences the gradient tests take.
func loss(_ model: VariationalAutoencoder<Double>, _ x: Tensor<Double>, _ objective: Objective, seed: UInt64) -> Double {
    let encoded = try! model.encode(x.matrix)
    let lw = try! model.logWeights(encoded, drawsPerExample: objective.drawsPerExample, using: Xoshiro256(seed: seed),
                                   keepForBackward: false)
    var bounds = [Double](repeating: 0, count: x.matrix.rows)
    lw.bound(objective, into: &bounds)
    return -bounds.reduce(0, +) / Double(bounds.count)
}
