import Foundation
@testable import IWAE
import XCTest

/// The Getting Started article works as written: its first Swift block is a
/// new package's `Package.swift`, its other blocks in order are that
/// package's `main.swift`. The package sits beside the checkout under the
/// name the manifest gives (`../iwae`), is built and run; what it trains
/// is what `iwae train` writes, byte for byte, and what it evaluates is what
/// `iwae evaluate` prints.
final class GettingStartedTests: XCTestCase {
    static let article = ExamplesTests.repository.appendingPathComponent("Sources/IWAE/IWAE.docc/GettingStarted.md")

    /// The article's ```swift blocks, in order.
    func swiftBlocks() throws -> [String] {
        let text = try String(contentsOf: GettingStartedTests.article, encoding: .utf8)
        var blocks: [String] = [], current: [Substring]?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil, line == "```swift" { current = [] }
            else if current != nil, line == "```" { blocks.append(current!.joined(separator: "\n") + "\n"); current = nil }
            else { current?.append(line) }
        }
        XCTAssertNil(current, "an unclosed code block")
        return blocks
    }

    /// The groups that `pattern` captures at its first match in `text`, or nil.
    func captures(_ pattern: String, in text: String) throws -> [String]? {
        guard let match = try Regex(pattern).firstMatch(in: text) else { return nil }
        return (1..<match.output.count).map { match.output[$0].substring.map(String.init) ?? "" }
    }

    func testTheArticleBuildsAndRunsAsWritten() throws {
        do { _ = try DataSource.files("fashion-mnist").load(.test) } catch {
            throw XCTSkip("Fashion-MNIST is not installed (Debian's dataset-fashion-mnist): \(error)")
        }
        let blocks = try swiftBlocks()
        XCTAssertGreaterThanOrEqual(blocks.count, 3)
        let manifest = try XCTUnwrap(blocks.first)
        XCTAssertTrue(manifest.hasPrefix("// swift-tools-version:"), "the first block is a manifest")
        let path = try XCTUnwrap(try captures(#"path: "([^"]+)""#, in: manifest)?[0], "the manifest names the checkout's path")

        // The package, and the checkout where its manifest looks for it.
        let root = temporaryDirectory(self), package = root + "/demo"
        let checkout = URL(fileURLWithPath: package).appendingPathComponent(String(path)).standardized.path
        try FileManager.default.createSymbolicLink(atPath: checkout, withDestinationPath: ExamplesTests.repository.path)
        try FileManager.default.createDirectory(atPath: package + "/Sources/demo", withIntermediateDirectories: true)
        try manifest.write(toFile: package + "/Package.swift", atomically: true, encoding: .utf8)
        try blocks.dropFirst().joined(separator: "\n").write(toFile: package + "/Sources/demo/main.swift", atomically: true, encoding: .utf8)
        let build = try runProcess("/usr/bin/env", ["swift", "build", "--package-path", package])
        XCTAssertEqual(build.status, 0, "the article's package did not build: \(build.stdout.suffix(2000)) \(build.stderr.suffix(2000))")

        // Run where a user would, the kernels of this process for it and the command line.
        let kernels = BLASLibrary.kernels.isFallback ? ["OPENBLAS_CORETYPE": BLASLibrary.coreName] : [:]
        let run = try runProcess("/bin/sh", ["-c", "cd '\(package)' && exec .build/debug/demo"], environment: kernels)
        XCTAssertEqual(run.status, 0, "the article's program failed: \(run.stderr)")
        let output = run.stdout
        XCTAssertTrue(output.contains("the copy evaluates to the same bits: true"), output)
        XCTAssertTrue(output.contains("trained on fashion-mnist"), output)
        XCTAssertTrue(output.contains("training iwae K=5 on 1800 images (200 held out), batch 100, 1 epochs"), output)

        // The command in the article's comment writes the same checkpoint.
        let cli = root + "/cli"
        let train = try runIWAE(["train", "--data", "fashion-mnist", "--objective", "iwae", "--k", "5", "--epochs", "1",
                                 "--train-examples", "2000", "--validation-examples", "200", "--out", cli], environment: kernels)
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: package + "/runs/demo/" + Checkpoint.fileName)),
                       try Data(contentsOf: URL(fileURLWithPath: cli + "/" + Checkpoint.fileName)),
                       "TrainingRun from the article and iwae train write the same bytes")
        // And `iwae evaluate` prints the program's NLL.
        let evaluate = try runIWAE(["evaluate", package + "/runs/demo", "--k", "5000", "--test-examples", "100", "--json"], environment: kernels)
        XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
        // (Read as text: JSONSerialization can round the last digit.)
        let nll = try XCTUnwrap(try captures(#""nll": ([^,}]+)"#, in: evaluate.stdout), evaluate.stdout)[0]
        let standardError = try XCTUnwrap(try captures(#""nll_stderr": ([^,}]+)"#, in: evaluate.stdout), evaluate.stdout)[0]
        let printed = try XCTUnwrap(try captures("NLL ([0-9.eE+-]+) ± ([0-9.eE+-]+) nats", in: output), output)
        XCTAssertEqual(Double(printed[0]), Double(nll), "the program's NLL is iwae evaluate's, to the bit")
        XCTAssertEqual(Double(printed[1]), Double(standardError))
        // The table, the user's loop and the closed forms ran to the end.
        XCTAssertTrue(output.contains("over 1000 rows"), output)
        XCTAssertTrue(output.contains("epoch 3: mean bound "), output)
        let kl = try XCTUnwrap(try captures("KL ([0-9.eE+-]+), L_4 ([0-9.eE+-]+), ELBO ([0-9.eE+-]+)", in: output), output)
        let detSigma = 2.0 * 1 - 0.6 * 0.6
        XCTAssertEqual(Double(kl[0])!, 0.5 * ((2.0 / 1 + 1.0 / 2) + (0.25 / 1 + 2.25 / 2) - 2 + Double.log(2) - Double.log(detSigma)),
                       accuracy: 1e-12)
        XCTAssertEqual(Double(kl[1])!, Double.log([-3.0, -1, -2, -4].map { Double.exp($0) }.reduce(0, +) / 4), accuracy: 1e-12)
        XCTAssertEqual(Double(kl[2]), -2.5)
    }
}
