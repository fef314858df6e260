import Foundation
import XCTest

/// The generated reference documentation (the test command generates it,
/// combined over the four modules, before the release tests run) has a page
/// for each type a user calls, and the landing page curates it.
final class DocumentationTests: XCTestCase {
    func testTheReferenceHasAPageForEachTypeUsersCall() throws {
        let archive = ExamplesTests.repository.appendingPathComponent(".build/plugins/Swift-DocC/outputs/IWAE.doccarchive/data/documentation")
        let landing = archive.appendingPathComponent("iwae.json")
        guard FileManager.default.fileExists(atPath: landing.path) else {
            throw XCTSkip("no documentation archive: run `swift package generate-documentation --target IWAE --target IWAECore --target IWAEData --target IWAELinearAlgebra --enable-experimental-combined-documentation` first (the test command does)")
        }
        let page = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: landing)) as? [String: Any])
        let sections = try XCTUnwrap(page["topicSections"] as? [[String: Any]])
        let curated = Set(sections.flatMap { ($0["identifiers"] as? [String]) ?? [] }.map { $0.lowercased() })
        for (module, type) in [("iwaecore", "Trainer"), ("iwaecore", "TrainingOptions"), ("iwaecore", "VariationalAutoencoder"),
                               ("iwaecore", "ModelConfiguration"), ("iwaecore", "Objective"), ("iwaecore", "ModelWorkers"),
                               ("iwaecore", "LogLikelihoodEstimate"), ("iwaecore", "AISSettings"), ("iwaedata", "DataSource"),
                               ("iwaedata", "ImageSet"), ("iwaedata", "DataTable"), ("iwaedata", "TableSource"),
                               ("iwae", "Checkpoint"), ("iwae", "TrainingRun")] {
            let path = "\(module)/\(type.lowercased())"
            XCTAssertTrue(FileManager.default.fileExists(atPath: archive.appendingPathComponent(path + ".json").path), "no page for \(type)")
            XCTAssertTrue(curated.contains { $0.hasSuffix("/documentation/" + path) }, "the landing page does not curate \(type)")
        }
        // Every public type and function (PublicAPI.txt's top-level names) is curated.
        let listed = try String(contentsOf: ExamplesTests.repository.appendingPathComponent("Tests/IWAETests/PublicAPI.txt"), encoding: .utf8)
        let topLevel = Set(listed.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ", maxSplits: 2)
            guard fields.count >= 2 else { return nil }
            let path = String(fields[1].dropLast())   // "Name:" or "Name.member:" or "function(labels:):"
            let name = path.hasSuffix(")") && !path.contains(".") ? path : String(path.split(separator: ".")[0])
            return "\(fields[0].lowercased())/\(name.lowercased())"
        })
        XCTAssertGreaterThan(topLevel.count, 50)
        for symbol in topLevel.sorted() {
            XCTAssertTrue(curated.contains { $0.hasSuffix("/documentation/" + symbol) || $0.contains("/documentation/" + symbol + "-") },
                          "the landing page does not curate \(symbol)")
        }
    }
}
