import Foundation

extension Checkpoint {
    /// Reads a version-1 checkpoint (metadata as flat strings: `data_dimension`,
    /// `latent_dimension`, `encoder_hidden`, …, `data`, `image_width`, …). The
    /// model, its data set and image size are recovered; training state is
    /// not, so such a run cannot be resumed. Files from before the
    /// full-model options (no `encoder`/`prior`/`likelihood`) are the diagonal,
    /// standard-prior, Bernoulli model.
    init(version1 file: SafetensorsFile, fail: (String) -> IWAEError) throws {
        let m = file.metadata
        func int(_ key: String) throws -> Int {
            guard let v = m[key].flatMap(Int.init) else { throw fail("missing or bad \(key)") }
            return v
        }
        func widths(_ key: String) throws -> [Int] {
            guard let s = m[key] else { throw fail("missing \(key)") }
            if s.isEmpty { return [] }
            let parts = s.split(separator: ",").map { Int($0) }
            guard parts.allSatisfy({ $0 != nil }) else { throw fail("bad \(key) \(s)") }
            return parts.map { $0! }
        }
        func option<T: RawRepresentable>(_ key: String, _ fallback: T) throws -> T where T.RawValue == String {
            guard let raw = m[key] else { return fallback }
            guard let value = T(rawValue: raw) else { throw fail("\(key) '\(raw)' is not supported by this build") }
            return value
        }
        guard let activation = m["activation"].flatMap(Activation.init(rawValue:)) else { throw fail("missing or bad activation") }
        guard let sigma = m["sigma"].map({ Double($0) }) ?? 1 else { throw fail("bad sigma") }
        if let stored = m["checksum_crc32"], String(Checkpoint.checksum(file.entries)) != stored {
            throw fail("checksum mismatch: the file is corrupt")
        }
        if let stored = m["metadata_crc32"], String(Checkpoint.metadataChecksum(m)) != stored {
            throw fail("metadata checksum mismatch: the file is corrupt")
        }
        let configuration = ModelConfiguration(
            dataDimension: try int("data_dimension"), latentDimension: try int("latent_dimension"),
            encoderHidden: try widths("encoder_hidden"), decoderHidden: try widths("decoder_hidden"),
            activation: activation, encoder: try option("encoder", CovarianceKind.diagonal),
            prior: try option("prior", PriorKind.standard), likelihood: try option("likelihood", LikelihoodKind.bernoulli),
            sigma: sigma, learnSigma: m["learn_sigma"] == "true")
        let model = try Checkpoint.model(configuration, from: file, fail: fail)
        var data: DataSource?
        if let name = m["data"] {
            if name == "linear-gaussian" {
                func setting<T: LosslessStringConvertible>(_ key: String, _ fallback: T) throws -> T {
                    guard let raw = m[key] else { return fallback }
                    guard let value = T(raw) else { throw fail("bad \(key)") }
                    return value
                }
                let generator = LinearGaussianData(dimension: try setting("synthetic_dimension", 20),
                                                   latentDimension: try setting("synthetic_latent", 5),
                                                   noise: try setting("synthetic_noise", 0.5), seed: try setting("synthetic_seed", 1))
                do {
                    data = try DataSource(name: name, generator: generator, trainExamples: try setting("synthetic_examples", 10_000),
                                          testExamples: try setting("synthetic_test_examples", 1_000))
                } catch { throw fail("\(error)") }
            } else {
                data = .files(name)
            }
        }
        let imageSize = (try? int("image_width")).flatMap { w in (try? int("image_height")).map { ImageSize(width: w, height: $0) } }
        self.init(model: model, data: data, imageSize: imageSize)
    }
}
