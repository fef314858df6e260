import Foundation
import IWAELinearAlgebra

/// A user's table as a data source, as `iwae train --data FILE` records it
/// in the checkpoint: the file (and array or tensor), the columns, where
/// the test rows come from (another file, or a seeded held-out fraction),
/// and, once decided from the training rows, the kind and the encoding, so
/// that `evaluate`, `score` and `resume` see the same rows in the same units.
public struct TableSource: Sendable, Equatable, Codable {
    public var file: String
    /// The array of an `.npz` or the tensor of a `.safetensors` file.
    package var key: String?
    package var columns: ColumnSelection?
    /// Test rows from another file (same columns)...
    package var testFile: String?
    package var testKey: String?
    /// ... or this fraction of `file`'s rows held out, chosen by `splitSeed`.
    package var testFraction: Double?
    package var splitSeed: UInt64
    /// What the values are: asked for (nil: decided from the data) and, once trained, decided.
    public var kind: TableKind?
    /// The encoding decided from the training rows (nil before training).
    public var encoding: TableEncoding?
    /// `file`'s row count when the model was trained (a check that it is still the same file).
    package var rows: Int?
    /// `file`'s and `testFile`'s fingerprints (`MappedFile.fingerprint`:
    /// size and sampled CRC-32) when the model was trained: a file changed
    /// since is refused instead of read as other rows.
    package var fingerprint: String?
    package var testFingerprint: String?

    public init(file: String, key: String? = nil, columns: ColumnSelection? = nil, testFile: String? = nil, testKey: String? = nil,
                testFraction: Double? = nil, splitSeed: UInt64 = 1, kind: TableKind? = nil) throws {
        self.file = file
        self.key = key
        self.columns = columns
        self.testFile = testFile
        self.testKey = testKey
        self.testFraction = testFraction
        self.splitSeed = splitSeed
        self.kind = kind
        try validate()
    }

    enum CodingKeys: String, CodingKey {
        case file, key, columns, testFile, testKey, testFraction, splitSeed, kind, encoding, rows, fingerprint, testFingerprint
    }

    public init(from decoder: Decoder) throws {
        try decoder.refuseUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        file = try c.decode(String.self, forKey: .file)
        key = try c.decodeIfPresent(String.self, forKey: .key)
        columns = try c.decodeIfPresent(ColumnSelection.self, forKey: .columns)
        testFile = try c.decodeIfPresent(String.self, forKey: .testFile)
        testKey = try c.decodeIfPresent(String.self, forKey: .testKey)
        testFraction = try c.decodeIfPresent(Double.self, forKey: .testFraction)
        splitSeed = try c.decode(UInt64.self, forKey: .splitSeed)
        kind = try c.decodeIfPresent(TableKind.self, forKey: .kind)
        encoding = try c.decodeIfPresent(TableEncoding.self, forKey: .encoding)
        rows = try c.decodeIfPresent(Int.self, forKey: .rows)
        fingerprint = try c.decodeIfPresent(String.self, forKey: .fingerprint)
        testFingerprint = try c.decodeIfPresent(String.self, forKey: .testFingerprint)
    }

    /// The settings checked, as the command line checks them.
    package func validate() throws {
        if let f = testFraction {
            guard f > 0, f < 1 else { throw DataError.invalidArgument("--test-fraction must be between 0 and 1 (exclusive), got \(f)") }
            guard testFile == nil else { throw DataError.invalidArgument("--test-fraction and --test-data exclude each other: the test rows come from one or the other") }
        }
        if testKey != nil && testFile == nil { throw DataError.invalidArgument("--test-key names an array of --test-data, which is not given") }
        if let rows, rows < 1 { throw DataError.invalidArgument("a table of \(rows) rows") }
    }

    /// The rows of `file` held out for testing and those kept for training,
    /// each in file order: a seeded permutation's first ⌈f·N⌉ rows (at least
    /// one, and at least one left to train on).
    package static func heldOut(rows n: Int, fraction f: Double, seed: UInt64) throws -> (train: [Int], test: [Int]) {
        let testCount = Swift.min(n - 1, Swift.max(1, Int((f * Double(n)).rounded(.up))))
        guard testCount >= 1, n - testCount >= 1 else {
            throw DataError.invalidArgument("--test-fraction \(f) of \(n) rows leaves no rows to train or to test on")
        }
        var order = Array(0..<n)
        var rng = Xoshiro256(seed: seed)
        order.shuffle(using: &rng)
        return (Array(order[testCount...]).sorted(), Array(order[..<testCount]).sorted())
    }

    /// The training rows (all of `file` or the part not held out), checked
    /// free of NaN and infinity, and this source with the kind and encoding
    /// decided from them (kept when already recorded).
    public func loadTraining() throws -> (train: DataTable, source: TableSource) {
        let raw = try trainingFile()
        let indices = try testFraction.map { try TableSource.heldOut(rows: raw.rows, fraction: $0, seed: splitSeed).train }
        var decided = self
        decided.rows = raw.rows
        decided.fingerprint = raw.fingerprint
        let statistics = try TableStatistics(raw, rows: indices)
        if encoding == nil {
            let kind = self.kind ?? statistics.kind(of: raw.elementType)
            decided.kind = kind
            decided.encoding = try statistics.encoding(kind, of: raw)
        }
        // The test file is checked now, not first at evaluation.
        if let testFile {
            let test = try decided.table(testFile, key: testKey, encoding: decided.encoding!, width: raw.columns)
            if let recorded = testFingerprint, recorded != test.raw.fingerprint { throw changed(testFile) }
            decided.testFingerprint = test.raw.fingerprint
        }
        return (try DataTable(raw, encoding: decided.encoding!, rows: indices), decided)
    }

    /// The test rows under the recorded encoding: `testFile`, or the rows
    /// of `file` held out; nil when neither was given.
    public func loadTest() throws -> DataTable? {
        guard let encoding else { throw DataError.invalidArgument("\(file): the table's encoding is not decided yet (it is, by training)") }
        if let testFile {
            let test = try table(testFile, key: testKey, encoding: encoding)
            if let recorded = testFingerprint, recorded != test.raw.fingerprint { throw changed(testFile) }
            return test
        }
        guard let f = testFraction else { return nil }
        let raw = try trainingFile()
        let test = try DataTable(raw, encoding: encoding, rows: TableSource.heldOut(rows: raw.rows, fraction: f, seed: splitSeed).test)
        try test.checkFinite()
        return test
    }

    /// `file` read with this source's columns, checked against the rows and
    /// fingerprint recorded at training.
    private func trainingFile() throws -> RawTable {
        let raw = try RawTable(contentsOf: file, key: key, columns: columns)
        if let recorded = rows, recorded != raw.rows {
            throw DataError.invalidData("\(raw.name) has \(raw.rows) rows but the model was trained on a file of \(recorded): it has changed")
        }
        if let recorded = fingerprint, recorded != raw.fingerprint { throw changed(file) }
        return raw
    }

    private func changed(_ path: String) -> DataError {
        .invalidData("\(path) has changed since the model was trained (its size or contents differ from those recorded): its rows would not be the ones the run used")
    }

    /// Any table file read with this source's columns and `encoding`,
    /// checked to have no NaN or infinity and the training data's width
    /// (`width`, or the standardization's; with neither, the caller checks
    /// it against its model).
    package func table(_ path: String, key: String?, encoding: TableEncoding, width: Int? = nil) throws -> DataTable {
        let raw = try RawTable(contentsOf: path, key: key, columns: columns)
        if let width = width ?? encoding.width, raw.columns != width {
            throw DataError.invalidArgument("\(raw.name) has \(raw.columns) features but the training data has \(width)")
        }
        let table = try DataTable(raw, encoding: encoding)
        try table.checkFinite()
        return table
    }

    /// The name for messages: the file and its array.
    package var name: String { file + (key.map { ":" + $0 } ?? "") }
}

extension DataTable {
    /// Throws one line naming the first row and column with a NaN or infinity.
    package func checkFinite() throws {
        guard let r = firstNonFiniteRow() else { return }
        let row = rowIndices?[r] ?? r
        let f = (0..<dimension).first { !raw.value(row: row, column: $0).isFinite } ?? 0
        throw DataError.invalidData("\(raw.name): row \(row), \(raw.describe(column: f)): \(raw.value(row: row, column: f)) (NaN and infinities are not data: fill or drop them)")
    }
}

extension ColumnSelection {
    // In a checkpoint: the text given to --columns.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let parsed = ColumnSelection(text) else { throw DataError.invalidData("a column selection '\(text.prefix(40))' that does not parse") }
        self = parsed
    }
}
