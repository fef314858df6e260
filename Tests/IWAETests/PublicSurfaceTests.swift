import Foundation
import IWAE
import XCTest

/// The library as its users meet it: the public declarations of the modules
/// `import IWAE` brings, read from the symbol graphs of the modules this very
/// test build compiled (`swift-symbolgraph-extract`, public symbols only).
final class PublicSurfaceTests: XCTestCase {
    static let modules = ["IWAE", "IWAECore", "IWAEData", "IWAELinearAlgebra"]

    /// Every public symbol of `modules`, as (module, name path, declaration).
    func publicDeclarations() throws -> [(module: String, path: String, declaration: String)] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let products = productsDirectory.resolvingSymlinksInPath()
        var scratch = products
        while !FileManager.default.fileExists(atPath: scratch.appendingPathComponent("checkouts").path), scratch.path != "/" {
            scratch.deleteLastPathComponent()
        }
        let swift = try runProcess("/usr/bin/env", ["which", "swift-symbolgraph-extract"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertFalse(swift.isEmpty, "swift-symbolgraph-extract is part of the toolchain")
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("iwae-symbols-\(getpid())")
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: output) }
        var declarations: [(String, String, String)] = []
        for module in Self.modules {
            let run = try runProcess(swift, [
                "-module-name", module, "-target", "x86_64-unknown-linux-gnu",
                "-I", products.appendingPathComponent("Modules").path,
                "-I", root.appendingPathComponent("CBLAS").path, "-I", root.appendingPathComponent("CDNNL").path,
                "-I", root.appendingPathComponent("CZlib").path,
                "-Xcc", "-fmodule-map-file=" + products.appendingPathComponent("CIWAEKernels.build/module.modulemap").path,
                "-Xcc", "-I/usr/include/x86_64-linux-gnu/openblas-pthread",
                "-Xcc", "-I" + scratch.appendingPathComponent("checkouts/swift-numerics/Sources/_NumericsShims/include").path,
                "-minimum-access-level", "public", "-output-dir", output.path,
            ])
            XCTAssertEqual(run.status, 0, "symbol graph of \(module): \(run.stderr)")
            let file = output.appendingPathComponent("\(module).symbols.json")
            let graph = try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as! [String: Any]
            for symbol in graph["symbols"] as! [[String: Any]] {
                guard let access = symbol["accessLevel"] as? String, access == "public" || access == "open" else { continue }
                let fragments = symbol["declarationFragments"] as? [[String: Any]] ?? []
                let declaration = fragments.compactMap { $0["spelling"] as? String }.joined()
                let path = (symbol["pathComponents"] as? [String] ?? []).joined(separator: ".")
                declarations.append((module, path, declaration))
            }
        }
        return declarations
    }

    /// No public declaration takes, returns or stores a raw pointer (issue:
    /// the library as its users meet it). The oracle that the extraction
    /// works: the symbols every user needs are there.
    func testNoPublicDeclarationMentionsAnUnsafePointer() throws {
        let declarations = try publicDeclarations()
        let paths = Set(declarations.map(\.path))
        for expected in ["VariationalAutoencoder", "Trainer", "Checkpoint", "iwaeBound(logWeights:)", "DataTable",
                         "DataTable.init(contentsOf:key:columns:kind:)", "TableEncoding.logJacobian", "TrainingExamples",
                         "NPY.encode(_:shape:)", "logSumExp(_:)",
                         "ModelWorkers.boundsAndGradient(_:objective:)", "TrainingOptions.defaults", "OutputInitialization.unchanged",
                         "VariationalAutoencoder.parameterCount", "Xoshiro256.uniform(_:)", "klDivergence(mean:covariance:priorMean:priorVariance:)"] {
            XCTAssertTrue(paths.contains(expected), "\(expected) is public")
        }
        XCTAssertGreaterThan(declarations.count, 300)
        let unsafe = declarations.filter { $0.declaration.contains("Unsafe") || $0.declaration.contains("OpaquePointer") }
        XCTAssertEqual(unsafe.map { "\($0.module): \($0.declaration)" }, [], "public declarations with raw pointers")
    }

    /// The public API, one line per declaration (`Module path: declaration`,
    /// sorted), is checked in as `PublicAPI.txt` beside this file, so that a
    /// change to the public surface is a visible diff in review (the habit of
    /// Kotlin's binary-compatibility validator and .NET's PublicAPI files).
    /// `IWAE_UPDATE_PUBLIC_API=1` rewrites the file from the code.
    func testThePublicAPIIsTheCheckedInList() throws {
        let lines = Set(try publicDeclarations().map { "\($0.module) \($0.path): \($0.declaration)" }).sorted()
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("PublicAPI.txt")
        if ProcessInfo.processInfo.environment["IWAE_UPDATE_PUBLIC_API"] == "1" {
            try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
            return
        }
        let listed = Set(try String(contentsOf: file, encoding: .utf8).split(separator: "\n").map(String.init))
        let added = Set(lines).subtracting(listed).sorted(), removed = listed.subtracting(lines).sorted()
        XCTAssertEqual(added, [], "public declarations not in PublicAPI.txt (review them, then IWAE_UPDATE_PUBLIC_API=1 swift test --filter PublicSurfaceTests)")
        XCTAssertEqual(removed, [], "PublicAPI.txt lists declarations that are no longer public")
    }

    /// What only the package's own targets, fuzzers and tests use is `package`, not public.
    func testPackageOnlyHelpersAreNotPublic() throws {
        let paths = Set(try publicDeclarations().map(\.path))
        for packageOnly in ["Checkpoint.resealed(_:)", "CheckedSize", "prepareOutputDirectory(_:)", "forEachChunk(count:cores:minimumPerCore:_:)",
                         "MatrixView.pointer", "Tensor.pointer", "BLASRoutines.gemm",
                         // The table readers' machinery: users hold a `DataTable`.
                         "RawTable", "DelimitedTextReader", "TableStatistics", "AtomicFile", "Noise", "NPY.header(_:shape:)",
                         "VariationalAutoencoder.evaluationRows(_:firstRow:)", "TableSource.heldOut(rows:fraction:seed:)",
                         // The tools' machinery: charts, PNG, files, fault injection, the run directory, MPI's rank group.
                         "LineChart", "RGBImage", "writeFileAtomically(_:to:)", "SHA256", "gunzip(_:name:limit:expectedSize:)",
                         "FaultInjection", "RunDirectory", "RankGroup", "SafetensorsFile", "NPY.table(_:count:name:)", "BLASLibrary", "measureHardwarePeak(threads:seconds:)",
                         // The model's insides: users hold the model, its workers and the step.
                         "LogWeights", "ParameterStore", "GaussianConditional", "MLP", "Linear", "PhaseProfiler", "VariationalAutoencoder.store",
                         "VariationalAutoencoder.backward(_:boundWeights:scale:objective:)", "TrainingState.order"] {
            XCTAssertFalse(paths.contains(packageOnly), "\(packageOnly) is package API")
        }
    }

    /// The array functions take Float as well as Double, and agree with each
    /// other (Float within its rounding).
    func testArrayFunctionsInBothPrecisions() {
        let logWeights = [-3.0, -1.0, -2.0, -4.0]
        let exact = Foundation.log((exp(-3.0) + exp(-1.0) + exp(-2.0) + exp(-4.0)) / 4)
        XCTAssertEqual(iwaeBound(logWeights: logWeights), exact, accuracy: 1e-14)
        XCTAssertEqual(Double(iwaeBound(logWeights: logWeights.map(Float.init))), exact, accuracy: 1e-6)
        XCTAssertEqual(Double(elboEstimate(logWeights: logWeights.map(Float.init))), -2.5, accuracy: 1e-6)
        XCTAssertEqual(logSumExp([Float(0), 0]), Float.log(2), accuracy: 1e-7)
        XCTAssertEqual(logSumExp([Double]()), -.infinity)
        let d = sigmoid([0.0, 2.0])
        XCTAssertEqual(d[0], 0.5)
        XCTAssertEqual(d[1], 1 / (1 + exp(-2.0)), accuracy: 1e-15)
        let s = sigmoid([Float(-30), 0, 30])
        XCTAssertEqual(s[1], 0.5)
        XCTAssertEqual(Double(s[0]), 1 / (1 + exp(30.0)), accuracy: 1e-15)
        XCTAssertEqual(Double(bernoulliLogLikelihood([Float(1), 0], logits: [2, -1])),
                       2 - Foundation.log1p(exp(2.0)) - Foundation.log1p(exp(-1.0)), accuracy: 1e-6)
        // Standard normals: the same stream as the engine's fill, and N(0, 1) by moments.
        let draws: [Double] = Xoshiro256(seed: 7).standardNormals(count: 20_001)
        let mean = draws.reduce(0, +) / Double(draws.count)
        let variance = draws.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(draws.count - 1)
        XCTAssertEqual(mean, 0, accuracy: 4 / Double(draws.count).squareRoot())
        XCTAssertEqual(variance, 1, accuracy: 0.05)
        let tensor = Tensor<Double>(shape: [20_001])
        Xoshiro256(seed: 7).fillStandardNormal(tensor)
        XCTAssertEqual(tensor.array, draws)
    }
}
