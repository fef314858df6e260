import Foundation
@testable import IWAE
import XCTest

/// IDX, gzip, safetensors and checkpoints: round trips and every bad input.
final class DataTests: XCTestCase {
    func write(_ bytes: [UInt8], _ name: String, in directory: String) -> String {
        let path = directory + "/" + name
        try! Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func assertDataError(_ expression: @autoclosure () throws -> Any, contains fragment: String,
                         file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try expression()
            XCTFail("expected an error containing '\(fragment)'", file: file, line: line)
        } catch let error where error is IWAEError || error is DataError {
            XCTAssertTrue("\(error)".contains(fragment), "'\(error)' lacks '\(fragment)'", file: file, line: line)
            XCTAssertFalse("\(error)".contains("\n"), "multi-line error", file: file, line: line)
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
        }
    }

    func testIDXRoundTripPlainAndGzip() throws {
        let dir = temporaryDirectory(self)
        let array = IDXArray(shape: [3, 2, 4], values: (0..<24).map { UInt8($0 * 10) })
        let plain = write(array.encoded, "a-idx3-ubyte", in: dir)
        let gz = write(try gzipCompress(array.encoded), "a-idx3-ubyte.gz", in: dir)
        XCTAssertEqual(try IDXArray(contentsOf: plain), array)
        XCTAssertEqual(try IDXArray(contentsOf: gz), array)
        // Whole data sets, plain and gzip, through the directory loader.
        for gzip in [false, true] {
            let d = temporaryDirectory(self)
            try writeSyntheticIDX(to: d, train: 50, test: 20, side: 5, gzip: gzip)
            let set = try MNISTFormatDataset.load(d)
            XCTAssertEqual(set.train.count, 50)
            XCTAssertEqual(set.test.count, 20)
            XCTAssertEqual(set.train.dimension, 25)
            XCTAssertTrue(set.train.pixels.allSatisfy { $0 >= 0 && $0 <= 1 })
        }
    }

    func testBadIDXFiles() throws {
        let dir = temporaryDirectory(self)
        let good = IDXArray(shape: [2, 3, 3], values: [UInt8](repeating: 7, count: 18)).encoded
        assertDataError(try IDXArray(contentsOf: dir + "/missing"), contains: "cannot read")
        assertDataError(try IDXArray(contentsOf: dir), contains: "is a directory")
        assertDataError(try IDXArray(parsing: [0, 0], name: "f"), contains: "truncated IDX header")
        assertDataError(try IDXArray(parsing: [0, 0, 8, 3, 0, 0], name: "f"), contains: "truncated IDX header")
        assertDataError(try IDXArray(parsing: Array(good.dropLast(5)), name: "f"), contains: "truncated IDX data")
        assertDataError(try IDXArray(parsing: good + [1, 2], name: "f"), contains: "unexpected bytes")
        assertDataError(try IDXArray(parsing: [0x50, 0x4b, 3, 4] + good.dropFirst(4), name: "f"), contains: "not an IDX file")
        assertDataError(try IDXArray(parsing: [0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0], name: "f"), contains: "unsupported IDX element type")
        assertDataError(try IDXArray(parsing: [0, 0, 8, 0], name: "f"), contains: "0 dimensions")
        // Extents whose product overflows.
        assertDataError(try IDXArray(parsing: [0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], name: "f"),
                        contains: "overflow")
        // Gzip garbage and truncated gzip.
        let garbage = write([0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "g.gz", in: dir)
        assertDataError(try IDXArray(contentsOf: garbage), contains: "gzip")
        let compressed = try gzipCompress(good)
        let truncated = write(Array(compressed.prefix(compressed.count / 2)), "t.gz", in: dir)
        assertDataError(try IDXArray(contentsOf: truncated), contains: "truncated gzip")
    }

    func testBadDataSets() throws {
        let dir = temporaryDirectory(self)
        assertDataError(try MNISTFormatDataset.load(dir + "/nowhere"), contains: "does not exist")
        assertDataError(try MNISTFormatDataset.load(dir), contains: "has no train-images")
        try writeSyntheticIDX(to: dir, train: 10, test: 5, side: 4)
        // Image and label counts that disagree.
        _ = write(IDXArray(shape: [9], values: [UInt8](repeating: 0, count: 9)).encoded, "train-labels-idx1-ubyte", in: dir)
        assertDataError(try MNISTFormatDataset.load(dir), contains: "10 images but 9 labels")
        // An empty data set.
        _ = write(IDXArray(shape: [0, 4, 4], values: []).encoded, "train-images-idx3-ubyte", in: dir)
        _ = write(IDXArray(shape: [0], values: []).encoded, "train-labels-idx1-ubyte", in: dir)
        assertDataError(try MNISTFormatDataset.load(dir), contains: "empty")
        // Labels given as images.
        _ = write(IDXArray(shape: [10, 4, 4], values: [UInt8](repeating: 0, count: 160)).encoded, "train-images-idx3-ubyte", in: dir)
        _ = write(IDXArray(shape: [10, 4, 4], values: [UInt8](repeating: 0, count: 160)).encoded, "train-labels-idx1-ubyte", in: dir)
        assertDataError(try MNISTFormatDataset.load(dir), contains: "expected 1")
        // Test images of another size than the training images.
        _ = write(IDXArray(shape: [10], values: [UInt8](repeating: 0, count: 10)).encoded, "train-labels-idx1-ubyte", in: dir)
        _ = write(IDXArray(shape: [5, 3, 3], values: [UInt8](repeating: 0, count: 45)).encoded, "t10k-images-idx3-ubyte", in: dir)
        assertDataError(try MNISTFormatDataset.load(dir), contains: "test images 3×3")
    }

    func testDynamicBinarizationMatchesIntensities() {
        let intensities: [Float] = [0, 0.25, 0.5, 0.9, 1]
        let set = ImageSet(count: 1, width: 5, height: 1, pixels: intensities, labels: [0])
        let draws = 20_000
        var sums = [Double](repeating: 0, count: 5)
        var out = [Float](repeating: 0, count: 5)
        let rng = Xoshiro256(seed: 3)
        for _ in 0..<draws {
            set.binarize([0], into: &out, using: rng)
            for d in 0..<5 { XCTAssertTrue(out[d] == 0 || out[d] == 1); sums[d] += Double(out[d]) }
        }
        for d in 0..<5 {
            let p = Double(intensities[d])
            XCTAssertEqual(sums[d] / Double(draws), p, accuracy: 5 * (p * (1 - p) / Double(draws)).squareRoot() + 1e-12)
        }
        // The evaluation binarization against a naive loop over its documented
        // streams: pixel (n, d) is 1 when the d-th uniform of row n's stream,
        // Xoshiro256(rowSeed(evaluationBinarizationSeed, row: n)), is below its intensity.
        let images = ImageSet(count: 40, width: 5, height: 1,
                              pixels: (0..<200).map { Float(($0 * 37) % 101) / 100 }, labels: [UInt8](repeating: 0, count: 40))
        var expected = [Float]()
        for n in 0..<40 {
            let stream = Xoshiro256(seed: Xoshiro256.rowSeed(ImageSet.evaluationBinarizationSeed, row: n))
            expected += images.pixels[n * 5..<n * 5 + 5].map { v -> Float in stream.uniform(Float.self) < v ? 1 : 0 }
        }
        XCTAssertEqual(images.binarizedForEvaluation().pixels, expected)
        // A row's binarization is its own: the last 10 images alone, as rows 30…39, binarize alike.
        var tail = Array(images.pixels[150...])
        tail.withUnsafeMutableBufferPointer { binarizeForEvaluation($0.baseAddress!, rows: 10, dimension: 5, firstRow: 30) }
        XCTAssertEqual(tail, Array(expected[150...]))
        XCTAssertNotEqual(images.binarizedOnce(seed: ImageSet.evaluationBinarizationSeed + 1).pixels, expected)
    }

    func testValidationSplitIsADisjointPartition() throws {
        let n = 50
        let set = ImageSet(count: n, width: 1, height: 1, pixels: (0..<n).map { Float($0) / Float(n) }, labels: [UInt8](repeating: 0, count: n))
        let (train, validation) = try set.splitValidation(count: 12, seed: 5)
        XCTAssertEqual(train.count, 38)
        XCTAssertEqual(validation.count, 12)
        XCTAssertEqual(Set(train.pixels + validation.pixels).count, n)
        assertDataError(try set.splitValidation(count: 50, seed: 5), contains: "must be fewer")
    }

    func testSafetensorsRoundTripAndLayout() throws {
        let a: [Float] = [1, 2, 3, 4, 5, 6]
        let file = SafetensorsFile(metadata: ["k": "v", "quote": "a\"b"],
                                   entries: [a.withUnsafeBufferPointer { SafetensorsEntry(name: "w", shape: [2, 3], values: $0) },
                                             [Float(7)].withUnsafeBufferPointer { SafetensorsEntry(name: "b", shape: [1], values: $0) }])
        let bytes = file.encoded()
        // 8-byte little-endian header length, JSON header, data aligned to 8.
        let headerLength = bytes[0..<8].reversed().reduce(0) { $0 << 8 | Int($1) }
        XCTAssertEqual((8 + headerLength) % 8, 0)
        XCTAssertEqual(bytes.count, 8 + headerLength + 28)
        let header = try JSONSerialization.jsonObject(with: Data(bytes[8..<8 + headerLength])) as! [String: Any]
        XCTAssertEqual((header["w"] as! [String: Any])["dtype"] as? String, "F32")
        XCTAssertEqual((header["w"] as! [String: Any])["data_offsets"] as? [Int], [0, 24])
        let parsed = try SafetensorsFile(parsing: bytes, name: "f")
        XCTAssertEqual(parsed.metadata, file.metadata)
        XCTAssertEqual(parsed.entry("w")?.floatValues, a)
        XCTAssertEqual(parsed.entry("b")?.floatValues, [7])
    }

    func testCheckpointRoundTripAndCorruption() throws {
        let dir = temporaryDirectory(self)
        let model = VariationalAutoencoder<Float>(ModelConfiguration(dataDimension: 9, latentDimension: 2, encoderHidden: [5], decoderHidden: [4]), seed: 1)
        try Checkpoint(model: model, data: .files("somewhere"), imageSize: .init(width: 3, height: 3)).save(to: dir)
        let loaded = try Checkpoint.load(from: dir)
        XCTAssertEqual(loaded.model.configuration, model.configuration)
        XCTAssertEqual(loaded.model.store.values.array, model.store.values.array)
        XCTAssertEqual(loaded.data, .files("somewhere"))
        XCTAssertEqual(loaded.imageSize, .init(width: 3, height: 3))
        XCTAssertEqual(loaded.model.parameterSlots.map(\.name).prefix(2), ["encoder.0.weight", "encoder.0.bias"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/.model.safetensors.tmp-\(getpid())"))

        let path = dir + "/" + Checkpoint.fileName
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        assertDataError(try Checkpoint.load(from: dir + "/none"), contains: "no checkpoint")
        // A flipped bit in the parameters.
        var flipped = bytes
        flipped[bytes.count - 10] ^= 0x10
        assertDataError(try Checkpoint(try SafetensorsFile(parsing: flipped, name: "c"), name: "c"), contains: "checksum mismatch")
        // Truncated files.
        assertDataError(try SafetensorsFile(parsing: Array(bytes.prefix(bytes.count - 4)), name: "c"), contains: "outside the file")
        assertDataError(try SafetensorsFile(parsing: Array(bytes.prefix(5)), name: "c"), contains: "truncated")
        assertDataError(try SafetensorsFile(parsing: Array(bytes.prefix(100)), name: "c"), contains: "header length")
        // A corrupt header and a garbage file.
        var header = bytes
        header[9] = UInt8(ascii: "#")
        assertDataError(try SafetensorsFile(parsing: header, name: "c"), contains: "not valid JSON")
        assertDataError(try SafetensorsFile(parsing: [UInt8](repeating: 0xff, count: 64), name: "c"), contains: "header length")
        // Another format version, and another architecture.
        var file = try SafetensorsFile(parsing: bytes, name: "c")
        file.metadata["epoch"] = "4"
        assertDataError(try Checkpoint(file, name: "c"), contains: "metadata checksum mismatch")
        // Checksums are required: deleting them does not get a file past the checks.
        for key in ["checksum_crc32", "metadata_crc32"] {
            file = try SafetensorsFile(parsing: bytes, name: "c")
            file.metadata[key] = nil
            assertDataError(try Checkpoint(file, name: "c"), contains: "missing checksums")
        }
        /// The file with its checksums recomputed, as a careful forger would.
        func resealed(_ f: SafetensorsFile) -> SafetensorsFile {
            var f = f
            f.metadata["checksum_crc32"] = String(Checkpoint.checksum(f.entries))
            f.metadata["metadata_crc32"] = String(Checkpoint.metadataChecksum(f.metadata))
            return f
        }
        file = try SafetensorsFile(parsing: bytes, name: "c")
        file.metadata["format_version"] = "99"
        assertDataError(try Checkpoint(resealed(file), name: "c"), contains: "format version 99")
        file = try SafetensorsFile(parsing: bytes, name: "c")
        var configuration = model.configuration
        configuration.latentDimension = 3
        file.metadata["model"] = Checkpoint.json(configuration)
        assertDataError(try Checkpoint(resealed(file), name: "c"), contains: "holds 147 parameters but the file's tensors hold 131")
        // The same count in another shape, and under another name.
        file = try SafetensorsFile(parsing: bytes, name: "c")
        file.entries[0].shape = file.entries[0].shape.reversed()
        assertDataError(try Checkpoint(resealed(file), name: "c"), contains: "has shape")
        file = try SafetensorsFile(parsing: bytes, name: "c")
        file.entries[0].name = "encoder.9.weight"
        assertDataError(try Checkpoint(resealed(file), name: "c"), contains: "not part of this model")
        file = try SafetensorsFile(parsing: bytes, name: "c")
        file.metadata["model"] = "{\"latentDimension\": \"many\"}"
        assertDataError(try Checkpoint(resealed(file), name: "c"), contains: "bad model metadata")
        file = try SafetensorsFile(parsing: bytes, name: "c")
        file.entries.removeLast()
        assertDataError(try Checkpoint(resealed(file), name: "c"), contains: "the file's tensors hold 122")
        file = try SafetensorsFile(parsing: bytes, name: "c")
        file.metadata["format"] = nil
        assertDataError(try Checkpoint(resealed(file), name: "c"), contains: "not an iwae checkpoint")
    }

    func testPNGEncoding() throws {
        let png = try encodeGrayscalePNG(width: 3, height: 2, pixels: [0, 128, 255, 1, 2, 3])
        XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
        XCTAssertEqual(String(decoding: png[12..<16], as: UTF8.self), "IHDR")
        XCTAssertEqual(Array(png[16..<24]), [0, 0, 0, 3, 0, 0, 0, 2])
        // IHDR's CRC covers type and data.
        let crc = png[29..<33].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        XCTAssertEqual(crc, crc32Checksum(png[12..<29]))
        XCTAssertEqual(String(decoding: png.suffix(8).prefix(4), as: UTF8.self), "IEND")
    }
}

/// MNIST, the IWAE paper's data set: sha256 checks and the data set's own
/// fingerprint. Tests that need the files skip when they are absent.
final class MNISTTests: XCTestCase {
    func testSHA256KnownAnswers() {
        XCTAssertEqual(SHA256.hex([]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // Two blocks, and a message whose padding spills into an extra block.
        XCTAssertEqual(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        var incremental = SHA256()
        for chunk in stride(from: 0, to: 1000, by: 37) { incremental.update(Array(repeating: 0x61, count: min(37, 1000 - chunk))) }
        XCTAssertEqual(incremental.finalize().map { String(format: "%02x", $0) }.joined(),
                       SHA256.hex([UInt8](repeating: 0x61, count: 1000)))
    }

    func testMissingMNISTSaysHowToGetIt() throws {
        let empty = temporaryDirectory(self)
        XCTAssertThrowsError(try MNIST.locate(explicit: empty)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("MNIST not found in \(empty)") && message.contains(MNIST.fetchScript), message)
            XCTAssertFalse(message.contains("\n"))
        }
    }

    func testAFileThatIsNotMNISTIsRefused() throws {
        let directory = temporaryDirectory(self)
        for file in MNIST.files { try Data([0, 0, 8, 1, 0, 0, 0, 0]).write(to: URL(fileURLWithPath: directory + "/" + file.name)) }
        XCTAssertThrowsError(try MNIST.locate(explicit: directory)) { error in
            XCTAssertTrue("\(error)".contains("has sha256"), "\(error)")
        }
    }

    func testMNISTLoadsAndMatchesItsFingerprint() throws {
        guard let directory = MNIST.present() else {
            throw XCTSkip("MNIST is absent (run \(MNIST.fetchScript)); skipping")
        }
        let source = DataSource.mnist(directory: directory)
        let train = try source.load(DataSplit.train), test = try source.load(DataSplit.test)
        XCTAssertEqual(train.count, 60_000)
        XCTAssertEqual(test.count, 10_000)
        XCTAssertEqual(train.dimension, 784)
        let mean = train.pixels.reduce(0.0) { $0 + Double($1) } / Double(train.pixels.count)
        XCTAssertEqual(mean, 0.13066, accuracy: 5e-6)
        let counts = (0..<10).map { digit in train.labels.filter { $0 == digit }.count }
        XCTAssertEqual(counts, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    }
}
