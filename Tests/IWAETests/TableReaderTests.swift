import Foundation
@testable import IWAE
import XCTest

/// The readers of users' tables against files written by hand: every value
/// read back equals the value written (the oracle is the writer's input).
final class TableReaderTests: XCTestCase {
    /// 3 rows × 4 features that every element type holds exactly.
    let values: [Double] = (0..<12).map { Double(($0 * 5) % 11) }

    func read(_ table: RawTable) -> [Double] {
        var out = [Double](repeating: .nan, count: table.rows * table.columns)
        out.withUnsafeMutableBufferPointer { p in
            for r in 0..<table.rows { table.read(row: r, into: p.baseAddress! + r * table.columns) }
        }
        return out
    }

    func testNPYEveryDtypeByteOrderAndLayout() throws {
        let directory = temporaryDirectory(self)
        for code in ["b1", "u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8"] {
            let expected = code == "b1" ? values.map { $0 != 0 ? 1 : 0 } : values
            for order in code.hasSuffix("1") ? ["|", "<", ">"] : ["<", ">", "="] {
                for fortran in [false, true] {
                    for version: UInt8 in [1, 2] {
                        let path = directory + "/a.npy"
                        try write(npyBytes(descr: order + code, shape: [3, 4], fortran: fortran, values: expected, version: version), to: path)
                        let table = try RawTable(contentsOf: path)
                        XCTAssertEqual(table.rows, 3)
                        XCTAssertEqual(table.columns, 4)
                        XCTAssertEqual(read(table), expected, "\(order)\(code) fortran \(fortran) v\(version)")
                    }
                }
            }
        }
    }

    /// N-dimensional arrays are flattened per row in C order, whatever the
    /// layout; 1-D arrays are one feature; 3-D arrays are images.
    func testNPYShapes() throws {
        let directory = temporaryDirectory(self), path = directory + "/a.npy"
        let cube = (0..<24).map(Double.init)
        for fortran in [false, true] {
            try write(npyBytes(descr: "<f8", shape: [2, 3, 4], fortran: fortran, values: cube), to: path)
            let table = try RawTable(contentsOf: path)
            XCTAssertEqual(table.rows, 2)
            XCTAssertEqual(table.columns, 12)
            XCTAssertEqual(read(table), cube, "fortran \(fortran)")
            XCTAssertEqual(table.imageShape?.height, 3)
            XCTAssertEqual(table.imageShape?.width, 4)
            // Column selection picks features of the flattened row.
            XCTAssertEqual(read(table.selecting(columns: [11, 0])), [11, 0, 23, 12])
        }
        try write(npyBytes(descr: "<i4", shape: [5], values: [1, 2, 3, 4, 5]), to: path)
        let line = try RawTable(contentsOf: path)
        XCTAssertEqual(line.columns, 1)
        XCTAssertEqual(read(line), [1, 2, 3, 4, 5])
        // Our own writer reads back.
        try write(NPY.encode([Float](arrayLiteral: 1.5, -2, 3, 4), shape: [2, 2]), to: path)
        XCTAssertEqual(read(try RawTable(contentsOf: path)), [1.5, -2, 3, 4])
    }

    func testHalfPrecisionSpecialValues() {
        XCTAssertEqual(Float(halfBits: 0x3c00), 1)
        XCTAssertEqual(Float(halfBits: 0xc000), -2)
        XCTAssertEqual(Float(halfBits: 0x0001), 0x1p-24)          // the least subnormal
        XCTAssertEqual(Float(halfBits: 0x7bff), 65504)            // the largest normal
        XCTAssertEqual(Float(halfBits: 0x7c00), .infinity)
        XCTAssertTrue(Float(halfBits: 0x7e00).isNaN)
    }

    /// `.npz` as numpy writes it: stored and deflated members with zip64
    /// local fields; arrays named with or without `.npy`.
    func testNPZStoredAndDeflated() throws {
        let directory = temporaryDirectory(self), path = directory + "/a.npz"
        let train = npyBytes(descr: "<f4", shape: [3, 4], values: values)
        let test = npyBytes(descr: "|u1", shape: [2, 4], values: Array(values.prefix(8)))
        for deflate in [false, true] {
            try write(try zipBytes([("train.npy", train, deflate), ("test.npy", test, !deflate)]), to: path)
            XCTAssertEqual(read(try RawTable(contentsOf: path, key: "train")), values)
            XCTAssertEqual(read(try RawTable(contentsOf: path, key: "test.npy")), Array(values.prefix(8)))
            XCTAssertThrowsError(try RawTable(contentsOf: path)) { XCTAssertTrue("\($0)".contains("2 arrays (train, test)"), "\($0)") }
            XCTAssertThrowsError(try RawTable(contentsOf: path, key: "valid")) { XCTAssertTrue("\($0)".contains("no array 'valid'"), "\($0)") }
        }
        try write(try zipBytes([("x.npy", train, true)]), to: path)
        XCTAssertEqual(read(try RawTable(contentsOf: path)), values, "the only array needs no key")
    }

    func testCSVAndTSV() throws {
        let directory = temporaryDirectory(self)
        let csv = directory + "/a.csv"
        try write(Array("# a comment\r\nid,\"name\",age,income\r\n\r\n1,\"Smith, J\",34,5.5e3\r\n2,Lee,  41 ,-12\r\n# another\r\n3,\"O\"\"Neil\",29,0\r\n".utf8), to: csv)
        let byName = try RawTable(contentsOf: csv, columns: ColumnSelection("income,age"))
        XCTAssertEqual(byName.columnNames ?? [], ["income", "age"])
        XCTAssertEqual(read(byName), [5500, 34, -12, 41, 0, 29])
        XCTAssertEqual(read(try RawTable(contentsOf: csv, columns: ColumnSelection("0,2-3"))), [1, 34, 5500, 2, 41, -12, 3, 29, 0])
        XCTAssertThrowsError(try RawTable(contentsOf: csv)) {   // the names column is not numbers
            XCTAssertEqual("\($0)", "\(csv): line 4, column 1 ('name'): 'Smith, J' is not a number")
        }
        let tsv = directory + "/b.tsv"
        try write(Array("1\t2.5\n3\t-4\n".utf8), to: tsv)
        let plain = try RawTable(contentsOf: tsv)
        XCTAssertNil(plain.columnNames)
        XCTAssertEqual(read(plain), [1, 2.5, 3, -4])
        XCTAssertThrowsError(try RawTable(contentsOf: tsv, columns: ColumnSelection("age"))) { XCTAssertTrue("\($0)".contains("no header")) }
        XCTAssertThrowsError(try RawTable(contentsOf: tsv, columns: ColumnSelection("0,0"))) { XCTAssertTrue("\($0)".contains("twice")) }
        XCTAssertThrowsError(try RawTable(contentsOf: tsv, columns: ColumnSelection("2"))) { XCTAssertTrue("\($0)".contains("has 2")) }
        XCTAssertNil(ColumnSelection("1,,2"))
        XCTAssertNil(ColumnSelection("5-2"))
    }

    func testSafetensorsTensors() throws {
        let directory = temporaryDirectory(self), path = directory + "/a.safetensors"
        let bf16 = values.map { UInt16(Float($0).bitPattern >> 16) }
        let file = SafetensorsFile(metadata: ["note": "x"], entries: [
            SafetensorsEntry(name: "rows", dtype: "BF16", shape: [3, 4], bytes: bf16.withUnsafeBytes { Array($0) }),
            SafetensorsEntry(name: "labels", dtype: "I64", shape: [3], bytes: [Int64](arrayLiteral: 7, -1, 2).withUnsafeBytes { Array($0) }),
            SafetensorsEntry(name: "u8", dtype: "U8", shape: [2, 2], bytes: [0, 255, 1, 9]),
        ])
        try write(file.encoded(), to: path)
        XCTAssertEqual(read(try RawTable(contentsOf: path, key: "rows")), values)
        XCTAssertEqual(read(try RawTable(contentsOf: path, key: "labels")), [7, -1, 2])
        XCTAssertEqual(read(try RawTable(contentsOf: path, key: "u8")), [0, 255, 1, 9])
        XCTAssertThrowsError(try RawTable(contentsOf: path)) { XCTAssertTrue("\($0)".contains("3 tensors"), "\($0)") }
    }

    /// The kind decided from the values, and the encodings against naive
    /// formulas in Double: y = v/255, y = (v − mean)/sd (population sd).
    func testKindsAndEncodings() throws {
        let directory = temporaryDirectory(self), path = directory + "/a.npy"
        func table(_ descr: String, _ v: [Double], _ shape: [Int] = [3, 4], kind: TableKind? = nil) throws -> DataTable {
            try write(npyBytes(descr: descr, shape: shape, values: v), to: path)
            return try DataTable(contentsOf: path, kind: kind)
        }
        func rows(_ t: DataTable) -> [Float] {
            var out = [Float](repeating: .nan, count: t.count * t.dimension)
            out.withUnsafeMutableBufferPointer { t.write(rows: 0..<t.count, into: $0.baseAddress!) }
            return out
        }
        let binary = values.map { $0 > 4 ? 1.0 : 0 }
        XCTAssertEqual(try table("<f8", binary).encoding, .values)
        XCTAssertEqual(try TableStatistics(table("<i8", binary).raw).kind(of: .int64), .binary)
        let bytes = try table("|u1", values.map { $0 * 20 })
        XCTAssertEqual(bytes.encoding, .intensity(scale: 255))
        XCTAssertEqual(rows(bytes), values.map { Float($0 * 20) / 255 })
        XCTAssertEqual(try table("<f4", values.map { $0 / 10 }).encoding, .values, "floats in [0, 1] are intensities as they are")
        let real = try table("<f8", values.map { $0 * 3 - 7 })
        guard case .standardized(let mean, let scale) = real.encoding else { return XCTFail("\(real.encoding)") }
        for f in 0..<4 {
            let column = (0..<3).map { values[$0 * 4 + f] * 3 - 7 }
            let m = column.reduce(0, +) / 3
            let sd = (column.map { ($0 - m) * ($0 - m) }.reduce(0, +) / 3).squareRoot()
            XCTAssertEqual(mean[f], m, accuracy: 1e-12)
            XCTAssertEqual(scale[f], sd, accuracy: 1e-12)
        }
        XCTAssertEqual(real.encoding.logJacobian, -scale.map { Foundation.log($0) }.reduce(0, +), accuracy: 1e-12)
        XCTAssertEqual(rows(real), (0..<12).map { Float((values[$0] * 3 - 7 - mean[$0 % 4]) / scale[$0 % 4]) })
        // Intensities may be asked to be continuous; non-binary values may not be binary.
        guard case .standardized = try table("|u1", values.map { $0 * 20 }, kind: .continuous).encoding else { return XCTFail() }
        XCTAssertThrowsError(try table("<f8", values, kind: .binary)) { XCTAssertTrue("\($0)".contains("every value to be 0 or 1"), "\($0)") }
        XCTAssertThrowsError(try table("<f8", values, kind: .intensity)) { XCTAssertTrue("\($0)".contains("must lie in [0, 1]"), "\($0)") }
        // A constant feature is refused for a Gaussian, naming it.
        var constant = values
        for r in 0..<3 { constant[r * 4 + 2] = 5 }
        XCTAssertThrowsError(try table("<f8", constant)) { XCTAssertTrue("\($0)".contains("column 2 = 5.0"), "\($0)") }
    }

    /// A held-out fraction: at least one row each side, disjoint, covering,
    /// the same for the same seed.
    func testHeldOutSplit() throws {
        let (train, test) = try TableSource.heldOut(rows: 100, fraction: 0.25, seed: 3)
        XCTAssertEqual(test.count, 25)
        XCTAssertEqual(Set(train).union(test), Set(0..<100))
        XCTAssertTrue(Set(train).isDisjoint(with: test))
        XCTAssertEqual(train, train.sorted())
        XCTAssertEqual(try TableSource.heldOut(rows: 100, fraction: 0.25, seed: 3).test, test)
        XCTAssertNotEqual(try TableSource.heldOut(rows: 100, fraction: 0.25, seed: 4).test, test)
        XCTAssertEqual(try TableSource.heldOut(rows: 2, fraction: 0.01, seed: 1).test.count, 1)
        XCTAssertThrowsError(try TableSource.heldOut(rows: 1, fraction: 0.5, seed: 1))
    }

    /// A table in memory is `TrainingExamples`: a `Trainer` trains on it,
    /// and it gives the bits of the same values as an `ImageSet`.
    func testArrayTableTrainsLikeImages() throws {
        let rng = Xoshiro256(seed: 5)
        let pixels = (0..<(60 * 16)).map { _ in Float(rng.next() % 256) / 255 }
        let images = ImageSet(count: 60, width: 4, height: 4, pixels: pixels, labels: [UInt8](repeating: 0, count: 60))
        let table = try DataTable(values: pixels, rows: 60, columns: 16)
        var results = [[Float]]()
        for examples in [Examples.images(images), .table(table)] {
            let model = VariationalAutoencoder<Float>(ModelConfiguration(dataDimension: 16, latentDimension: 2, encoderHidden: [6], decoderHidden: [6]), seed: 1)
            let trainer = try Trainer(model: model, options: TrainingOptions(objective: Objective(.iwae, samplesPerExample: 3), epochs: 2, batchSize: 10, workers: 2),
                                      validation: nil)
            try trainer.train(examples)
            results.append(model.store.values.array)
        }
        XCTAssertEqual(results[0], results[1])
    }
    /// The repeated-key scan against cases whose answer is known: a key
    /// repeated in one object is found (after its escapes are decoded), the
    /// same key in different objects, in arrays or inside string values is
    /// not, and a document of 10⁵ distinct keys is scanned without finding one.
    func testFirstDuplicateKeyFindsKeysRepeatedInOneObject() {
        let cases: [(String, String?)] = [
            (#"{"a": 1, "b": 2}"#, nil),
            (#"{"a": 1, "a": 2}"#, "a"),
            (#"{"a": 1, "\u0061": 2}"#, "a"),
            (#"{"é": 1, "\u00e9": 2}"#, "é"),
            (#"{"😀": 1, "\ud83d\ude00": 2}"#, "😀"),
            (#"{"a": {"a": {"a": 1}}, "b": [{"a": 1}, {"a": 2}]}"#, nil),
            (#"{"a": "\"a\": 1, \"a\": 2", "b": ["a", "a"]}"#, nil),
            (#"{"x": {"y": 1, "z": {"q": 1}, "y": 2}}"#, "y"),
            (#"{"a\"b": 1, "a\"b": 2}"#, "a\"b"),
            (#"{"generator": {"frobnicate": 1}, "kind": "idx", "generator": {"seed": 1}}"#, "generator"),
            (#"[{"a": 1}, {"b": 1, "b": 2}]"#, "b"),
            (#"{"a": [1, {"c": 1}, 2], "c": 3}"#, nil),
            (#"{}"#, nil),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(firstDuplicateKey(in: Array(text.utf8)), expected, text)
        }
        let many = "{" + (0..<100_000).map { "\"k\($0)\": \($0)" }.joined(separator: ",") + "}"
        XCTAssertNil(firstDuplicateKey(in: Array(many.utf8)))
        XCTAssertEqual(firstDuplicateKey(in: Array((many.dropLast() + ", \"k99999\": 0}").utf8)), "k99999")
    }
}
