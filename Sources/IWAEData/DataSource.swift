import IWAELinearAlgebra

/// Where examples come from: MNIST-format files, or synthetic
/// linear-Gaussian data regenerated from its recorded settings.
public enum DataSource: Sendable {
    /// `fashion-mnist` (Debian's package) or a directory of IDX files.
    case files(String)
    /// Synthetic data; the test split is drawn independently of training.
    case linearGaussian(LinearGaussianData, trainExamples: Int, testExamples: Int)

    /// The data set named `name` (`linear-gaussian` reads its settings from
    /// `settings`, keys `synthetic_*`, with defaults).
    public init(name: String, settings: [String: String] = [:]) throws {
        guard name == "linear-gaussian" else { self = .files(name); return }
        func int(_ key: String, _ fallback: Int) throws -> Int {
            guard let raw = settings[key] else { return fallback }
            guard let v = Int(raw), v >= 1 else { throw IWAEError.invalidArgument("\(key.replacingOccurrences(of: "_", with: "-")) must be a positive integer, got '\(raw)'") }
            return v
        }
        let noise = try settings["synthetic_noise"].map { raw -> Double in
            guard let v = Double(raw), v.isFinite, v > 0 else { throw IWAEError.invalidArgument("synthetic-noise must be positive, got '\(raw)'") }
            return v
        } ?? 0.5
        let seed = try settings["synthetic_seed"].map { raw -> UInt64 in
            guard let v = UInt64(raw) else { throw IWAEError.invalidArgument("synthetic-seed must be a non-negative integer, got '\(raw)'") }
            return v
        } ?? 1
        let generator = LinearGaussianData(dimension: try int("synthetic_dimension", 20), latentDimension: try int("synthetic_latent", 5),
                                           noise: noise, seed: seed)
        try generator.validate()
        self = .linearGaussian(generator, trainExamples: try int("synthetic_examples", 10_000),
                               testExamples: try int("synthetic_test_examples", 1_000))
    }

    /// The settings that recreate this source (stored in checkpoints).
    public var settings: [String: String] {
        switch self {
        case .files(let name): return ["data": name]
        case .linearGaussian(let g, let train, let test):
            return ["data": "linear-gaussian", "synthetic_dimension": String(g.dimension), "synthetic_latent": String(g.latentDimension),
                    "synthetic_noise": String(g.noise), "synthetic_seed": String(g.seed),
                    "synthetic_examples": String(train), "synthetic_test_examples": String(test)]
        }
    }

    public var name: String { settings["data"]! }

    /// Real values for a Gaussian likelihood rather than intensities to binarize.
    public var isRealValued: Bool { if case .linearGaussian = self { return true } else { return false } }

    /// One split of the data.
    public func load(_ split: MNISTFormatDataset.Split) throws -> ImageSet {
        switch self {
        case .files(let name): return try MNISTFormatDataset.load(name, split: split)
        case .linearGaussian(let g, let train, let test):
            return split == .train ? g.examples(train, sampleSeed: 1) : g.examples(test, sampleSeed: 2)
        }
    }
}
