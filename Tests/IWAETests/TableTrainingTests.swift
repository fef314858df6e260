import Foundation
import IWAE
import XCTest

/// Users' tables through the command line: the same bits as the image path,
/// `score` against `evaluate`, log-likelihoods in the data's own units
/// against a closed form, and bad input refused in one line.
final class TableTrainingTests: XCTestCase {
    /// The IDX fixture exported as tables: uint8 rows (N × 64) and images
    /// (N × 8 × 8), as .npy and inside an .npz.
    func exportFixture(_ data: String, to directory: String) throws {
        let train = try idxPixels(data, "train-images-idx3-ubyte"), test = try idxPixels(data, "t10k-images-idx3-ubyte")
        func npy(_ p: (rows: Int, side: Int, values: [UInt8]), _ shape: [Int]) -> [UInt8] { NPY.encode(p.values, shape: shape) }
        try write(npy(train, [train.rows, 64]), to: directory + "/train.npy")
        try write(npy(test, [test.rows, 64]), to: directory + "/test.npy")
        try write(npy(train, [train.rows, 8, 8]), to: directory + "/train3d.npy")
        try write(try zipBytes([("train.npy", npy(train, [train.rows, 64]), false), ("test.npy", npy(test, [test.rows, 64]), true)]),
                  to: directory + "/data.npz")
    }

    func metadata(_ directory: String) throws -> [String: String] {
        let path = directory + "/model.safetensors"
        return try SafetensorsFile(parsing: [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), name: path).metadata
    }

    func json(_ text: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
    }

    /// The number `key` of a flat JSON line, read by `Double(_:)`: Foundation's
    /// JSONSerialization on Linux rounds some doubles in the last bit.
    func number(_ key: String, in line: Substring) -> Double? {
        guard let range = line.range(of: "\"\(key)\": ") else { return nil }
        let rest = line[range.upperBound...]
        return Double(rest.prefix { $0 != "," && $0 != "}" })
    }

    /// uint8 rows read as v/255 and binarized train to the bytes of the IDX
    /// images, from .npy, N-dimensional .npy and .npz alike, and evaluate
    /// to the same numbers.
    func testTablesTrainToTheBitsOfTheImagePath() throws {
        let (data, root) = try smallTrainingFixture(self)
        try exportFixture(data, to: root)
        let reference = root + "/idx"
        XCTAssertEqual(try runIWAE(smallTrainArguments(data: data, out: reference, epochs: 2)).status, 0)
        let expected = try trainedBytes(reference)
        let referenceEvaluation = try runIWAE(["evaluate", reference, "--k", "20", "--json"]).stdout
        for (name, arguments) in [("npy", ["--test-data", root + "/test.npy"]), ("npy3d", ["--test-data", root + "/test.npy"]),
                                  ("npz", ["--data-key", "train", "--test-data", root + "/data.npz", "--test-key", "test"])] {
            let out = root + "/" + name
            let file = name == "npz" ? root + "/data.npz" : name == "npy3d" ? root + "/train3d.npy" : root + "/train.npy"
            let train = try runIWAE(smallTrainArguments(data: file, out: out, epochs: 2) + arguments)
            XCTAssertEqual(train.status, 0, train.stderr)
            XCTAssertTrue(train.stdout.contains("intensities (v/255, binarized as MNIST); Bernoulli decoder"), train.stdout)
            XCTAssertEqual(try trainedBytes(out), expected, name)
            XCTAssertEqual(try metadata(out)["state"], try metadata(reference)["state"], name)
            XCTAssertEqual(try metadata(out)["image"], name == "npy3d" ? try metadata(reference)["image"] : nil, name)
            let evaluation = try runIWAE(["evaluate", out, "--k", "20", "--json"]).stdout
            XCTAssertEqual(number("nll", in: evaluation[...]), number("nll", in: referenceEvaluation[...]), name)
            XCTAssertEqual(number("log_jacobian", in: evaluation[...]), 0)
        }
        // Resuming a table run reads the recorded table: bit for bit.
        let partial = root + "/partial", straight = root + "/npy"
        XCTAssertEqual(try runIWAE(smallTrainArguments(data: root + "/train.npy", out: partial, epochs: 1) + ["--test-data", root + "/test.npy"]).status, 0)
        let resumed = try runIWAE(["resume", partial, "--epochs", "2"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try trainedBytes(partial), try trainedBytes(straight))
        // `sample` draws a grid from a run on image-shaped rows, and refuses flat rows in one line.
        XCTAssertEqual(try runIWAE(["sample", root + "/npy3d", "--data", root + "/train3d.npy", "--out", root + "/grid.png"]).status, 0)
        try assertOneLineError(["sample", straight, "--out", root + "/flat.png"], mentioning: "are not images")
    }

    /// `score` writes, row for row, the bits of `evaluate --per-example` on
    /// the same rows, as .csv, .jsonl and .npy, for a table run and for a
    /// run on IDX images scoring the same images as a table.
    func testScoreMatchesEvaluate() throws {
        let (data, root) = try smallTrainingFixture(self)
        try exportFixture(data, to: root)
        for (run, arguments) in [(root + "/table", smallTrainArguments(data: root + "/train.npy", out: root + "/table") + ["--test-data", root + "/test.npy"]),
                                 (root + "/idx", smallTrainArguments(data: data, out: root + "/idx"))] {
            XCTAssertEqual(try runIWAE(arguments).status, 0)
            let perExample = root + "/rows.jsonl"
            XCTAssertEqual(try runIWAE(["evaluate", run, "--k", "30", "--per-example", perExample, "--threads", "2"]).status, 0)
            let rows = try String(contentsOfFile: perExample, encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(rows.count, 40)
            let bounds = rows.map { number("bound", in: $0)! }, errors = rows.map { number("standard_error", in: $0)! }
            XCTAssertTrue(errors.allSatisfy { $0 > 0 && $0 < 5 }, "\(errors)")
            for format in ["csv", "jsonl", "npy"] {
                let out = root + "/scores." + format
                let score = try runIWAE(["score", run, "--data", root + "/test.npy", "--k", "30", "--out", out, "--threads", "2"])
                XCTAssertEqual(score.status, 0, score.stderr)
                let values: [(Double, Double)]
                switch format {
                case "csv":
                    let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
                    XCTAssertEqual(lines.first, "row,log_likelihood,standard_error")
                    values = lines.dropFirst().map { line in
                        let cells = line.split(separator: ",")
                        return (Double(cells[1])!, Double(cells[2])!)
                    }
                case "jsonl":
                    values = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map {
                        (number("log_likelihood", in: $0)!, number("standard_error", in: $0)!)
                    }
                default:
                    let table = try RawTable(contentsOf: out)
                    XCTAssertEqual(table.columns, 2)
                    values = (0..<table.rows).map { (table.value(row: $0, column: 0), table.value(row: $0, column: 1)) }
                }
                XCTAssertEqual(values.map(\.0), bounds, "\(run) \(format)")
                XCTAssertEqual(values.map(\.1), errors, "\(run) \(format)")
            }
        }
        // Bad output paths are refused before any work, and nothing is left behind.
        try assertOneLineError(["score", root + "/table", "--data", root + "/test.npy", "--out", root + "/scores.txt"], mentioning: ".csv, .jsonl or .npy")
        try assertOneLineError(["score", root + "/table", "--data", root + "/test.npy", "--out", root + "/none/s.csv"], mentioning: "--out")
        try write(NPY.encode([Float](repeating: 0.5, count: 10), shape: [2, 5]), to: root + "/narrow.npy")
        try assertOneLineError(["score", root + "/table", "--data", root + "/narrow.npy", "--out", root + "/s2.csv"], mentioning: "has 5 features but the training data has 64")
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/s2.csv"))
    }

    /// A CSV is scored a chunk at a time (838 rows, then 62, at k = 5000), parsed as it
    /// goes, and still gives the bits of `evaluate --per-example`, which
    /// reads the whole file; the same for the rows as a `.npy`.
    func testScoreStreamsTextInChunks() throws {
        let root = temporaryDirectory(self)
        let rng = Xoshiro256(seed: 9)
        func rows(_ n: Int) -> [[Double]] {
            (0..<n).map { _ in
                let z = rng.uniform(Double.self) * 4 - 2
                return [z * 3 + 10, -z + rng.uniform(Double.self), z * z, 100 + rng.uniform(Double.self) * 5]
            }
        }
        func csv(_ rows: [[Double]]) -> [UInt8] {
            Array(("a,b,c,d\n" + rows.map { $0.map { "\($0)" }.joined(separator: ",") }.joined(separator: "\n") + "\n").utf8)
        }
        let test = rows(900)
        try write(csv(rows(600)), to: root + "/train.csv")
        try write(csv(test), to: root + "/test.csv")
        try write(NPY.encode(test.flatMap { $0 }, shape: [900, 4]), to: root + "/test.npy")
        let run = root + "/run"
        let train = try runIWAE(["train", "--data", root + "/train.csv", "--test-data", root + "/test.csv", "--hidden", "8",
                                 "--latent", "2", "--epochs", "2", "--batch", "50", "--k", "2", "--out", run])
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertEqual(try runIWAE(["evaluate", run, "--k", "5000", "--per-example", root + "/rows.jsonl"]).status, 0)
        let expected = try String(contentsOfFile: root + "/rows.jsonl", encoding: .utf8).split(separator: "\n").map { number("bound", in: $0)! }
        XCTAssertEqual(expected.count, 900)
        for data in ["test.csv", "test.npy"] {
            let out = root + "/scores-\(data).csv"
            let score = try runIWAE(["score", run, "--data", root + "/" + data, "--k", "5000", "--out", out])
            XCTAssertEqual(score.status, 0, score.stderr)
            let values = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").dropFirst().map { Double($0.split(separator: ",")[1])! }
            XCTAssertEqual(values, expected, data)
        }
    }

    /// Real-valued features shifted and scaled by known constants: the NLL
    /// is reported in the data's own units. A linear-Gaussian model's exact
    /// log-density of the raw rows, computed here in Double from its
    /// parameters and the recorded standardization (x = m + s ⊙ y, y ~
    /// N(V λ₁ + c, V diag(λ₂) Vᵀ + diag(σ_d²))), equals `exact_nll`, and
    /// L_5000 matches it within its Monte Carlo error.
    func testContinuousTableInTheDataUnits() throws {
        let root = temporaryDirectory(self)
        let generator = LinearGaussianData(dimension: 6, latentDimension: 2, noise: 0.5, seed: 3)
        let a: [Double] = [0.01, 3, 100, 0.5, 7, 1000], b: [Double] = [5, -100, 1e4, 0, 3, -2]
        func export(_ set: ImageSet, _ path: String) throws {
            let v = (0..<set.pixels.count).map { Double(set.pixels[$0]) * a[$0 % 6] + b[$0 % 6] }
            try write(NPY.encode(v, shape: [set.count, 6]), to: path)
        }
        try export(generator.examples(3000, sampleSeed: 1), root + "/train.npy")
        try export(generator.examples(300, sampleSeed: 2), root + "/test.npy")
        let out = root + "/run"
        let train = try runIWAE(["train", "--data", root + "/train.npy", "--test-data", root + "/test.npy", "--encoder", "full",
                                 "--prior", "learned", "--decoder-hidden", "none", "--encoder-hidden", "none", "--latent", "2",
                                 "--objective", "elbo", "--epochs", "15", "--batch", "50", "--learning-rate", "0.003", "--out", out])
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertTrue(train.stdout.contains("continuous (standardized per feature"), train.stdout)
        XCTAssertTrue(train.stdout.contains("Gaussian decoder, a learned variance per feature"), train.stdout)
        let evaluate = try runIWAE(["evaluate", out, "--k", "5000", "--json"])
        XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
        let result = try json(evaluate.stdout)
        let nll = result["nll"] as! Double, exact = result["exact_nll"] as! Double, jacobian = result["log_jacobian"] as! Double

        // The oracle: the model's marginal, pushed into the data's units.
        let checkpoint = try Checkpoint.load(from: out)
        guard case .table(let source)? = checkpoint.data, case .standardized(let m, let s)? = source.encoding else {
            return XCTFail("\(String(describing: checkpoint.data))")
        }
        XCTAssertEqual(jacobian, -s.map { Foundation.log($0) }.reduce(0, +), accuracy: 1e-9)
        let store = checkpoint.model.store
        func values(_ name: String) -> [Double] {
            let slot = store.layout.slot(named: name)!
            return (0..<slot.count).map { Double(store.value(slot)[$0]) }
        }
        let v = values("decoder.0.weight"), c = values("decoder.0.bias")
        let lambda1 = values("prior.mean"), lambda2 = values("prior.log_variance").map { Foundation.exp($0) }
        let sigma2 = values("decoder.log_variance").map { Foundation.exp($0) }
        XCTAssertEqual(sigma2.count, 6, "a variance per feature")
        var mean = [Double](repeating: 0, count: 6), cov = [Double](repeating: 0, count: 36)
        for i in 0..<6 {
            mean[i] = m[i] + s[i] * (c[i] + v[i * 2] * lambda1[0] + v[i * 2 + 1] * lambda1[1])
            for j in 0..<6 {
                let yCov = v[i * 2] * lambda2[0] * v[j * 2] + v[i * 2 + 1] * lambda2[1] * v[j * 2 + 1] + (i == j ? sigma2[i] : 0)
                cov[i * 6 + j] = s[i] * yCov * s[j]
            }
        }
        // Naive Cholesky, forward solve, log N.
        var l = [Double](repeating: 0, count: 36)
        for i in 0..<6 { for j in 0...i {
            var sum = cov[i * 6 + j]
            for k in 0..<j { sum -= l[i * 6 + k] * l[j * 6 + k] }
            l[i * 6 + j] = i == j ? sum.squareRoot() : sum / l[j * 6 + j]
        } }
        let logDet = (0..<6).map { 2 * Foundation.log(l[$0 * 7]) }.reduce(0, +)
        let test = try RawTable(contentsOf: root + "/test.npy")
        var total = 0.0
        for r in 0..<test.rows {
            var u = [Double](repeating: 0, count: 6)
            for i in 0..<6 {
                var sum = test.value(row: r, column: i) - mean[i]
                for k in 0..<i { sum -= l[i * 6 + k] * u[k] }
                u[i] = sum / l[i * 7]
            }
            total += -0.5 * (u.map { $0 * $0 }.reduce(0, +) + logDet + 6 * Foundation.log(2 * Double.pi))
        }
        XCTAssertEqual(exact, -total / Double(test.rows), accuracy: 1e-4 * abs(exact))
        XCTAssertEqual(nll, exact, accuracy: 0.02, "L_5000 against the exact log-likelihood, in the data's units")
        // The units matter: without the Jacobian the NLL would be off by Σ log s (here about \(−jacobian) nats).
        XCTAssertGreaterThan(abs(jacobian), 5)
    }

    /// Each kind of bad table is one line naming the file (and the row and
    /// column where that applies), a non-zero exit, and no run directory.
    func testBadTablesAreOneLineErrors() throws {
        let root = temporaryDirectory(self)
        let good = root + "/good.npy"
        try write(npyBytes(descr: "<f8", shape: [40, 3], values: (0..<120).map { Double($0 % 7) * 1.5 + Double($0 / 3) }), to: good)
        func npy(_ name: String, _ bytes: [UInt8]) throws -> String {
            let path = root + "/" + name
            try write(bytes, to: path)
            return path
        }
        func text(_ name: String, _ content: String) throws -> String { try npy(name, Array(content.utf8)) }
        let valid = npyBytes(descr: "<f4", shape: [4, 2], values: [1, 2, 3, 4, 5, 6, 7, 8])
        var nan = npyBytes(descr: "<f8", shape: [3, 2], values: [1, 2, 3, 4, 5, 6])
        nan.replaceSubrange(nan.count - 8..<nan.count, with: npyElementBytes(.nan, "f8", bigEndian: false))
        var constant = [Double]()
        for r in 0..<10 { constant += [Double(r), 4, Double(r * r)] }
        let cases: [(String, [String], String)] = [
            ("bad magic", [try text("a.npy", "not numpy at all")], "no \\x93NUMPY magic"),
            ("pickle", [try npy("p.npy", [0x80, 0x04, 0x95] + [UInt8](repeating: 0, count: 20))], "pickle"),
            ("malformed header", [try npy("h.npy", valid.replacing(Array("(4, 2)".utf8), with: Array("(4, 2]".utf8)))], "malformed .npy header"),
            ("shape against size", [try npy("s.npy", Array(valid.dropLast(4)))], "needs 32 bytes but the file holds 28"),
            ("complex", [try npy("c.npy", npyBytes(descr: "<f8", shape: [1, 1], values: [0]).map { $0 }.replacing(Array("<f8".utf8), with: Array("<c8".utf8)))], "complex numbers"),
            ("object", [try npy("o.npy", npyBytes(descr: "<f8", shape: [1, 1], values: [0]).replacing(Array("'<f8'".utf8), with: Array("'|O' ".utf8)))], "object arrays"),
            ("structured", [try npy("st.npy", npyBytes(descr: "<f8", shape: [1, 1], values: [0]).replacing(Array("'<f8'".utf8), with: Array("[('a', '<f8')]".utf8)))], "structured arrays"),
            ("zero rows", [try npy("z.npy", npyBytes(descr: "<f8", shape: [0, 3], values: []))], "no rows"),
            ("zero columns", [try npy("zc.npy", npyBytes(descr: "<f8", shape: [3, 0], values: []))], "no columns"),
            ("empty file", [try text("e.npy", "")], "empty"),
            ("empty csv", [try text("e.csv", "")], "empty"),
            ("header only", [try text("h.csv", "a,b\n")], "a header and no rows"),
            ("ragged", [try text("r.csv", "a,b\n1,2\n3\n")], "line 3 has 1 cells, not 2"),
            ("text cell", [try text("t.csv", "a,b\n1,2\n3,x\n")], "line 3, column 1 ('b'): 'x' is not a number"),
            ("missing cell", [try text("m.csv", "1,2\n3,\n")], "line 2, column 1: an empty cell"),
            ("nan cell", [try text("n.csv", "1,2\n3,nan\n")], "line 2, column 1: nan (NaN and infinities"),
            ("inf cell", [try text("i.tsv", "1\t2\n-inf\t3\n")], "line 2, column 0: -inf"),
            ("nan in npy", [try npy("nan.npy", nan)], "row 2, column 1: nan"),
            ("constant column", [try npy("k.npy", NPY.encode(constant, shape: [10, 3]))], "column 1 = 4.0"),
            ("unknown extension", [try text("d.xlsx", "x")], "unknown kind of data file"),
            ("npz without key", [try npy("two.npz", try zipBytes([("a.npy", valid, false), ("b.npy", valid, false)]))], "say which with --data-key"),
            ("npz truncated", [try npy("cut.npz", Array(try zipBytes([("a.npy", valid, true)]).prefix(40)))], "not a zip archive"),
            ("key on npy", [good, "--data-key", "x"], "--data-key names an array of an .npz"),
            ("test width", [good, "--test-data", try npy("w.npy", valid)], "has 2 features but the training data has 3"),
            ("fraction", [good, "--test-fraction", "1.5"], "--test-fraction must be between 0 and 1"),
            ("fraction and file", [good, "--test-fraction", "0.1", "--test-data", good], "exclude each other"),
            ("binary kind", [good, "--data-kind", "binary"], "every value to be 0 or 1"),
            ("bernoulli on reals", [good, "--likelihood", "bernoulli"], "real-valued"),
            ("columns out of range", [good, "--columns", "0,5"], "names column 5 but the table has 3"),
            ("columns on images", ["fashion-mnist", "--columns", "1"], "are for a table"),
        ]
        for (name, data, fragment) in cases {
            let out = root + "/out-" + name.replacingOccurrences(of: " ", with: "-")
            try assertOneLineError(["train", "--data"] + data + ["--out", out, "--epochs", "1", "--hidden", "4", "--latent", "2"],
                                   mentioning: fragment, name)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(name): left \(out) behind")
        }
        // Evaluation and scoring of bad rows, and of a run trained without test rows.
        let run = root + "/run"
        let trained = try runIWAE(["train", "--data", good, "--out", run, "--epochs", "1", "--hidden", "4", "--latent", "2"])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        try assertOneLineError(["evaluate", run], mentioning: "without test rows")
        try assertOneLineError(["evaluate", run, "--data", root + "/nan.npy"], mentioning: "has 2 features but the training data has 3")
        try assertOneLineError(["score", run, "--data", root + "/t.csv", "--out", root + "/x.csv"], mentioning: "has 2 features but the training data has 3")
        try assertOneLineError(["score", run, "--data", try text("t3.csv", "a,b,c\n1,2,3\n4,x,6\n"), "--out", root + "/x.csv"],
                               mentioning: "line 3, column 1 ('b'): 'x' is not a number")
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/x.csv"))
        // A recorded file changed since training, with its shape kept, is refused: not read as other rows.
        let values = (0..<120).map { Double($0 % 7) * 1.5 + Double($0 / 3) }
        let data = root + "/data.npy", test = root + "/test.npy"
        try write(npyBytes(descr: "<f8", shape: [40, 3], values: values), to: data)
        try write(npyBytes(descr: "<f8", shape: [40, 3], values: values.reversed()), to: test)
        for (name, arguments) in [("fraction", ["--test-fraction", "0.25"]), ("file", ["--test-data", test])] {
            let out = root + "/recorded-" + name
            XCTAssertEqual(try runIWAE(["train", "--data", data, "--out", out, "--epochs", "1", "--hidden", "4", "--latent", "2"] + arguments).status, 0)
            XCTAssertEqual(try runIWAE(["evaluate", out, "--k", "2"]).status, 0)
        }
        var edited = values
        edited[60] += 1
        try write(npyBytes(descr: "<f8", shape: [40, 3], values: edited), to: data)
        try assertOneLineError(["evaluate", root + "/recorded-fraction"], mentioning: "data.npy has changed since the model was trained")
        try assertOneLineError(["resume", root + "/recorded-file", "--epochs", "2"], mentioning: "data.npy has changed since the model was trained")
        try write(npyBytes(descr: "<f8", shape: [40, 3], values: values), to: data)
        try write(npyBytes(descr: "<f8", shape: [40, 3], values: edited), to: test)
        try assertOneLineError(["evaluate", root + "/recorded-file"], mentioning: "test.npy has changed since the model was trained")
        XCTAssertEqual(try runIWAE(["evaluate", root + "/recorded-fraction", "--k", "2"]).status, 0, "the training file restored")
    }
}

extension Array where Element == UInt8 {
    /// The bytes with the first occurrence of `old` replaced by `new`, the
    /// header's length kept when both have the same length.
    func replacing(_ old: [UInt8], with new: [UInt8]) -> [UInt8] {
        guard let start = (0...(count - old.count)).first(where: { Array(self[$0..<$0 + old.count]) == old }) else { return self }
        var copy = self
        copy.replaceSubrange(start..<start + old.count, with: new)
        return copy
    }
}
