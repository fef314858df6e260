import RealModule
import Foundation
import IWAELinearAlgebra

/// Images as intensities in [0, 1], row-major (count, dimension), with labels.
public struct ImageSet: Sendable {
    public let count: Int
    public let dimension: Int
    public let width: Int
    public let height: Int
    public var pixels: [Float]
    public var labels: [UInt8]

    public init(count: Int, width: Int, height: Int, pixels: [Float], labels: [UInt8]) {
        precondition(pixels.count == count * width * height && labels.count == count)
        self.count = count
        self.width = width
        self.height = height
        dimension = width * height
        self.pixels = pixels
        self.labels = labels
    }

    /// Images from an IDX image file (count, height, width) and label file (count).
    package init(images: IDXArray, labels: IDXArray, name: String) throws {
        guard images.shape.count == 3 else {
            throw DataError.invalidData("\(name): image file has \(images.shape.count) dimensions, expected 3 (count, rows, columns)")
        }
        guard labels.shape.count == 1 else {
            throw DataError.invalidData("\(name): label file has \(labels.shape.count) dimensions, expected 1")
        }
        guard images.shape[0] == labels.shape[0] else {
            throw DataError.invalidData("\(name): \(images.shape[0]) images but \(labels.shape[0]) labels")
        }
        guard images.shape[0] > 0 else { throw DataError.invalidData("\(name): the data set is empty") }
        guard images.shape[1] > 0, images.shape[2] > 0 else {
            throw DataError.invalidData("\(name): images of size \(images.shape[1])×\(images.shape[2])")
        }
        self.init(count: images.shape[0], width: images.shape[2], height: images.shape[1],
                  pixels: images.values.map { Float($0) / 255 }, labels: labels.values)
    }

    /// The images at `indices`, in that order.
    public func subset(_ indices: some Collection<Int>) -> ImageSet {
        var p = [Float]()
        p.reserveCapacity(indices.count * dimension)
        var l = [UInt8]()
        for i in indices {
            p.append(contentsOf: pixels[i * dimension..<(i + 1) * dimension])
            l.append(labels[i])
        }
        return ImageSet(count: indices.count, width: width, height: height, pixels: p, labels: l)
    }

    /// The first `n` images.
    public func prefix(_ n: Int) -> ImageSet { subset(0..<min(n, count)) }

    /// Mean intensity of each pixel (dimension).
    public var pixelMean: [Float] {
        var mean = [Double](repeating: 0, count: dimension)
        for i in 0..<count { for d in 0..<dimension { mean[d] += Double(pixels[i * dimension + d]) } }
        return mean.map { Float($0 / Double(count)) }
    }

    /// Draws binary images: pixel d of image `indices[r]` is 1 with
    /// probability equal to its intensity (dynamic binarization, Mathematics §5).
    /// Writes (indices.count, dimension) values into `out`.
    package func binarize(_ indices: some Collection<Int>, into out: UnsafeMutablePointer<Float>, using rng: Xoshiro256) {
        var r = 0
        pixels.withUnsafeBufferPointer { source in
            for i in indices {
                binarizeRow(source.baseAddress! + i * dimension, into: out + r * dimension, count: dimension, using: rng)
                r += 1
            }
        }
    }

    /// Copies the images at `indices` as they are into `out` (indices.count, dimension).
    package func copy(_ indices: some Collection<Int>, into out: UnsafeMutablePointer<Float>) {
        var r = 0
        pixels.withUnsafeBufferPointer { source in
            for i in indices {
                (out + r * dimension).update(from: source.baseAddress! + i * dimension, count: dimension)
                r += 1
            }
        }
    }

    /// The whole set binarized once with a fixed seed (the same binary images
    /// for every evaluation).
    package func binarizedOnce(seed: UInt64) -> ImageSet {
        var out = [Float](repeating: 0, count: pixels.count)
        out.withUnsafeMutableBufferPointer { binarize(0..<count, into: $0.baseAddress!, using: Xoshiro256(seed: seed)) }
        return ImageSet(count: count, width: width, height: height, pixels: out, labels: labels)
    }

    /// The seed of the evaluation binarization of test and validation rows
    /// (`binarizeForEvaluation`), the same in `iwae`, `iwae-bench` and the library.
    package static let evaluationBinarizationSeed: UInt64 = 0x7E57

    /// The fixed binarization every evaluation uses: pixel d of image n is 1
    /// with probability equal to its intensity, drawn from row n's own stream
    /// (`binarizeForEvaluation`), so every evaluation sees the same binary
    /// images, and an image the same binary image whatever others are with it.
    public func binarizedForEvaluation() -> ImageSet {
        var out = pixels
        out.withUnsafeMutableBufferPointer { binarizeForEvaluation($0.baseAddress!, rows: count, dimension: dimension) }
        return ImageSet(count: count, width: width, height: height, pixels: out, labels: labels)
    }
}

/// Dynamic binarization of one row (Mathematics §5): value d becomes 1 with
/// probability `source[d]` (a uniform u from `rng` and 1 when u < source[d]),
/// else 0, into `target` (which may be `source`).
@inline(__always)
package func binarizeRow(_ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>, count d: Int, using rng: Xoshiro256) {
    rng.binarize(source, into: target, count: d)
}

/// The evaluation binarization of `rows` rows of `dimension` values in
/// place, row r (counting from `firstRow`) from its own stream
/// `Xoshiro256.rowSeed(ImageSet.evaluationBinarizationSeed, row:)`.
package func binarizeForEvaluation(_ values: UnsafeMutablePointer<Float>, rows: Int, dimension: Int, firstRow: Int = 0) {
    let rng = Xoshiro256(seed: 0)
    for r in 0..<rows {
        rng.reseed(Xoshiro256.rowSeed(ImageSet.evaluationBinarizationSeed, row: firstRow + r))
        binarizeRow(values + r * dimension, into: values + r * dimension, count: dimension, using: rng)
    }
}

/// The training or the test part of a data set.
public enum DataSplit: String, Sendable { case train, test }

/// The four MNIST-format files of a data set: training and test images and labels.
package struct MNISTFormatDataset: Sendable {
    package let name: String
    package let train: ImageSet
    package let test: ImageSet

    /// Where Debian's `dataset-fashion-mnist` installs Fashion-MNIST.
    package static let fashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"

    /// Reads `fashion-mnist` (the Debian package) or any directory holding
    /// `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
    /// `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte` (each optionally
    /// `.gz`; MNIST's `train-images.idx3-ubyte` spelling is accepted too).
    package static func load(_ source: String) throws -> MNISTFormatDataset {
        let directory = try resolve(source)
        let train = try load(source, split: .train)
        let test = try load(source, split: .test)
        guard train.dimension == test.dimension else {
            throw DataError.invalidData("\(directory): training images are \(train.height)×\(train.width) but test images \(test.height)×\(test.width)")
        }
        return MNISTFormatDataset(name: source, train: train, test: test)
    }

    package typealias Split = DataSplit

    /// Reads one split only (an evaluation needs no training images).
    package static func load(_ source: String, split: Split) throws -> ImageSet {
        let directory = try resolve(source)
        func find(_ stem: String, _ kind: String) throws -> String {
            for name in ["\(stem)-\(kind)-ubyte", "\(stem)-\(kind)-ubyte.gz", "\(stem).\(kind)-ubyte", "\(stem).\(kind)-ubyte.gz"] {
                let path = directory + "/" + name
                if FileManager.default.fileExists(atPath: path) { return path }
            }
            throw DataError.invalidData("\(directory) has no \(stem)-\(kind)-ubyte[.gz]")
        }
        let prefix = split == .train ? "train" : "t10k"
        return try ImageSet(images: IDXArray(contentsOf: find("\(prefix)-images", "idx3")),
                            labels: IDXArray(contentsOf: find("\(prefix)-labels", "idx1")), name: "\(directory) (\(split.rawValue))")
    }

    /// The directory a `--data` value names, checked to exist.
    static func resolve(_ source: String) throws -> String {
        let directory: String
        if source == "fashion-mnist" {
            directory = fashionMNISTDirectory
            guard FileManager.default.fileExists(atPath: directory) else {
                throw DataError.invalidData("Fashion-MNIST not found at \(directory): install the Debian package dataset-fashion-mnist")
            }
        } else {
            directory = source
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
            throw DataError.invalidData("data directory \(directory) does not exist")
        }
        guard isDirectory.boolValue else { throw DataError.invalidData("data path \(directory) is not a directory") }
        return directory
    }
}

extension ImageSet {
    /// Splits off `validationCount` images chosen by a seeded permutation:
    /// returns (training, validation), each in the original order.
    package func splitValidation(count validationCount: Int, seed: UInt64) throws -> (train: ImageSet, validation: ImageSet) {
        let (train, validation) = try validationSplit(count: count, validation: validationCount, seed: seed)
        return (subset(train), subset(validation))
    }
}

/// The positions of a validation split of `n` examples: `validation` of them
/// chosen by a permutation seeded with `seed`, and the rest, each sorted.
package func validationSplit(count n: Int, validation validationCount: Int, seed: UInt64) throws -> (train: [Int], validation: [Int]) {
    guard validationCount >= 0 else { throw DataError.invalidArgument("validation examples must be at least 0, got \(validationCount)") }
    guard validationCount < n else {
        throw DataError.invalidArgument("validation examples (\(validationCount)) must be fewer than the \(n) training examples (--validation-examples)")
    }
    var order = Array(0..<n)
    var rng = Xoshiro256(seed: seed)
    order.shuffle(using: &rng)
    return (order[validationCount...].sorted(), order[0..<validationCount].sorted())
}
